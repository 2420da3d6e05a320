//! Inter-canister calls: a call is built (`call_new`, `call_on_cleanup`, `call_data_append`, …)
//! and performed; the calls a message performed are routed when it commits (see `crate::calls`).

use wasmtime::Linker;

use super::{charge, read_heap, trap, write_heap};
use crate::cost::system_api::{CALL_NEW, CALL_PERFORM, DEFAULT};
use crate::state::{PendingCall, State};

pub(super) fn register(l: &mut Linker<State>) -> wasmtime::Result<()> {
    ic0!(l, call_new, |c,
                       _,
                       callee_src: u32,
                       callee_size: u32,
                       name_src: u32,
                       name_size: u32,
                       reply_fun: u32,
                       reply_env: u32,
                       reject_fun: u32,
                       reject_env: u32|
     -> () {
        charge(&mut c, CALL_NEW + u64::from(callee_size) + u64::from(name_size))?;
        let callee = read_heap(&mut c, callee_src.into(), callee_size.into(), NAME)?;
        let name = read_heap(&mut c, name_src.into(), name_size.into(), NAME)?;
        let context = c.data().current.unwrap_or(u64::MAX);
        c.data_mut().building = Some(PendingCall {
            context,
            callee,
            method: String::from_utf8_lossy(&name).into_owned(),
            payload: Vec::new(),
            reply_fun,
            reply_env,
            reject_fun,
            reject_env,
            cleanup: None,
        });
        Ok(())
    });
    ic0!(l, call_on_cleanup, |c, _, fun: u32, env: u32| -> () {
        charge(&mut c, DEFAULT)?;
        match c.data_mut().building.as_mut() {
            Some(call) if call.cleanup.is_none() => {
                call.cleanup = Some((fun, env));
                Ok(())
            }
            _ => trap(&mut c, format!("\"ic0.{NAME}\" without a call under construction, or twice")),
        }
    });
    ic0!(l, call_data_append, |c, _, src: u32, size: u32| -> () {
        charge(&mut c, DEFAULT + u64::from(size))?;
        let bytes = read_heap(&mut c, src.into(), size.into(), NAME)?;
        match c.data_mut().building.as_mut() {
            Some(call) => {
                call.payload.extend_from_slice(&bytes);
                Ok(())
            }
            None => trap(&mut c, format!("\"ic0.{NAME}\" without a call under construction")),
        }
    });
    ic0!(l, call_with_best_effort_response, |c, _, _timeout_seconds: u32| -> () {
        charge(&mut c, DEFAULT)?;
        if c.data().building.is_none() {
            return trap(&mut c, format!("\"ic0.{NAME}\" without a call under construction"));
        }
        Ok(())
    });
    ic0!(l, call_cycles_add128, |c, _, _high: i64, _low: i64| -> () {
        charge(&mut c, DEFAULT)?;
        Ok(())
    });
    ic0!(l, cost_call, |c, _, method_size: u64, payload_size: u64, dst: u32| -> () {
        charge(&mut c, DEFAULT)?;
        // The IC's fee for a call: a base plus one per byte of method name and payload.
        let cost = 260_000u128 + 1_000 * u128::from(method_size.saturating_add(payload_size));
        write_heap(&mut c, dst.into(), &cost.to_le_bytes(), NAME)
    });
    ic0!(l, call_perform, |c, _| -> i32 {
        charge(&mut c, CALL_PERFORM)?;
        match c.data_mut().building.take() {
            Some(call) => {
                c.data_mut().performed.push(call);
                Ok(0)
            }
            None => trap(&mut c, format!("\"ic0.{NAME}\" without a call under construction")),
        }
    });
    Ok(())
}
