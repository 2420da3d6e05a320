//! The call tree of one ingress message or system task: its first execution, then every
//! execution the calls it made set in motion (calls to itself, the management canister's
//! answers, reply, reject and cleanup callbacks), until nothing is left to run.

use std::collections::VecDeque;

use candid::Principal;

use crate::canister::{Canister, Entry};
use crate::cost::limits;
use crate::management;
use crate::message::{Kind, Message};
use crate::state::{Origin, PendingCall};
use crate::types::{HostError, Outcome, PageUse, RejectCode, Response};

/// What the executions of a call tree used.
#[derive(Default)]
struct Totals {
    instructions: u64,
    slices: u64,
    pages: PageUse,
}

/// Work the event loop of a call tree still has to do.
enum Event {
    /// Run a call this canister made to itself.
    Execute(PendingCall),
    /// Run the callback of a finished call.
    Deliver(PendingCall, Response),
}

/// DTS slices an execution of `instructions` spans (at least one).
pub(crate) fn slices(instructions: u64) -> u64 {
    instructions.div_ceil(limits::SLICE).max(1)
}

/// Runs a first execution in a new call context, then the event loop of the calls it makes,
/// and returns the answer of that first context.
pub(crate) fn run_tree(canister: &mut Canister, origin: Origin, entry: Entry, message: Message, log_start: usize) -> Result<Outcome, HostError> {
    let mut events: VecDeque<Event> = VecDeque::new();
    let mut totals = Totals::default();
    let root = canister.store.data_mut().open_context(origin);
    step(canister, root, entry, message, &mut events, &mut totals)?;
    while let Some(event) = events.pop_front() {
        match event {
            Event::Execute(call) => {
                let me = canister.store.data().canister_id;
                let export = format!("canister_update {}", call.method);
                if !canister.has_method(&export) {
                    let response =
                        Response::Reject { code: RejectCode::CanisterError, message: format!("the canister has no update method {:?}", call.method) };
                    events.push_back(Event::Deliver(call, response));
                    continue;
                }
                let message = Message::new(Kind::Update, call.payload.clone(), me, &call.method, limits::UPDATE);
                let context = canister.store.data_mut().open_context(Origin::Call(call));
                step(canister, context, Entry::Export(export), message, &mut events, &mut totals)?;
            }
            Event::Deliver(call, response) => {
                let context = call.context;
                if let Some(c) = canister.store.data_mut().context(context) {
                    c.outstanding = c.outstanding.saturating_sub(1);
                }
                let (kind, fun, env, arg) = match &response {
                    Response::Reply(bytes) => (Kind::ReplyCallback, call.reply_fun, call.reply_env, bytes.clone()),
                    Response::Reject { .. } => (Kind::RejectCallback, call.reject_fun, call.reject_env, Vec::new()),
                };
                let caller = canister.store.data().canister_id;
                let mut message = Message::new(kind, arg, caller, &call.method, limits::UPDATE);
                if let Response::Reject { code, message: text } = &response {
                    message.reject = Some((*code as u32, text.clone()));
                }
                let trapped = step(canister, context, Entry::Callback { fun, env }, message, &mut events, &mut totals)?;
                if trapped && let Some((fun, env)) = call.cleanup {
                    let message = Message::new(Kind::Cleanup, Vec::new(), caller, &call.method, limits::UPDATE);
                    step(canister, context, Entry::Callback { fun, env }, message, &mut events, &mut totals)?;
                }
            }
        }
    }
    let state = canister.store.data_mut();
    state.current = None;
    let response = state
        .contexts
        .remove(&root)
        .and_then(|c| c.response)
        .unwrap_or_else(|| Response::Reject { code: RejectCode::CanisterError, message: "Canister did not reply to the call".into() });
    state.contexts.retain(|_, c| c.outstanding > 0);
    Ok(Outcome { response, instructions: totals.instructions, slices: totals.slices, pages: totals.pages, log: state.log[log_start..].to_vec() })
}

/// One execution in `context`; routes the calls it made and answers finished contexts.
/// Returns whether it trapped.
fn step(
    canister: &mut Canister,
    context: u64,
    entry: Entry,
    message: Message,
    events: &mut VecDeque<Event>,
    totals: &mut Totals,
) -> Result<bool, HostError> {
    canister.store.data_mut().current = Some(context);
    let (used, trap) = canister.execute(entry, message, true)?;
    totals.instructions += used;
    totals.slices += slices(used);
    totals.pages += canister.store.data().pages.used;
    let me = canister.store.data().canister_id;
    let state = canister.store.data_mut();
    for call in state.take_performed() {
        if call.callee.is_empty() {
            let response = management::respond(&mut state.random, &call.method, &call.payload);
            events.push_back(Event::Deliver(call, response));
        } else if call.callee == me.as_slice() {
            events.push_back(Event::Execute(call));
        } else {
            let callee = Principal::try_from_slice(&call.callee).map(|p| p.to_text()).unwrap_or_else(|_| "?".into());
            let response = Response::Reject {
                code: RejectCode::DestinationInvalid,
                message: format!("the embedded host has no canister {callee} (only this canister and the management canister)"),
            };
            events.push_back(Event::Deliver(call, response));
        }
    }
    let Some(c) = state.context(context) else { return Ok(trap.is_some()) };
    if c.response.is_none() && c.outstanding == 0 {
        // Nothing can answer this context any more: a trap or a missing reply rejects it.
        c.response = Some(Response::Reject {
            code: RejectCode::CanisterError,
            message: trap.clone().unwrap_or_else(|| "Canister did not reply to the call".into()),
        });
    }
    if let (Some(response), false) = (c.response.clone(), c.delivered) {
        c.delivered = true;
        if let Origin::Call(call) = c.origin.clone() {
            events.push_back(Event::Deliver(call, response));
        }
    }
    Ok(trap.is_some())
}
