//! Time, the global timer and the performance counters.

use wasmtime::Linker;

use super::{charge, trap, used};
use crate::cost::system_api::{DEFAULT, PERFORMANCE_COUNTER};
use crate::state::State;

pub(super) fn register(l: &mut Linker<State>) -> wasmtime::Result<()> {
    ic0!(l, time, |c, _| -> i64 {
        charge(&mut c, DEFAULT)?;
        Ok(c.data().time as i64)
    });
    ic0!(l, global_timer_set, |c, _, timestamp: i64| -> i64 {
        charge(&mut c, DEFAULT)?;
        let old = std::mem::replace(&mut c.data_mut().timer, timestamp as u64);
        Ok(old as i64)
    });
    ic0!(l, performance_counter, |c, _, counter_type: u32| -> i64 {
        charge(&mut c, PERFORMANCE_COUNTER)?;
        let now = used(&mut c);
        match counter_type {
            // This execution.
            0 => Ok(now as i64),
            // The call context: its earlier executions (callbacks follow their call) and this one.
            1 => {
                let before = c.data().current.and_then(|id| c.data().contexts.get(&id)).map_or(0, |x| x.instructions_before);
                Ok((before + now) as i64)
            }
            other => trap(&mut c, format!("\"ic0.{NAME}\": unknown counter type {other}")),
        }
    });
    Ok(())
}
