//! Debug output and traps, certified data, and the certificate a non-replicated query may be
//! given.

use wasmtime::Linker;

use super::{charge, copy_out, message, read_heap, trap};
use crate::cost::system_api::{DEBUG_PRINT, DEFAULT};
use crate::state::State;

pub(super) fn register(l: &mut Linker<State>) -> wasmtime::Result<()> {
    ic0!(l, debug_print, |c, _, src: u32, size: u32| -> () {
        charge(&mut c, DEBUG_PRINT + u64::from(size))?;
        let bytes = read_heap(&mut c, src.into(), size.into(), NAME)?;
        c.data_mut().log.push(String::from_utf8_lossy(&bytes).into_owned());
        Ok(())
    });
    ic0!(l, trap, |c, _, src: u32, size: u32| -> () {
        charge(&mut c, DEBUG_PRINT + u64::from(size))?;
        let bytes = read_heap(&mut c, src.into(), size.into(), NAME)?;
        let text = String::from_utf8_lossy(&bytes).into_owned();
        c.data_mut().log.push(format!("[TRAP]: {text}"));
        trap(&mut c, format!("Canister called `ic0.trap` with message: '{text}'"))
    });
    ic0!(l, certified_data_set, |c, _, src: u32, size: u32| -> () {
        charge(&mut c, DEFAULT + u64::from(size))?;
        if size > 32 {
            return trap(&mut c, format!("\"ic0.{NAME}\": more than 32 bytes"));
        }
        c.data_mut().certified_data = read_heap(&mut c, src.into(), size.into(), NAME)?;
        Ok(())
    });
    ic0!(l, data_certificate_present, |c, _| -> i32 {
        charge(&mut c, DEFAULT)?;
        Ok(message(&c).certificate.is_some() as i32)
    });
    // Without a certificate these two trap, as on the IC.
    ic0!(l, data_certificate_size, |c, _| -> i32 {
        charge(&mut c, DEFAULT)?;
        match message(&c).certificate.as_ref().map(|cert| cert.len() as i32) {
            Some(size) => Ok(size),
            None => trap(&mut c, format!("\"ic0.{NAME}\": no certificate is present")),
        }
    });
    ic0!(l, data_certificate_copy, |c, _, dst: u32, offset: u32, size: u32| -> () {
        charge(&mut c, DEFAULT + u64::from(size))?;
        match message(&c).certificate.clone() {
            Some(certificate) => copy_out(&mut c, &certificate, dst, offset, size, NAME),
            None => trap(&mut c, format!("\"ic0.{NAME}\": no certificate is present")),
        }
    });
    Ok(())
}
