//! One canister on an embedded IC: install, update, query, upgrade, timers, with the IC's message
//! semantics (commit on success, roll back on trap, queries never commit) and its instruction
//! accounting (see [`crate::instrument`] and [`crate::ic0`]); its state between messages as a
//! [`CanisterState`]. The work is done below: `canister` runs one execution, `calls` the call
//! tree of a message.

use std::sync::Arc;

use candid::Principal;

use crate::calls::{self, slices};
use crate::canister::{Canister, Code, Entry};
use crate::cost::{limits, pages};
use crate::message::{Kind, Message};
use crate::state::{Origin, State};
use crate::validate::ModuleInfo;

pub use crate::persist::{CanisterState, GlobalValue};
pub use crate::types::{Accounting, HostConfig, HostError, MAX_WASM_MEMORY, Outcome, PageUse, RejectCode, Response, default_controller};

/// What `canister_inspect_message` decided about an ingress message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inspection {
    Accepted,
    /// It returned without calling `ic0.accept_message`.
    Refused,
    /// It trapped (the message says how).
    Trapped(String),
}

/// A canister installed on the embedded host.
pub struct Host {
    canister: Canister,
}

// The local replica moves hosts between threads.
const _: () = {
    const fn assert_send<T: Send>() {}
    assert_send::<Host>();
};

impl Host {
    /// Validates, instruments and installs `wasm`, then runs `canister_init` with `arg`. The
    /// canister version goes from 0 (created) to 1 before `canister_init` runs, as on the IC.
    pub fn install(wasm: &[u8], arg: &[u8], config: HostConfig) -> Result<(Host, Outcome), HostError> {
        let mut state = State::new(&config);
        state.canister_version += 1;
        let mut host = Host { canister: Canister::load(wasm, state)? };
        let caller = host.install_caller();
        let base = host.execution_state_cost();
        let mut outcome = host.run_install_hooks(&["canister_init"], arg, caller, limits::INSTALL - base)?;
        outcome.instructions += base;
        Ok((host, outcome))
    }

    /// Instantiates `wasm` without running `canister_init`: for reading its interface.
    pub fn load_without_init(wasm: &[u8]) -> Result<Host, HostError> {
        Ok(Host { canister: Canister::load(wasm, State::new(&HostConfig::default()))? })
    }

    /// How this canister's memory pages are charged.
    pub fn accounting(&self) -> Accounting {
        self.canister.store.data().pages.accounting
    }

    /// The base cost of creating the execution state, which install and upgrade pay (2026).
    fn execution_state_cost(&self) -> u64 {
        match self.accounting() {
            Accounting::Ic2026 => pages::EXECUTION_STATE,
            Accounting::Ic2025 => 0,
        }
    }

    /// Who installs and upgrades: the first controller.
    fn install_caller(&self) -> Principal {
        self.controllers().first().copied().unwrap_or_else(Principal::anonymous)
    }

    /// The canister's persistent state, taken between messages: a copy of the heap, the
    /// globals, stable memory (pages shared copy-on-write) and the system state.
    pub fn state(&mut self) -> CanisterState {
        self.canister.state()
    }

    /// A host running `state`: its module is validated, instrumented and instantiated, no
    /// `canister_init`, `canister_post_upgrade` or other hook runs, then the heap, globals,
    /// stable memory and system state are restored. (A wasm start function, which Rust
    /// canisters do not have, runs at instantiation as wasm requires; the restore overwrites
    /// what it did to the heap and globals.)
    pub fn from_state(state: &CanisterState) -> Result<Host, HostError> {
        let mut canister = Canister::load(&state.wasm, State::default())?;
        canister.restore_state(state)?;
        Ok(Host { canister })
    }

    /// Rolls this host to `state`. When the module is the same it reuses the compiled module
    /// and the instance (re-instantiating only if the heap must shrink); otherwise it is
    /// [`Host::from_state`]. The log stays. On an error the host is unchanged.
    pub fn restore_state(&mut self, state: &CanisterState) -> Result<(), HostError> {
        if Arc::ptr_eq(&self.canister.wasm, &state.wasm) || self.canister.wasm[..] == state.wasm[..] {
            return self.canister.restore_state(state);
        }
        let mut fresh = Host::from_state(state)?;
        fresh.canister.store.data_mut().log = std::mem::take(&mut self.canister.store.data_mut().log);
        *self = fresh;
        Ok(())
    }

    /// The module as installed (before instrumentation).
    pub fn wasm(&self) -> &[u8] {
        &self.canister.wasm
    }

    /// What `ic0.canister_version` returns. It grows as on the IC: 1 once installed, +1 for each
    /// upgrade and each committed update, callback or timer execution, and +1 for each
    /// [`Host::bump_canister_version`]; queries, traps, refused upgrades and `inspect_message`
    /// leave it.
    pub fn canister_version(&self) -> u64 {
        self.canister.store.data().canister_version
    }

    /// Counts a change the host does not see (settings or controllers changed through the
    /// management canister of a replica built on this host).
    pub fn bump_canister_version(&mut self) {
        self.canister.store.data_mut().canister_version += 1;
    }

    /// Replaces the controllers `ic0.is_controller` checks and upgrades run as. It does not
    /// change the canister version: the caller decides (see [`Host::bump_canister_version`]).
    pub fn set_controllers(&mut self, controllers: Vec<Principal>) {
        self.canister.store.data_mut().controllers = controllers;
    }

    /// What the canister last set with `ic0.certified_data_set` (at most 32 bytes).
    pub fn certified_data(&self) -> &[u8] {
        &self.canister.store.data().certified_data
    }

    /// Runs `names` in order as one install-like message with a shared budget; any trap undoes all.
    fn run_install_hooks(&mut self, names: &[&str], arg: &[u8], caller: Principal, limit: u64) -> Result<Outcome, HostError> {
        let (mut used, mut page_charges) = (0u64, PageUse::default());
        let log_start = self.canister.store.data().log.len();
        let mut total_slices = 0;
        let hooks: Vec<&str> = names.iter().copied().filter(|n| self.canister.has_export(n)).collect();
        for name in hooks {
            let kind = match name {
                "canister_pre_upgrade" => Kind::PreUpgrade,
                "canister_post_upgrade" => Kind::PostUpgrade,
                _ => Kind::Init,
            };
            let message = Message::new(kind, arg.to_vec(), caller, name, limit.saturating_sub(used));
            let (instructions, trap) = self.canister.execute(Entry::Export(name.to_string()), message, true)?;
            used += instructions;
            page_charges += self.canister.store.data().pages.used;
            total_slices += slices(instructions);
            if let Some(message) = trap {
                return Err(HostError::Trapped { method: name.trim_start_matches("canister_").to_string(), message });
            }
        }
        let log = self.canister.store.data().log[log_start..].to_vec();
        Ok(Outcome { response: Response::Reply(Vec::new()), instructions: used, slices: total_slices, pages: page_charges, log })
    }

    /// Replaces the code, keeping stable memory: `canister_pre_upgrade` on the old code, a fresh
    /// heap, `canister_post_upgrade(arg)` on the new code. If anything fails the old code and
    /// state stay, as they were before `canister_pre_upgrade` (the IC reverts its changes too).
    pub fn upgrade(&mut self, wasm: &[u8], arg: &[u8]) -> Result<Outcome, HostError> {
        let code = Code::new(wasm, self.accounting())?;
        let base = self.execution_state_cost();
        let caller = self.install_caller();
        let before = self.canister.state();
        let pre = self.run_install_hooks(&["canister_pre_upgrade"], &[], caller, limits::INSTALL)?;
        // The new instance starts from an empty heap with the old stable memory and settings.
        let mut state = self.canister.store.data().carry_over();
        state.timer = 0; // the IC clears the global timer on upgrade
        state.canister_version += 1; // before post_upgrade runs, as on the IC
        let post = Canister::new(code, state).and_then(|new| {
            let old = std::mem::replace(&mut self.canister, new);
            let post = self.run_install_hooks(&["canister_post_upgrade"], arg, caller, limits::INSTALL - base - pre.instructions);
            if post.is_err() {
                self.canister = old;
            }
            post
        });
        match post {
            Ok(post) => Ok(Outcome {
                response: Response::Reply(Vec::new()),
                instructions: base + pre.instructions + post.instructions,
                slices: pre.slices + post.slices,
                pages: pre.pages + post.pages,
                log: [pre.log, post.log].concat(),
            }),
            Err(e) => {
                self.canister.restore_state(&before)?;
                Err(e)
            }
        }
    }

    /// An ingress update call: `canister_inspect_message` may refuse it, then the method runs,
    /// then everything its calls set in motion (callbacks, calls to itself), until nothing is
    /// left to run.
    pub fn update(&mut self, method: &str, arg: &[u8], caller: Principal) -> Result<Outcome, HostError> {
        if !self.canister.has_method(&format!("canister_update {method}")) && !self.canister.has_method(&format!("canister_query {method}")) {
            return Err(HostError::NoMethod(method.to_string()));
        }
        let log_start = self.canister.store.data().log.len();
        let (inspection, used) = self.inspect_message(method, arg, caller)?;
        let reason = match inspection {
            Inspection::Accepted => return self.execute_update(method, arg, caller),
            Inspection::Refused => "the canister did not accept the message".to_string(),
            Inspection::Trapped(message) => message,
        };
        Ok(Outcome {
            response: Response::Reject { code: RejectCode::CanisterReject, message: format!("inspect_message refused {method}: {reason}") },
            instructions: used,
            slices: slices(used),
            pages: self.canister.store.data().pages.used,
            log: self.canister.store.data().log[log_start..].to_vec(),
        })
    }

    /// Runs `canister_inspect_message` for an ingress update to `method`, as a replica does
    /// before it accepts the message (never committed); with no such export every message is
    /// accepted. Returns the verdict and the instructions it used.
    pub fn inspect_message(&mut self, method: &str, arg: &[u8], caller: Principal) -> Result<(Inspection, u64), HostError> {
        if !self.canister.has_method("canister_inspect_message") {
            return Ok((Inspection::Accepted, 0));
        }
        let message = Message::new(Kind::InspectMessage, arg.to_vec(), caller, method, limits::INSPECT_MESSAGE);
        let (used, trap) = self.canister.execute(Entry::Export("canister_inspect_message".into()), message, false)?;
        let verdict = match trap {
            Some(message) => Inspection::Trapped(message),
            None if self.canister.store.data().last_accepted => Inspection::Accepted,
            None => Inspection::Refused,
        };
        Ok((verdict, used))
    }

    /// An ingress update that was already accepted ([`Host::inspect_message`]): the method
    /// runs, then everything its calls set in motion. A query method called this way runs as a
    /// replicated query: it replies, and its changes are discarded (IC interface specification,
    /// "Query call" executed as an update).
    pub fn execute_update(&mut self, method: &str, arg: &[u8], caller: Principal) -> Result<Outcome, HostError> {
        let export = format!("canister_update {method}");
        if !self.canister.has_method(&export) {
            if self.canister.has_method(&format!("canister_query {method}")) {
                return self.run_query(method, Kind::ReplicatedQuery, arg, caller, None);
            }
            return Err(HostError::NoMethod(method.to_string()));
        }
        let log_start = self.canister.store.data().log.len();
        let message = Message::new(Kind::Update, arg.to_vec(), caller, method, limits::UPDATE);
        calls::run_tree(&mut self.canister, Origin::Ingress, Entry::Export(export), message, log_start)
    }

    /// A query: runs against the current state and never changes it.
    pub fn query(&mut self, method: &str, arg: &[u8], caller: Principal) -> Result<Outcome, HostError> {
        self.query_with_certificate(method, arg, caller, None)
    }

    /// A non-replicated query that is given `certificate` (a certificate of the canister's
    /// certified data): `ic0.data_certificate_present` returns 1 and
    /// `ic0.data_certificate_size`/`_copy` return it. With `None` it is [`Host::query`].
    pub fn query_with_certificate(
        &mut self,
        method: &str,
        arg: &[u8],
        caller: Principal,
        certificate: Option<Vec<u8>>,
    ) -> Result<Outcome, HostError> {
        self.run_query(method, Kind::Query, arg, caller, certificate)
    }

    /// A query (composite queries too, when not replicated), never committed.
    fn run_query(&mut self, method: &str, kind: Kind, arg: &[u8], caller: Principal, certificate: Option<Vec<u8>>) -> Result<Outcome, HostError> {
        let export = format!("canister_query {method}");
        let export =
            if self.canister.has_method(&export) || kind == Kind::ReplicatedQuery { export } else { format!("canister_composite_query {method}") };
        if !self.canister.has_method(&export) {
            return Err(HostError::NoMethod(method.to_string()));
        }
        let state = self.canister.store.data_mut();
        let log_start = state.log.len();
        let context = state.open_context(Origin::Ingress);
        let mut message = Message::new(kind, arg.to_vec(), caller, method, limits::QUERY);
        message.certificate = certificate;
        message.pays_writes = export.starts_with("canister_composite_query");
        let (used, trap) = self.canister.execute(Entry::Export(export), message, false)?;
        let state = self.canister.store.data_mut();
        state.current = None;
        let answered = state.contexts.remove(&context).and_then(|c| c.response);
        let response = match trap {
            Some(message) => Response::Reject { code: RejectCode::CanisterError, message },
            None => answered
                .unwrap_or(Response::Reject { code: RejectCode::CanisterError, message: format!("Canister did not reply to the call {method}") }),
        };
        Ok(Outcome { response, instructions: used, slices: slices(used), pages: state.pages.used, log: state.log[log_start..].to_vec() })
    }

    /// Moves time forward; if the global timer is due, runs `canister_global_timer` (and the
    /// calls it makes) as the IC does.
    pub fn advance_time(&mut self, nanos: u64) -> Result<Option<Outcome>, HostError> {
        let state = self.canister.store.data_mut();
        state.time = state.time.saturating_add(nanos);
        self.tick()
    }

    /// Runs the global timer if it is due.
    pub fn tick(&mut self) -> Result<Option<Outcome>, HostError> {
        let has_timer = self.canister.has_method("canister_global_timer");
        let state = self.canister.store.data_mut();
        if state.timer == 0 || state.time < state.timer || !has_timer {
            return Ok(None);
        }
        state.timer = 0;
        let log_start = state.log.len();
        let me = state.canister_id;
        let message = Message::new(Kind::Timer, Vec::new(), me, "canister_global_timer", limits::UPDATE);
        let mut outcome = calls::run_tree(&mut self.canister, Origin::System, Entry::Export("canister_global_timer".into()), message, log_start)?;
        // A system task answers nobody; only a trap is worth reporting.
        if let Response::Reject { message, .. } = &outcome.response
            && message == "Canister did not reply to the call"
        {
            outcome.response = Response::Reply(Vec::new());
        }
        Ok(Some(outcome))
    }

    pub fn time(&self) -> u64 {
        self.canister.store.data().time
    }

    pub fn set_time(&mut self, nanos: u64) {
        self.canister.store.data_mut().time = nanos;
    }

    pub fn canister_id(&self) -> Principal {
        self.canister.store.data().canister_id
    }

    pub fn controllers(&self) -> &[Principal] {
        &self.canister.store.data().controllers
    }

    /// Everything the canister printed with `debug_print` (and trap messages), oldest first.
    pub fn log(&self) -> &[String] {
        &self.canister.store.data().log
    }

    /// The canister's Candid interface: its `candid:service` metadata, or else what an ic-cdk
    /// canister's `get_candid_pointer` export returns (as `candid-extractor` reads it).
    pub fn candid_service(&mut self) -> Option<String> {
        if let Some(did) = &self.canister.info.candid_service {
            return Some(did.clone());
        }
        let text = self.canister.candid_pointer();
        self.canister.info.candid_service = text.clone();
        text
    }

    pub fn module_info(&self) -> &ModuleInfo {
        &self.canister.info
    }

    /// Heap size in bytes.
    pub fn heap_bytes(&self) -> u64 {
        self.canister.heap().len() as u64
    }

    /// Stable memory size in bytes.
    pub fn stable_bytes(&self) -> u64 {
        self.canister.store.data().stable.size() * crate::stable::PAGE
    }

    /// Sets the canister's `wasm_memory_limit` (at most 4 GiB).
    pub fn set_wasm_memory_limit(&mut self, bytes: u64) {
        self.canister.store.data_mut().limits.wasm_memory_limit = bytes.min(MAX_WASM_MEMORY);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An export of a method with the wrong signature is no method, and asking for it leaves
    /// no message, call context or stable-memory journal open.
    #[test]
    fn a_method_with_the_wrong_signature_leaves_nothing_open() {
        let wasm = wat::parse_str(
            r#"(module (memory (export "memory") 1)
                (func (export "canister_update run") (param i32))
                (func (export "canister_query look") (result i32) (i32.const 0))
                (func (export "canister_pre_upgrade") (param i64)))"#,
        )
        .unwrap();
        let (mut host, _) = Host::install(&wasm, &[], HostConfig::default()).unwrap();
        assert!(matches!(host.update("run", &[], default_controller()), Err(HostError::NoMethod(_))));
        assert!(matches!(host.query("look", &[], default_controller()), Err(HostError::NoMethod(_))));
        assert!(matches!(host.upgrade(&wasm, &[]), Err(HostError::NoMethod(_))));
        let state = host.canister.store.data();
        assert!(state.message.is_none(), "a message was left open");
        assert!(state.contexts.is_empty() && state.current.is_none(), "a call context was left open");
        assert!(!state.stable.in_message(), "the stable-memory journal was left open");
    }
}
