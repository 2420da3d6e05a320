//! The canister itself: its id, cycles (this host moves none), status, version, controllers,
//! and whether it runs replicated.

use candid::Principal;
use wasmtime::Linker;

use super::{charge, copy_out, read_heap, trap, write_heap};
use crate::cost::system_api::{DEFAULT, IS_CONTROLLER};
use crate::state::State;

pub(super) fn register(l: &mut Linker<State>) -> wasmtime::Result<()> {
    ic0!(l, canister_self_size, |c, _| -> i32 {
        charge(&mut c, DEFAULT)?;
        Ok(c.data().canister_id.as_slice().len() as i32)
    });
    ic0!(l, canister_self_copy, |c, _, dst: u32, offset: u32, size: u32| -> () {
        charge(&mut c, DEFAULT + u64::from(size))?;
        let id = c.data().canister_id.as_slice().to_vec();
        copy_out(&mut c, &id, dst, offset, size, NAME)
    });
    ic0!(l, canister_cycle_balance128, |c, _, dst: u32| -> () {
        charge(&mut c, DEFAULT)?;
        let balance = c.data().cycles.to_le_bytes();
        write_heap(&mut c, dst.into(), &balance, NAME)
    });
    ic0!(l, canister_liquid_cycle_balance128, |c, _, dst: u32| -> () {
        charge(&mut c, DEFAULT)?;
        let balance = c.data().cycles.to_le_bytes();
        write_heap(&mut c, dst.into(), &balance, NAME)
    });
    // Ingress messages and calls to itself carry no cycles.
    ic0!(l, msg_cycles_available128, |c, _, dst: u32| -> () {
        charge(&mut c, DEFAULT)?;
        write_heap(&mut c, dst.into(), &0u128.to_le_bytes(), NAME)
    });
    ic0!(l, msg_cycles_refunded128, |c, _, dst: u32| -> () {
        charge(&mut c, DEFAULT)?;
        write_heap(&mut c, dst.into(), &0u128.to_le_bytes(), NAME)
    });
    ic0!(l, msg_cycles_accept128, |c, _, _high: i64, _low: i64, dst: u32| -> () {
        charge(&mut c, DEFAULT)?;
        write_heap(&mut c, dst.into(), &0u128.to_le_bytes(), NAME)
    });
    ic0!(l, canister_status, |c, _| -> i32 {
        charge(&mut c, DEFAULT)?;
        Ok(1) // running
    });
    ic0!(l, canister_version, |c, _| -> i64 {
        charge(&mut c, DEFAULT)?;
        Ok(c.data().canister_version as i64)
    });
    ic0!(l, in_replicated_execution, |c, kind| -> i32 {
        charge(&mut c, DEFAULT)?;
        Ok(kind.replicated() as i32)
    });
    ic0!(l, is_controller, |c, _, src: u32, size: u32| -> i32 {
        charge(&mut c, IS_CONTROLLER)?;
        let bytes = read_heap(&mut c, src.into(), size.into(), NAME)?;
        match Principal::try_from_slice(&bytes) {
            Ok(p) => Ok(c.data().controllers.contains(&p) as i32),
            Err(_) => trap(&mut c, format!("\"ic0.{NAME}\": the argument is not a valid principal")),
        }
    });
    Ok(())
}
