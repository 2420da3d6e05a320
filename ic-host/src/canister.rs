//! One canister instance: the engine and compile cache, instantiation, snapshots and rollback,
//! and one message execution ([`Canister::execute`]) with the IC's commit-or-roll-back rule.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use wasmtime::{Engine, Global, Instance, Linker, Memory, Module, Store, TypedFunc, V128, Val};

use crate::cost::limits;
use crate::cost::pages::COPY;
use crate::ic0;
use crate::instrument::{self, COUNTER_EXPORT, GLOBAL_EXPORT_PREFIX, PAGE_WRITTEN, PAGES_EXPORT, TABLE_EXPORT};
use crate::message::{Kind, Message};
use crate::persist::{CanisterState, GlobalValue};
use crate::state::State;
use crate::types::{Accounting, HostError, OutOfInstructions};
use crate::validate::{self, ModuleInfo};

/// The wasmtime engine, configured as the replica configures it.
fn engine() -> &'static Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE.get_or_init(|| {
        let mut config = wasmtime::Config::new();
        // As the replica configures wasmtime: SIMD, no relaxed SIMD, canonical NaNs, no threads.
        config.wasm_simd(true);
        config.wasm_relaxed_simd(false);
        config.wasm_bulk_memory(true);
        config.wasm_multi_value(true);
        // The page map of the 2026 accounting is a second memory (validation allows the
        // canister one).
        config.wasm_multi_memory(true);
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
pub(crate) struct Canister {
    pub(crate) store: Store<State>,
    instance: Instance,
    module: Module,
    linker: Arc<Linker<State>>,
    pub(crate) info: ModuleInfo,
    /// The module as installed (before instrumentation).
    pub(crate) wasm: Arc<[u8]>,
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

/// A module validated, instrumented and compiled, ready to instantiate.
pub(crate) struct Code {
    module: Module,
    info: ModuleInfo,
    wasm: Arc<[u8]>,
}

impl Code {
    pub(crate) fn new(wasm: &[u8], accounting: Accounting) -> Result<Code, HostError> {
        let info = validate::validate(wasm)?;
        let module = compile(&instrument::instrument(wasm, accounting)?)?;
        Ok(Code { module, info, wasm: Arc::from(wasm) })
    }
}

impl Canister {
    /// Instantiates `code` with `state`; runs no hook.
    pub(crate) fn new(code: Code, state: State) -> Result<Canister, HostError> {
        let linker = Arc::new(ic0::linker(engine()).map_err(|e| HostError::Instantiate(format!("{e:#}")))?);
        Self::instantiate(code.module, code.info, code.wasm, state, linker)
    }

    /// Validates, instruments, compiles and instantiates `wasm` with `state`; runs no hook.
    pub(crate) fn load(wasm: &[u8], state: State) -> Result<Canister, HostError> {
        let accounting = state.pages.accounting;
        Self::new(Code::new(wasm, accounting)?, state)
    }

    fn instantiate(module: Module, info: ModuleInfo, wasm: Arc<[u8]>, state: State, linker: Arc<Linker<State>>) -> Result<Canister, HostError> {
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
        let counter =
            instance.get_global(&mut store, COUNTER_EXPORT).ok_or_else(|| HostError::Instantiate("instrumentation lost the counter".into()))?;
        let mut names: Vec<String> = module.exports().filter(|e| e.name().starts_with(GLOBAL_EXPORT_PREFIX)).map(|e| e.name().to_string()).collect();
        names.sort();
        let globals = names.iter().filter_map(|n| instance.get_global(&mut store, n)).collect();
        let table = instance.get_table(&mut store, TABLE_EXPORT);
        store.data_mut().memory = memory;
        store.data_mut().counter = Some(counter);
        store.data_mut().table = table;
        store.data_mut().pages.map = instance.get_memory(&mut store, PAGES_EXPORT);
        Ok(Canister { store, instance, module, linker, info, wasm, memory, counter, globals })
    }

    pub(crate) fn heap(&self) -> &[u8] {
        self.memory.map_or(&[], |m| m.data(&self.store))
    }

    fn global_values(&mut self) -> Vec<GlobalValue> {
        self.globals.iter().map(|g| global_value(g.get(&mut self.store))).collect()
    }

    fn snapshot(&mut self) -> Snapshot {
        Snapshot { heap: self.heap().to_vec(), globals: self.global_values(), timer: self.store.data().timer }
    }

    /// The persistent state: a copy of the heap, the globals, stable memory (pages shared) and
    /// the system state.
    pub(crate) fn state(&mut self) -> CanisterState {
        let heap = Arc::from(self.heap());
        let globals = self.global_values();
        let s = self.store.data();
        CanisterState {
            wasm: self.wasm.clone(),
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
            random: s.random.state(),
        }
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
            let fresh = Canister::instantiate(self.module.clone(), self.info.clone(), self.wasm.clone(), state, self.linker.clone())?;
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
    pub(crate) fn restore_state(&mut self, state: &CanisterState) -> Result<(), HostError> {
        let minimum = self.module.exports().find_map(|e| e.ty().memory().map(|m| m.minimum())).map(|pages| pages * 65_536);
        match minimum {
            Some(minimum) if (state.heap.len() as u64) < minimum || !state.heap.len().is_multiple_of(65_536) => {
                return Err(HostError::State(format!(
                    "a heap of {} bytes for a module whose memory starts at {minimum} bytes and grows by 64 KiB pages",
                    state.heap.len()
                )));
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

    pub(crate) fn has_export(&self, name: &str) -> bool {
        self.module.get_export(name).is_some()
    }

    /// Whether `name` is an entry point the host can call: an exported function of type
    /// `() -> ()`. (An export of another type is no method.)
    pub(crate) fn has_method(&self, name: &str) -> bool {
        self.module.get_export(name).is_some_and(|e| e.func().is_some_and(|f| f.params().len() == 0 && f.results().len() == 0))
    }

    /// Runs one message execution; rolls back on a trap, or always when `persist` is false.
    /// Returns (instructions used, trap message if it trapped).
    pub(crate) fn execute(&mut self, entry: Entry, message: Message, persist: bool) -> Result<(u64, Option<String>), HostError> {
        let (limit, kind) = (message.limit, message.kind);
        // Everything that can fail without running the canister fails before the message
        // begins, so that an error leaves no message, journal or snapshot half open.
        let target = match entry {
            Entry::Export(name) => {
                Target::Export(self.instance.get_typed_func::<(), ()>(&mut self.store, &name).map_err(|_| HostError::NoMethod(name))?)
            }
            Entry::Callback { fun, env } => Target::Callback { fun, env },
        };
        self.counter.set(&mut self.store, Val::I64(limit as i64)).map_err(|e| HostError::Instantiate(e.to_string()))?;
        let snap = self.snapshot();
        self.clear_page_map();
        {
            let state = self.store.data_mut();
            debug_assert!(!state.stable.in_message(), "executions do not nest");
            state.stable.begin();
            state.begin_message(message);
        }
        let result = match target {
            Target::Export(f) => f.call(&mut self.store, ()),
            // A bad table entry traps inside the execution, as on the IC.
            Target::Callback { fun, env } => call_table(&mut self.store, fun, env),
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
        // Copying the dirty pages after the message: in its instructions, not in the counters
        // it could read. (A trapped message's changes are discarded, so there is nothing to
        // copy; queries do not pay it, composite queries do.)
        let copy = if trap.is_none() && self.store.data().pages.writes_paid { self.dirty_pages() * COPY } else { 0 };
        let state = self.store.data_mut();
        state.pages.used.instructions += copy;
        state.end_message(used);
        let used = used + copy;
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
    /// Forgets the heap pages the last message touched.
    fn clear_page_map(&mut self) {
        if let Some(map) = self.store.data().pages.map {
            map.data_mut(&mut self.store).fill(0);
        }
    }

    /// Pages of the heap and of stable memory the running message wrote.
    fn dirty_pages(&mut self) -> u64 {
        let stable = self.store.data().pages.stable.values().filter(|&&p| p & PAGE_WRITTEN != 0).count();
        let heap = self.store.data().pages.map.map_or(0, |map| map.data(&self.store).iter().filter(|&&p| p & PAGE_WRITTEN != 0).count());
        (heap + stable) as u64
    }

    /// What an ic-cdk canister's `get_candid_pointer` export returns (a NUL-terminated string in
    /// the heap), run as a query that leaves nothing behind.
    pub(crate) fn candid_pointer(&mut self) -> Option<String> {
        let func = self.instance.get_typed_func::<(), i32>(&mut self.store, "get_candid_pointer").ok()?;
        let snap = self.snapshot();
        self.clear_page_map();
        let caller = self.store.data().canister_id;
        self.store.data_mut().begin_message(Message::new(Kind::Query, Vec::new(), caller, "get_candid_pointer", limits::QUERY));
        self.counter.set(&mut self.store, Val::I64(limits::QUERY as i64)).ok()?;
        let pointer = func.call(&mut self.store, ()).ok();
        let text = pointer.and_then(|p| {
            let heap = self.memory?.data(&self.store);
            let start = usize::try_from(p).ok()?;
            let len = heap.get(start..)?.iter().position(|&b| b == 0)?;
            String::from_utf8(heap[start..start + len].to_vec()).ok()
        });
        self.store.data_mut().end_message(0);
        self.restore(snap).ok()?;
        text
    }
}

fn describe_trap(e: &wasmtime::Error, limit: u64) -> String {
    if let Some(trap) = e.downcast_ref::<wasmtime::Trap>() {
        return format!("Canister trapped: {trap}");
    }
    if e.downcast_ref::<OutOfInstructions>().is_some() {
        return format!("Canister exceeded the limit of {limit} instructions for single message execution.");
    }
    format!("Canister trapped: {e:#}")
}

/// Where an execution enters the module.
pub(crate) enum Entry {
    /// An exported function: a method (`canister_update NAME`, …) or a system hook.
    Export(String),
    /// `table[fun](env)`: a reply, reject or cleanup callback.
    Callback { fun: u32, env: u32 },
}

/// An [`Entry`] with its export looked up.
enum Target {
    Export(TypedFunc<(), ()>),
    Callback { fun: u32, env: u32 },
}

/// Calls `table[fun](env)`: how reply, reject and cleanup callbacks are entered.
fn call_table(store: &mut Store<State>, fun: u32, env: u32) -> wasmtime::Result<()> {
    let table = store.data().table.ok_or_else(|| wasmtime::Error::msg("the canister has no function table for callbacks"))?;
    let entry = table.get(&mut *store, u64::from(fun)).ok_or_else(|| wasmtime::Error::msg(format!("callback index {fun} is out of the table")))?;
    let func = entry.as_func().flatten().ok_or_else(|| wasmtime::Error::msg(format!("callback index {fun} is not a function")))?;
    let typed = func.typed::<i32, ()>(&*store)?;
    typed.call(store, env as i32)
}
