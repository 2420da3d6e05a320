//! The message: its argument, caller and reject, the reply or reject it gives, and the
//! method name and acceptance of `canister_inspect_message`.

use wasmtime::Linker;

use super::{Ctx, HostResult, charge, copy_out, message, message_mut, read_heap, trap};
use crate::cost::system_api::DEFAULT;
use crate::message::Kind;
use crate::state::State;
use crate::types::{RejectCode, Response};

/// Largest reply of a replicated call (2 MiB) and of a query (3 MiB).
const MAX_REPLY: usize = 2 << 20;
const MAX_QUERY_REPLY: usize = 3 << 20;

/// Answers the current call context, once.
fn respond(c: &mut Ctx<'_>, response: Response, name: &str) -> HostResult<()> {
    let current = c.data().current;
    let Some(context) = current.and_then(|id| c.data_mut().contexts.get_mut(&id)) else {
        return trap(c, format!("\"ic0.{name}\": there is no call to reply to"));
    };
    if context.response.is_some() {
        return trap(c, format!("\"ic0.{name}\": the call was already answered"));
    }
    context.response = Some(response);
    Ok(())
}

pub(super) fn register(l: &mut Linker<State>) -> wasmtime::Result<()> {
    ic0!(l, msg_arg_data_size, |c, _| -> i32 {
        charge(&mut c, DEFAULT)?;
        Ok(message(&c).arg.len() as i32)
    });
    ic0!(l, msg_arg_data_copy, |c, _, dst: u32, offset: u32, size: u32| -> () {
        charge(&mut c, DEFAULT + u64::from(size))?;
        let arg = message(&c).arg.clone();
        copy_out(&mut c, &arg, dst, offset, size, NAME)
    });
    ic0!(l, msg_caller_size, |c, _| -> i32 {
        charge(&mut c, DEFAULT)?;
        Ok(message(&c).caller.as_slice().len() as i32)
    });
    ic0!(l, msg_caller_copy, |c, _, dst: u32, offset: u32, size: u32| -> () {
        charge(&mut c, DEFAULT + u64::from(size))?;
        let caller = message(&c).caller.as_slice().to_vec();
        copy_out(&mut c, &caller, dst, offset, size, NAME)
    });
    ic0!(l, msg_reject_code, |c, _| -> i32 {
        charge(&mut c, DEFAULT)?;
        Ok(message(&c).reject.as_ref().map_or(0, |r| r.0) as i32)
    });
    ic0!(l, msg_reject_msg_size, |c, _| -> i32 {
        charge(&mut c, DEFAULT)?;
        Ok(message(&c).reject.as_ref().map_or(0, |r| r.1.len()) as i32)
    });
    ic0!(l, msg_reject_msg_copy, |c, _, dst: u32, offset: u32, size: u32| -> () {
        charge(&mut c, DEFAULT + u64::from(size))?;
        let text = message(&c).reject.as_ref().map(|r| r.1.clone().into_bytes()).unwrap_or_default();
        copy_out(&mut c, &text, dst, offset, size, NAME)
    });
    ic0!(l, msg_reply_data_append, |c, kind, src: u32, size: u32| -> () {
        charge(&mut c, DEFAULT + u64::from(size))?;
        let bytes = read_heap(&mut c, src.into(), size.into(), NAME)?;
        let limit = if kind == Kind::Query { MAX_QUERY_REPLY } else { MAX_REPLY };
        let buffer = &mut message_mut(&mut c).reply_buffer;
        if buffer.len() + bytes.len() > limit {
            return trap(&mut c, format!("{NAME}: the reply exceeds the {limit}-byte limit"));
        }
        buffer.extend_from_slice(&bytes);
        Ok(())
    });
    ic0!(l, msg_reply, |c, _| -> () {
        charge(&mut c, DEFAULT)?;
        let data = std::mem::take(&mut message_mut(&mut c).reply_buffer);
        respond(&mut c, Response::Reply(data), NAME)
    });
    ic0!(l, msg_reject, |c, _, src: u32, size: u32| -> () {
        charge(&mut c, DEFAULT + u64::from(size))?;
        let bytes = read_heap(&mut c, src.into(), size.into(), NAME)?;
        let message = String::from_utf8_lossy(&bytes).into_owned();
        respond(&mut c, Response::Reject { code: RejectCode::CanisterReject, message }, NAME)
    });
    ic0!(l, msg_method_name_size, |c, _| -> i32 {
        charge(&mut c, DEFAULT)?;
        Ok(message(&c).method.len() as i32)
    });
    ic0!(l, msg_method_name_copy, |c, _, dst: u32, offset: u32, size: u32| -> () {
        charge(&mut c, DEFAULT + u64::from(size))?;
        let name = message(&c).method.clone().into_bytes();
        copy_out(&mut c, &name, dst, offset, size, NAME)
    });
    ic0!(l, accept_message, |c, _| -> () {
        charge(&mut c, DEFAULT)?;
        if message(&c).accepted {
            return trap(&mut c, format!("\"ic0.{NAME}\" called twice"));
        }
        message_mut(&mut c).accepted = true;
        Ok(())
    });
    Ok(())
}
