//! One canister on an embedded IC: install, update, query, upgrade, timers, with the IC's message
//! semantics (commit on success, roll back on trap, queries never commit) and its instruction
//! accounting (see [`crate::instrument`] and [`crate::system_api`]).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, OnceLock};

use candid::Principal;
use wasmtime::{Engine, Global, Instance, Linker, Memory, Module, Store, V128, Val};

use crate::cost::limits;
use crate::instrument::{self, COUNTER_EXPORT, GLOBAL_EXPORT_PREFIX, TABLE_EXPORT};
pub use crate::persist::{CanisterState, GlobalValue};
use crate::system_api::{self, Kind, Message, Origin, PendingCall};
use crate::validate::{self, ModuleInfo, ValidationError};

/// The IC's reject codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectCode {
    SysFatal = 1,
    SysTransient = 2,
    DestinationInvalid = 3,
    CanisterReject = 4,
    CanisterError = 5,
}

/// How a call ended: a reply, or a reject with its code and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    Reply(Vec<u8>),
    Reject { code: RejectCode, message: String },
}

/// The result of one call (an ingress update or query, or a system task).
#[derive(Debug, Clone)]
pub struct Outcome {
    pub response: Response,
    /// Instructions of every execution the call needed (the method and any callbacks).
    pub instructions: u64,
    /// DTS slices of 2 B instructions the executions used (at least one per execution).
    pub slices: u64,
    /// `debug_print` output of this call.
    pub log: Vec<String>,
}

impl Outcome {
    pub fn reply(&self) -> Option<&[u8]> {
        match &self.response {
            Response::Reply(r) => Some(r),
            Response::Reject { .. } => None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum HostError {
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    #[error("instrumentation failed: {0}")]
    Instrument(#[from] instrument::InstrumentError),
    #[error("compiling the module failed: {0}")]
    Compile(String),
    #[error("instantiating the module failed: {0}")]
    Instantiate(String),
    #[error("{method} trapped: {message}")]
    Trapped { method: String, message: String },
    #[error("the canister has no method {0:?}")]
    NoMethod(String),
    /// A [`CanisterState`] that does not fit its own module (globals, heap size).
    #[error("the state does not fit the module: {0}")]
    State(String),
}

pub struct HostConfig {
    pub controllers: Vec<Principal>,
    pub canister_id: Principal,
    /// `wasm_memory_limit` of the canister settings (the IC's default is 3 GiB).
    pub wasm_memory_limit: u64,
    /// Nanoseconds since the epoch at install time.
    pub start_time_ns: u64,
    pub cycles: u128,
    /// Seed of the deterministic `raw_rand` stream.
    pub random_seed: u64,
}

impl Default for HostConfig {
    fn default() -> Self {
        HostConfig {
            controllers: vec![default_controller()],
            canister_id: Principal::from_text("lxzze-o7777-77777-aaaaa-cai").expect("valid principal"),
            wasm_memory_limit: 3 << 30,
            start_time_ns: 1_767_225_600_000_000_000, // 2026-01-01T00:00:00Z
            cycles: 100_000_000_000_000,
            random_seed: 0,
        }
    }
}

/// The principal that installs canisters unless told otherwise.
pub fn default_controller() -> Principal {
    Principal::self_authenticating(b"ic-host default controller")
}

/// The heap limit of wasm32 (4 GiB).
pub const MAX_WASM_MEMORY: u64 = 4 << 30;

fn engine() -> &'static Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE.get_or_init(|| {
        let mut config = wasmtime::Config::new();
        // As the replica configures wasmtime: SIMD, no relaxed SIMD, canonical NaNs, no threads.
        config.wasm_simd(true);
        config.wasm_relaxed_simd(false);
        config.wasm_bulk_memory(true);
        config.wasm_multi_value(true);
        config.cranelift_nan_canonicalization(true);
        Engine::new(&config).expect("the IC's wasmtime configuration is valid")
    })
}

/// Compiled modules by content, so tests that install the same wasm many times compile it once.
fn compile(instrumented: &[u8]) -> Result<Module, HostError> {
    static CACHE: OnceLock<Mutex<HashMap<[u8; 32], Module>>> = OnceLock::new();
    use sha2::Digest;
    let key: [u8; 32] = sha2::Sha256::digest(instrumented).into();
    let cache = CACHE.get_or_init(Default::default);
    if let Some(m) = cache.lock().expect("cache lock").get(&key) {
        return Ok(m.clone());
    }
    let module = Module::new(engine(), instrumented).map_err(|e| HostError::Compile(format!("{e:#}")))?;
    cache.lock().expect("cache lock").insert(key, module.clone());
    Ok(module)
}

/// State of the canister that survives between messages, plus the message being executed.
pub struct Canister {
    store: Store<system_api::State>,
    instance: Instance,
    module: Module,
    linker: Arc<Linker<system_api::State>>,
    info: ModuleInfo,
    /// The module as installed (before instrumentation).
    wasm: Arc<[u8]>,
    memory: Option<Memory>,
    counter: Global,
    globals: Vec<Global>,
}

/// What rolling back needs: the heap, the mutable globals and the timer.
struct Snapshot {
    heap: Vec<u8>,
    globals: Vec<GlobalValue>,
    timer: u64,
}

fn global_value(v: Val) -> GlobalValue {
    match v {
        Val::I32(v) => GlobalValue::I32(v as u32),
        Val::I64(v) => GlobalValue::I64(v as u64),
        Val::F32(bits) => GlobalValue::F32(bits),
        Val::F64(bits) => GlobalValue::F64(bits),
        Val::V128(v) => GlobalValue::V128(v.as_u128()),
        _ => unreachable!("validation refuses mutable globals that hold references"),
    }
}

fn val(v: GlobalValue) -> Val {
    match v {
        GlobalValue::I32(v) => Val::I32(v as i32),
        GlobalValue::I64(v) => Val::I64(v as i64),
        GlobalValue::F32(bits) => Val::F32(bits),
        GlobalValue::F64(bits) => Val::F64(bits),
        GlobalValue::V128(v) => Val::V128(V128::from(v)),
    }
}

impl Canister {
    fn instantiate(module: Module, info: ModuleInfo, wasm: Arc<[u8]>, state: system_api::State) -> Result<Canister, HostError> {
        let linker = Arc::new(system_api::linker(engine()).map_err(|e| HostError::Instantiate(format!("{e:#}")))?);
        Self::instantiate_with(module, info, wasm, state, linker)
    }

    fn instantiate_with(module: Module, info: ModuleInfo, wasm: Arc<[u8]>, state: system_api::State, linker: Arc<Linker<system_api::State>>) -> Result<Canister, HostError> {
        let mut store = Store::new(engine(), state);
        store.limiter(|s| &mut s.limits);
        // Other ic0 functions (validation refused other modules) trap when called.
        let mut per_module = (*linker).clone();
        per_module.define_unknown_imports_as_traps(&module).map_err(|e| HostError::Instantiate(format!("{e:#}")))?;
        let instance = per_module.instantiate(&mut store, &module).map_err(|e| HostError::Instantiate(format!("{e:#}")))?;
        let memory = instance.get_memory(&mut store, "memory").or_else(|| {
            // Any exported memory will do; the IC requires at most one.
            module.exports().find_map(|e| e.ty().memory().map(|_| e.name().to_string())).and_then(|n| instance.get_memory(&mut store, &n))
        });
        let counter = instance.get_global(&mut store, COUNTER_EXPORT).ok_or_else(|| HostError::Instantiate("instrumentation lost the counter".into()))?;
        let mut names: Vec<String> = module.exports().filter(|e| e.name().starts_with(GLOBAL_EXPORT_PREFIX)).map(|e| e.name().to_string()).collect();
        names.sort();
        let globals = names.iter().filter_map(|n| instance.get_global(&mut store, n)).collect();
        let table = instance.get_table(&mut store, TABLE_EXPORT);
        store.data_mut().memory = memory;
        store.data_mut().counter = Some(counter);
        store.data_mut().table = table;
        Ok(Canister { store, instance, module, linker, info, wasm, memory, counter, globals })
    }

    fn heap(&self) -> &[u8] {
        self.memory.map_or(&[], |m| m.data(&self.store))
    }

    fn global_values(&mut self) -> Vec<GlobalValue> {
        self.globals.iter().map(|g| global_value(g.get(&mut self.store))).collect()
    }

    fn snapshot(&mut self) -> Snapshot {
        Snapshot { heap: self.heap().to_vec(), globals: self.global_values(), timer: self.store.data().timer }
    }

    /// Puts the heap and globals back as they were; re-instantiates if the heap grew (wasm
    /// memories cannot shrink, the IC's can roll back).
    fn restore(&mut self, snap: Snapshot) -> Result<(), HostError> {
        self.restore_memory(&snap.heap, &snap.globals)?;
        self.store.data_mut().timer = snap.timer;
        Ok(())
    }

    fn restore_memory(&mut self, heap: &[u8], globals: &[GlobalValue]) -> Result<(), HostError> {
        let grew = self.memory.is_some_and(|m| m.data_size(&self.store) > heap.len());
        if grew {
            let state = std::mem::take(self.store.data_mut());
            let fresh = Canister::instantiate_with(self.module.clone(), self.info.clone(), self.wasm.clone(), state, self.linker.clone())?;
            *self = fresh;
        }
        if let Some(memory) = self.memory {
            let current = memory.data_size(&self.store);
            if current < heap.len() {
                // The heap had this size once; a lower wasm_memory_limit set since only stops
                // further growth.
                let pages = ((heap.len() - current) / 65_536) as u64;
                let limit = std::mem::replace(&mut self.store.data_mut().limits.wasm_memory_limit, u64::MAX);
                let grown = memory.grow(&mut self.store, pages);
                self.store.data_mut().limits.wasm_memory_limit = limit;
                grown.map_err(|e| HostError::Instantiate(format!("restoring the heap: {e}")))?;
            }
            memory.data_mut(&mut self.store)[..heap.len()].copy_from_slice(heap);
        }
        for (g, &v) in self.globals.iter().zip(globals) {
            g.set(&mut self.store, val(v)).map_err(|e| HostError::State(format!("restoring a global: {e}")))?;
        }
        Ok(())
    }

    /// Takes everything of `state` but the module, which must be this canister's. Checks first
    /// that the heap and globals fit, so a state that does not leaves the canister as it was.
    fn restore_state(&mut self, state: &CanisterState) -> Result<(), HostError> {
        let minimum = self.module.exports().find_map(|e| e.ty().memory().map(|m| m.minimum())).map(|pages| pages * 65_536);
        match minimum {
            Some(minimum) if (state.heap.len() as u64) < minimum || !state.heap.len().is_multiple_of(65_536) => {
                return Err(HostError::State(format!("a heap of {} bytes for a module whose memory starts at {minimum} bytes and grows by 64 KiB pages", state.heap.len())));
            }
            None if !state.heap.is_empty() => return Err(HostError::State("a heap for a module without memory".into())),
            _ => {}
        }
        let types: Vec<wasmtime::ValType> = self.globals.iter().map(|g| g.ty(&self.store).content().clone()).collect();
        let fits = |(ty, v): (&wasmtime::ValType, &GlobalValue)| {
            matches!(
                (ty, v),
                (wasmtime::ValType::I32, GlobalValue::I32(_))
                    | (wasmtime::ValType::I64, GlobalValue::I64(_))
                    | (wasmtime::ValType::F32, GlobalValue::F32(_))
                    | (wasmtime::ValType::F64, GlobalValue::F64(_))
                    | (wasmtime::ValType::V128, GlobalValue::V128(_))
            )
        };
        if types.len() != state.globals.len() || !types.iter().zip(&state.globals).all(fits) {
            return Err(HostError::State(format!("globals {:?} for a module whose mutable globals are {types:?}", state.globals)));
        }
        self.store.data_mut().restore_persistent(state);
        self.restore_memory(&state.heap, &state.globals)
    }

    fn has_export(&self, name: &str) -> bool {
        self.module.get_export(name).is_some()
    }

    /// Runs one message execution; rolls back on a trap, or always when `persist` is false.
    /// Returns (instructions used, trap message if it trapped).
    fn execute(&mut self, entry: Entry, message: Message, persist: bool) -> Result<(u64, Option<String>), HostError> {
        let (limit, kind) = (message.limit, message.kind);
        let snap = self.snapshot();
        {
            let state = self.store.data_mut();
            state.stable.begin();
            state.begin_message(message);
        }
        self.counter.set(&mut self.store, Val::I64(limit as i64)).map_err(|e| HostError::Instantiate(e.to_string()))?;
        let result = match entry {
            Entry::Export(name) => match self.instance.get_typed_func::<(), ()>(&mut self.store, &name) {
                Ok(f) => f.call(&mut self.store, ()),
                Err(_) => return Err(HostError::NoMethod(name)),
            },
            Entry::Callback { fun, env } => system_api::call_table(&mut self.store, fun, env),
        };
        let remaining = match self.counter.get(&mut self.store) {
            Val::I64(v) => v,
            _ => 0,
        };
        let used = (limit as i64).saturating_sub(remaining).max(0) as u64;
        let trap = match result {
            Ok(()) => None,
            Err(e) => Some(self.store.data_mut().take_trap_message().unwrap_or_else(|| describe_trap(&e, limit))),
        };
        let state = self.store.data_mut();
        state.end_message(used);
        if trap.is_none() && persist {
            // Calls the message made stay in the state until the host takes them.
            state.stable.commit();
            if kind.bumps_version() {
                state.canister_version += 1;
            }
        } else {
            state.stable.rollback();
            state.discard_pending_calls();
            self.restore(snap)?;
        }
        Ok((used, trap))
    }
}

fn describe_trap(e: &wasmtime::Error, limit: u64) -> String {
    if let Some(trap) = e.downcast_ref::<wasmtime::Trap>() {
        return format!("Canister trapped: {trap}");
    }
    if e.downcast_ref::<system_api::OutOfInstructions>().is_some() {
        return format!("Canister exceeded the limit of {limit} instructions for single message execution.");
    }
    format!("Canister trapped: {e:#}")
}

enum Entry {
    Export(String),
    Callback { fun: u32, env: u32 },
}

/// Work the event loop of a call tree still has to do.
enum Event {
    /// Run a call this canister made to itself.
    Execute(PendingCall),
    /// Run the callback of a finished call.
    Deliver(PendingCall, Response),
}

fn slices(instructions: u64) -> u64 {
    instructions.div_ceil(limits::SLICE).max(1)
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
        let mut state = system_api::State::new(&config);
        state.canister_version += 1;
        let mut host = Host { canister: Self::load(wasm, state)? };
        let caller = host.install_caller();
        let outcome = host.run_install_hooks(&["canister_init"], arg, caller, limits::INSTALL)?;
        Ok((host, outcome))
    }

    /// Instantiates `wasm` without running `canister_init`: for reading its interface.
    pub fn load_without_init(wasm: &[u8]) -> Result<Host, HostError> {
        Ok(Host { canister: Self::load(wasm, system_api::State::new(&HostConfig::default()))? })
    }

    fn load(wasm: &[u8], state: system_api::State) -> Result<Canister, HostError> {
        let info = validate::validate(wasm)?;
        let module = compile(&instrument::instrument(wasm)?)?;
        Canister::instantiate(module, info, Arc::from(wasm), state)
    }

    /// Who installs and upgrades: the first controller.
    fn install_caller(&self) -> Principal {
        self.controllers().first().copied().unwrap_or_else(Principal::anonymous)
    }

    /// The canister's persistent state, taken between messages: a copy of the heap, the
    /// globals, stable memory (pages shared copy-on-write) and the system state.
    pub fn state(&mut self) -> CanisterState {
        let heap = Arc::from(self.canister.heap());
        let globals = self.canister.global_values();
        let s = self.canister.store.data();
        CanisterState {
            wasm: self.canister.wasm.clone(),
            heap,
            globals,
            stable: s.stable.clone(),
            timer: s.timer,
            certified_data: s.certified_data.clone(),
            controllers: s.controllers.clone(),
            canister_id: s.canister_id,
            cycles: s.cycles,
            time: s.time,
            canister_version: s.canister_version,
            wasm_memory_limit: s.limits.wasm_memory_limit,
            random: s.random_state(),
        }
    }

    /// A host running `state`: its module is validated, instrumented and instantiated, no
    /// `canister_init`, `canister_post_upgrade` or other hook runs, then the heap, globals,
    /// stable memory and system state are restored. (A wasm start function, which Rust
    /// canisters do not have, runs at instantiation as wasm requires; the restore overwrites
    /// what it did to the heap and globals.)
    pub fn from_state(state: &CanisterState) -> Result<Host, HostError> {
        let mut canister = Self::load(&state.wasm, system_api::State::default())?;
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
        let mut used = 0u64;
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
            total_slices += slices(instructions);
            if let Some(message) = trap {
                return Err(HostError::Trapped { method: name.trim_start_matches("canister_").to_string(), message });
            }
        }
        let log = self.canister.store.data().log[log_start..].to_vec();
        Ok(Outcome { response: Response::Reply(Vec::new()), instructions: used, slices: total_slices, log })
    }

    /// Replaces the code, keeping stable memory: `canister_pre_upgrade` on the old code, a fresh
    /// heap, `canister_post_upgrade(arg)` on the new code. If anything traps the old code and
    /// state stay.
    pub fn upgrade(&mut self, wasm: &[u8], arg: &[u8]) -> Result<Outcome, HostError> {
        let info = validate::validate(wasm)?;
        let module = compile(&instrument::instrument(wasm)?)?;
        let caller = self.install_caller();
        let stable_before = self.canister.store.data().stable.clone();
        let pre = self.run_install_hooks(&["canister_pre_upgrade"], &[], caller, limits::INSTALL)?;
        // The new instance starts from an empty heap with the old stable memory and settings.
        let mut state = self.canister.store.data().carry_over();
        state.timer = 0; // the IC clears the global timer on upgrade
        state.canister_version += 1; // before post_upgrade runs, as on the IC
        let old = std::mem::replace(&mut self.canister, Canister::instantiate(module, info, Arc::from(wasm), state)?);
        match self.run_install_hooks(&["canister_post_upgrade"], arg, caller, limits::INSTALL - pre.instructions) {
            Ok(post) => Ok(Outcome {
                response: Response::Reply(Vec::new()),
                instructions: pre.instructions + post.instructions,
                slices: pre.slices + post.slices,
                log: [pre.log, post.log].concat(),
            }),
            Err(e) => {
                self.canister = old;
                self.canister.store.data_mut().stable = stable_before;
                Err(e)
            }
        }
    }

    /// An ingress update call: `canister_inspect_message` may refuse it, then the method runs,
    /// then everything its calls set in motion (callbacks, calls to itself), until nothing is
    /// left to run.
    pub fn update(&mut self, method: &str, arg: &[u8], caller: Principal) -> Result<Outcome, HostError> {
        let export = format!("canister_update {method}");
        if !self.canister.has_export(&export) {
            return Err(HostError::NoMethod(method.to_string()));
        }
        let log_start = self.canister.store.data().log.len();
        if self.canister.has_export("canister_inspect_message") {
            let message = Message::new(Kind::InspectMessage, arg.to_vec(), caller, method, limits::INSPECT_MESSAGE);
            let (used, trap) = self.canister.execute(Entry::Export("canister_inspect_message".into()), message, false)?;
            let accepted = self.canister.store.data().last_accepted;
            if trap.is_some() || !accepted {
                let reason = trap.unwrap_or_else(|| "the canister did not accept the message".into());
                return Ok(Outcome {
                    response: Response::Reject { code: RejectCode::CanisterReject, message: format!("inspect_message refused {method}: {reason}") },
                    instructions: used,
                    slices: slices(used),
                    log: self.canister.store.data().log[log_start..].to_vec(),
                });
            }
        }
        let message = Message::new(Kind::Update, arg.to_vec(), caller, method, limits::UPDATE);
        self.run_tree(Origin::Ingress, Entry::Export(export), message, log_start)
    }

    /// Runs a first execution in a new call context, then the event loop of the calls it makes,
    /// and returns the answer of that first context.
    fn run_tree(&mut self, origin: Origin, entry: Entry, message: Message, log_start: usize) -> Result<Outcome, HostError> {
        let mut events: VecDeque<Event> = VecDeque::new();
        let mut totals = (0u64, 0u64);
        let root = self.canister.store.data_mut().open_context(origin);
        self.step(root, entry, message, &mut events, &mut totals)?;
        while let Some(event) = events.pop_front() {
            match event {
                Event::Execute(call) => {
                    let me = self.canister_id();
                    let export = format!("canister_update {}", call.method);
                    if !self.canister.has_export(&export) {
                        let response = Response::Reject { code: RejectCode::CanisterError, message: format!("the canister has no update method {:?}", call.method) };
                        events.push_back(Event::Deliver(call, response));
                        continue;
                    }
                    let message = Message::new(Kind::Update, call.payload.clone(), me, &call.method, limits::UPDATE);
                    let context = self.canister.store.data_mut().open_context(Origin::Call(call));
                    self.step(context, Entry::Export(export), message, &mut events, &mut totals)?;
                }
                Event::Deliver(call, response) => {
                    let context = call.context;
                    if let Some(c) = self.canister.store.data_mut().context(context) {
                        c.outstanding = c.outstanding.saturating_sub(1);
                    }
                    let (kind, fun, env, arg) = match &response {
                        Response::Reply(bytes) => (Kind::ReplyCallback, call.reply_fun, call.reply_env, bytes.clone()),
                        Response::Reject { .. } => (Kind::RejectCallback, call.reject_fun, call.reject_env, Vec::new()),
                    };
                    let caller = self.canister.store.data().canister_id;
                    let mut message = Message::new(kind, arg, caller, &call.method, limits::UPDATE);
                    if let Response::Reject { code, message: text } = &response {
                        message.reject = Some((*code as u32, text.clone()));
                    }
                    let trapped = self.step(context, Entry::Callback { fun, env }, message, &mut events, &mut totals)?;
                    if trapped {
                        if let Some((fun, env)) = call.cleanup {
                            let message = Message::new(Kind::Cleanup, Vec::new(), caller, &call.method, limits::UPDATE);
                            self.step(context, Entry::Callback { fun, env }, message, &mut events, &mut totals)?;
                        }
                    }
                }
            }
        }
        let state = self.canister.store.data_mut();
        state.current = None;
        let response = state.contexts.remove(&root).and_then(|c| c.response).unwrap_or_else(|| Response::Reject {
            code: RejectCode::CanisterError,
            message: "Canister did not reply to the call".into(),
        });
        state.contexts.retain(|_, c| c.outstanding > 0);
        Ok(Outcome { response, instructions: totals.0, slices: totals.1, log: state.log[log_start..].to_vec() })
    }

    /// One execution in `context`; routes the calls it made and answers finished contexts.
    /// Returns whether it trapped.
    fn step(&mut self, context: u64, entry: Entry, message: Message, events: &mut VecDeque<Event>, totals: &mut (u64, u64)) -> Result<bool, HostError> {
        self.canister.store.data_mut().current = Some(context);
        let (used, trap) = self.canister.execute(entry, message, true)?;
        totals.0 += used;
        totals.1 += slices(used);
        let me = self.canister_id();
        let state = self.canister.store.data_mut();
        for call in state.take_performed() {
            if call.callee.is_empty() {
                let response = state.management_response(&call);
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

    /// A query: runs against the current state and never changes it.
    pub fn query(&mut self, method: &str, arg: &[u8], caller: Principal) -> Result<Outcome, HostError> {
        self.query_with_certificate(method, arg, caller, None)
    }

    /// A non-replicated query that is given `certificate` (a certificate of the canister's
    /// certified data): `ic0.data_certificate_present` returns 1 and
    /// `ic0.data_certificate_size`/`_copy` return it. With `None` it is [`Host::query`].
    pub fn query_with_certificate(&mut self, method: &str, arg: &[u8], caller: Principal, certificate: Option<Vec<u8>>) -> Result<Outcome, HostError> {
        let export = format!("canister_query {method}");
        let export = if self.canister.has_export(&export) { export } else { format!("canister_composite_query {method}") };
        if !self.canister.has_export(&export) {
            return Err(HostError::NoMethod(method.to_string()));
        }
        let state = self.canister.store.data_mut();
        let log_start = state.log.len();
        let context = state.open_context(Origin::Ingress);
        let mut message = Message::new(Kind::Query, arg.to_vec(), caller, method, limits::QUERY);
        message.certificate = certificate;
        let (used, trap) = self.canister.execute(Entry::Export(export), message, false)?;
        let state = self.canister.store.data_mut();
        state.current = None;
        let answered = state.contexts.remove(&context).and_then(|c| c.response);
        let response = match trap {
            Some(message) => Response::Reject { code: RejectCode::CanisterError, message },
            None => answered.unwrap_or(Response::Reject { code: RejectCode::CanisterError, message: format!("Canister did not reply to the call {method}") }),
        };
        Ok(Outcome { response, instructions: used, slices: slices(used), log: state.log[log_start..].to_vec() })
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
        let has_timer = self.canister.has_export("canister_global_timer");
        let state = self.canister.store.data_mut();
        if state.timer == 0 || state.time < state.timer || !has_timer {
            return Ok(None);
        }
        state.timer = 0;
        let log_start = state.log.len();
        let me = state.canister_id;
        let message = Message::new(Kind::Timer, Vec::new(), me, "canister_global_timer", limits::UPDATE);
        let mut outcome = self.run_tree(Origin::System, Entry::Export("canister_global_timer".into()), message, log_start)?;
        // A system task answers nobody; only a trap is worth reporting.
        if let Response::Reject { message, .. } = &outcome.response {
            if message == "Canister did not reply to the call" {
                outcome.response = Response::Reply(Vec::new());
            }
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
        let func = self.canister.instance.get_typed_func::<(), i32>(&mut self.canister.store, "get_candid_pointer").ok()?;
        let snap = self.canister.snapshot();
        let caller = self.canister_id();
        self.canister.store.data_mut().begin_message(Message::new(Kind::Query, Vec::new(), caller, "get_candid_pointer", limits::QUERY));
        self.canister.counter.set(&mut self.canister.store, Val::I64(limits::QUERY as i64)).ok()?;
        let pointer = func.call(&mut self.canister.store, ()).ok();
        let text = pointer.and_then(|p| {
            let heap = self.canister.memory?.data(&self.canister.store);
            let start = usize::try_from(p).ok()?;
            let len = heap.get(start..)?.iter().position(|&b| b == 0)?;
            String::from_utf8(heap[start..start + len].to_vec()).ok()
        });
        self.canister.store.data_mut().end_message(0);
        self.canister.restore(snap).ok()?;
        self.canister.info.candid_service = text.clone();
        text
    }

    pub fn module_info(&self) -> &ModuleInfo {
        &self.canister.info
    }

    /// Heap size in bytes.
    pub fn heap_bytes(&self) -> u64 {
        self.canister.memory.map_or(0, |m| m.data_size(&self.canister.store) as u64)
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
