//! The `ic0` System API: the functions a canister imports, with the IC's semantics, availability
//! per message kind, bounds checks (a bad pointer traps, as on the IC) and instruction charges.

use candid::Principal;
use wasmtime::{AsContextMut, Caller, Engine, Global, Linker, Memory, ResourceLimiter, Table, Val};

use crate::cost::system_api as charge_of;
use crate::host::{HostConfig, RejectCode, Response};
use crate::instrument::{IMPORT_MODULE, OUT_OF_INSTRUCTIONS};
use crate::persist::CanisterState;
use crate::stable::StableMemory;

/// The error a host function returns when the instruction budget is spent.
#[derive(Debug)]
pub struct OutOfInstructions;

impl std::fmt::Display for OutOfInstructions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("out of instructions")
    }
}

impl std::error::Error for OutOfInstructions {}

/// The kinds of message execution, which decide which System API functions are available.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Start,
    Init,
    PreUpgrade,
    PostUpgrade,
    Update,
    Query,
    InspectMessage,
    ReplyCallback,
    RejectCallback,
    Cleanup,
    Timer,
}

impl Kind {
    /// Whether a committed execution of this kind changes the canister version, as on the IC
    /// (updates, callbacks and timers; an install or upgrade counts once, as a whole).
    pub fn bumps_version(self) -> bool {
        matches!(self, Kind::Update | Kind::ReplyCallback | Kind::RejectCallback | Kind::Cleanup | Kind::Timer)
    }

    fn name(self) -> &'static str {
        match self {
            Kind::Start => "start",
            Kind::Init => "init",
            Kind::PreUpgrade => "pre_upgrade",
            Kind::PostUpgrade => "post_upgrade",
            Kind::Update => "update",
            Kind::Query => "query",
            Kind::InspectMessage => "inspect_message",
            Kind::ReplyCallback => "reply callback",
            Kind::RejectCallback => "reject callback",
            Kind::Cleanup => "cleanup",
            Kind::Timer => "global timer",
        }
    }
}

/// One message execution.
#[derive(Debug, Clone)]
pub struct Message {
    pub kind: Kind,
    pub arg: Vec<u8>,
    pub caller: Principal,
    pub method: String,
    pub limit: u64,
    /// Reject code and message, for reject callbacks.
    pub reject: Option<(u32, String)>,
    pub reply_buffer: Vec<u8>,
    pub accepted: bool,
    /// The certificate of the certified data, which only non-replicated queries may be given.
    pub certificate: Option<Vec<u8>>,
}

impl Message {
    pub fn new(kind: Kind, arg: Vec<u8>, caller: Principal, method: &str, limit: u64) -> Message {
        Message { kind, arg, caller, method: method.to_string(), limit, reject: None, reply_buffer: Vec::new(), accepted: false, certificate: None }
    }
}

/// Who is waiting for a call context's answer.
#[derive(Debug, Clone)]
pub enum Origin {
    /// A user's message (update or query).
    Ingress,
    /// A system task (global timer): nobody reads the answer.
    System,
    /// A call from this canister to itself.
    Call(PendingCall),
}

/// A call context: answered at most once, possibly by a callback; open while calls it made are
/// outstanding.
#[derive(Debug, Clone)]
pub struct CallContext {
    pub origin: Origin,
    pub response: Option<Response>,
    /// Whether the answer was already handed to whoever waits for it.
    pub delivered: bool,
    /// Calls made from this context whose callbacks have not run yet.
    pub outstanding: u32,
    /// Instructions of the context's earlier executions (`performance_counter(1)`).
    pub instructions_before: u64,
}

impl CallContext {
    pub fn new(origin: Origin) -> CallContext {
        CallContext { origin, response: None, delivered: false, outstanding: 0, instructions_before: 0 }
    }
}

/// A call the canister made (`call_new` … `call_perform`).
#[derive(Debug, Clone)]
pub struct PendingCall {
    /// The call context that made it (its callbacks run there).
    pub context: u64,
    pub callee: Vec<u8>,
    pub method: String,
    pub payload: Vec<u8>,
    pub reply_fun: u32,
    pub reply_env: u32,
    pub reject_fun: u32,
    pub reject_env: u32,
    pub cleanup: Option<(u32, u32)>,
}

pub struct Limits {
    pub wasm_memory_limit: u64,
}

impl ResourceLimiter for Limits {
    fn memory_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        Ok(desired as u64 <= self.wasm_memory_limit)
    }
    fn table_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        Ok(desired <= 1 << 20)
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits { wasm_memory_limit: 3 << 30 }
    }
}

/// Everything the System API reads and writes.
pub struct State {
    pub memory: Option<Memory>,
    pub counter: Option<Global>,
    pub table: Option<Table>,
    pub limits: Limits,
    pub stable: StableMemory,
    pub time: u64,
    pub timer: u64,
    pub cycles: u128,
    pub canister_id: Principal,
    pub controllers: Vec<Principal>,
    pub certified_data: Vec<u8>,
    /// What `ic0.canister_version` returns (see `Host::canister_version` for when it grows).
    pub canister_version: u64,
    pub log: Vec<String>,
    pub message: Option<Message>,
    pub contexts: std::collections::HashMap<u64, CallContext>,
    /// The context the running message executes in.
    pub current: Option<u64>,
    next_context: u64,
    /// Calls made by the running message (kept only if it succeeds).
    building: Option<PendingCall>,
    performed: Vec<PendingCall>,
    trap_message: Option<String>,
    pub last_accepted: bool,
    /// 4 KiB stable pages written by the running message.
    dirty: std::collections::HashSet<u64>,
    random: u64,
}

impl Default for State {
    fn default() -> Self {
        State {
            memory: None,
            counter: None,
            table: None,
            limits: Limits::default(),
            stable: StableMemory::default(),
            time: 0,
            timer: 0,
            cycles: 0,
            canister_id: Principal::anonymous(),
            controllers: Vec::new(),
            certified_data: Vec::new(),
            canister_version: 0,
            log: Vec::new(),
            message: None,
            contexts: Default::default(),
            current: None,
            next_context: 0,
            building: None,
            performed: Vec::new(),
            trap_message: None,
            last_accepted: false,
            dirty: Default::default(),
            random: 0,
        }
    }
}

impl State {
    pub fn new(config: &HostConfig) -> State {
        State {
            limits: Limits { wasm_memory_limit: config.wasm_memory_limit },
            time: config.start_time_ns,
            cycles: config.cycles,
            canister_id: config.canister_id,
            controllers: config.controllers.clone(),
            random: config.random_seed,
            ..State::default()
        }
    }

    /// The state a new module version starts from on upgrade: the persistent parts only.
    pub fn carry_over(&self) -> State {
        State {
            limits: Limits { wasm_memory_limit: self.limits.wasm_memory_limit },
            stable: self.stable.clone(),
            time: self.time,
            cycles: self.cycles,
            canister_id: self.canister_id,
            controllers: self.controllers.clone(),
            certified_data: self.certified_data.clone(),
            canister_version: self.canister_version,
            log: self.log.clone(),
            random: self.random,
            ..State::default()
        }
    }

    /// Takes the system state of a snapshot; the heap and globals are the instance's business.
    pub fn restore_persistent(&mut self, s: &CanisterState) {
        self.limits.wasm_memory_limit = s.wasm_memory_limit;
        self.stable = s.stable.clone();
        self.time = s.time;
        self.timer = s.timer;
        self.cycles = s.cycles;
        self.canister_id = s.canister_id;
        self.controllers = s.controllers.clone();
        self.certified_data = s.certified_data.clone();
        self.canister_version = s.canister_version;
        self.random = s.random;
    }

    /// The `raw_rand` stream's state, for snapshots.
    pub fn random_state(&self) -> u64 {
        self.random
    }

    pub fn begin_message(&mut self, message: Message) {
        self.trap_message = None;
        self.building = None;
        self.performed.clear();
        self.dirty.clear();
        self.last_accepted = false;
        self.message = Some(message);
    }

    pub fn end_message(&mut self, used: u64) {
        if let Some(message) = self.message.take() {
            self.last_accepted = message.accepted;
        }
        if let Some(context) = self.current.and_then(|id| self.contexts.get_mut(&id)) {
            context.instructions_before += used;
        }
    }

    /// Opens a call context and makes it current.
    pub fn open_context(&mut self, origin: Origin) -> u64 {
        let id = self.next_context;
        self.next_context += 1;
        self.contexts.insert(id, CallContext::new(origin));
        self.current = Some(id);
        id
    }

    pub fn context(&mut self, id: u64) -> Option<&mut CallContext> {
        self.contexts.get_mut(&id)
    }

    pub fn take_trap_message(&mut self) -> Option<String> {
        self.trap_message.take()
    }

    /// The calls the message made, once it succeeded; each counts as outstanding in its context.
    pub fn take_performed(&mut self) -> Vec<PendingCall> {
        let performed = std::mem::take(&mut self.performed);
        for call in &performed {
            if let Some(context) = self.contexts.get_mut(&call.context) {
                context.outstanding += 1;
            }
        }
        performed
    }

    pub fn discard_pending_calls(&mut self) {
        self.performed.clear();
        self.building = None;
    }

    /// The management canister's answer. Only `raw_rand` exists on this host.
    pub fn management_response(&mut self, call: &PendingCall) -> Response {
        if call.method == "raw_rand" {
            if candid::decode_args::<()>(&call.payload).is_err() {
                return Response::Reject { code: RejectCode::CanisterError, message: "raw_rand takes no arguments".into() };
            }
            let bytes: Vec<u8> = (0..4).flat_map(|_| self.next_random().to_le_bytes()).collect();
            return Response::Reply(candid::encode_one(bytes).expect("a blob encodes"));
        }
        Response::Reject {
            code: RejectCode::DestinationInvalid,
            message: format!("the embedded host's management canister implements only raw_rand, not {}", call.method),
        }
    }

    /// SplitMix64: deterministic randomness for `raw_rand`, seeded per host.
    fn next_random(&mut self) -> u64 {
        self.random = self.random.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.random;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

type Ctx<'a> = Caller<'a, State>;
type HostResult<T> = wasmtime::Result<T>;

/// Traps with the IC's wording and records the message for the outcome.
fn trap<T>(c: &mut Ctx<'_>, message: String) -> HostResult<T> {
    c.data_mut().trap_message = Some(message.clone());
    Err(wasmtime::Error::msg(message))
}

/// Subtracts a System API overhead from the counter; traps when the budget is spent.
fn charge(c: &mut Ctx<'_>, amount: u64) -> HostResult<()> {
    let Some(counter) = c.data().counter else { return Ok(()) };
    let now = match counter.get(c.as_context_mut()) {
        Val::I64(v) => v,
        _ => 0,
    };
    let next = now.saturating_sub(amount as i64);
    counter.set(c.as_context_mut(), Val::I64(next))?;
    if next < 0 {
        return Err(wasmtime::Error::new(OutOfInstructions));
    }
    Ok(())
}

/// Instructions the running message has used so far.
fn used(c: &mut Ctx<'_>) -> u64 {
    let limit = c.data().message.as_ref().map_or(0, |m| m.limit);
    let remaining = match c.data().counter.map(|g| g.get(c.as_context_mut())) {
        Some(Val::I64(v)) => v,
        _ => 0,
    };
    (limit as i64).saturating_sub(remaining).max(0) as u64
}

/// Checks that `name` may run in the current message kind.
fn allowed(c: &mut Ctx<'_>, name: &str, kinds: &[Kind]) -> HostResult<Kind> {
    let kind = c.data().message.as_ref().map(|m| m.kind);
    match kind {
        Some(k) if kinds.contains(&k) => Ok(k),
        Some(k) => trap(c, format!("\"ic0.{name}\" cannot be executed in {} mode", k.name())),
        None => trap(c, format!("\"ic0.{name}\" called outside a message")),
    }
}

const ALL: &[Kind] = &[
    Kind::Init,
    Kind::PreUpgrade,
    Kind::PostUpgrade,
    Kind::Update,
    Kind::Query,
    Kind::InspectMessage,
    Kind::ReplyCallback,
    Kind::RejectCallback,
    Kind::Cleanup,
    Kind::Timer,
];
const ARG: &[Kind] = &[Kind::Init, Kind::PostUpgrade, Kind::Update, Kind::Query, Kind::InspectMessage, Kind::ReplyCallback];
const REPLY: &[Kind] = &[Kind::Update, Kind::Query, Kind::ReplyCallback, Kind::RejectCallback];
const CALLS: &[Kind] = &[Kind::Update, Kind::ReplyCallback, Kind::RejectCallback, Kind::Timer];
const REPLICATED: &[Kind] = &[
    Kind::Init,
    Kind::PreUpgrade,
    Kind::PostUpgrade,
    Kind::Update,
    Kind::ReplyCallback,
    Kind::RejectCallback,
    Kind::Cleanup,
    Kind::Timer,
];

fn memory(c: &mut Ctx<'_>) -> HostResult<Memory> {
    match c.data().memory {
        Some(m) => Ok(m),
        None => trap(c, "the canister has no memory".into()),
    }
}

/// `size` bytes of the heap at `src`, or a trap if they are out of bounds.
fn read_heap(c: &mut Ctx<'_>, src: u64, size: u64, what: &str) -> HostResult<Vec<u8>> {
    let mem = memory(c)?;
    let data = mem.data(&*c);
    match src.checked_add(size).filter(|&end| end <= data.len() as u64) {
        Some(end) => Ok(data[src as usize..end as usize].to_vec()),
        None => trap(c, format!("{what}: heap range {src}+{size} is out of bounds")),
    }
}

fn write_heap(c: &mut Ctx<'_>, dst: u64, bytes: &[u8], what: &str) -> HostResult<()> {
    let mem = memory(c)?;
    let data = mem.data_mut(&mut *c);
    match dst.checked_add(bytes.len() as u64).filter(|&end| end <= data.len() as u64) {
        Some(end) => {
            data[dst as usize..end as usize].copy_from_slice(bytes);
            Ok(())
        }
        None => trap(c, format!("{what}: heap range {dst}+{} is out of bounds", bytes.len())),
    }
}

/// The `*_copy(dst, offset, size)` pattern: copies `source[offset..offset+size]` to the heap.
fn copy_out(c: &mut Ctx<'_>, source: &[u8], dst: u32, offset: u32, size: u32, what: &str) -> HostResult<()> {
    let (offset, size) = (offset as usize, size as usize);
    match offset.checked_add(size).filter(|&end| end <= source.len()) {
        Some(end) => {
            let bytes = source[offset..end].to_vec();
            write_heap(c, dst.into(), &bytes, what)
        }
        None => trap(c, format!("{what}: range {offset}+{size} is outside the {} available bytes", source.len())),
    }
}

fn message<'c>(c: &'c Ctx<'_>) -> &'c Message {
    c.data().message.as_ref().expect("`allowed` checked that a message is running")
}

fn message_mut<'c>(c: &'c mut Ctx<'_>) -> &'c mut Message {
    c.data_mut().message.as_mut().expect("`allowed` checked that a message is running")
}

/// Largest reply of a replicated call (2 MiB) and of a query (3 MiB).
const MAX_REPLY: usize = 2 << 20;
const MAX_QUERY_REPLY: usize = 3 << 20;

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

/// Calls `table[fun](env)`: how reply, reject and cleanup callbacks are entered.
pub fn call_table(store: &mut wasmtime::Store<State>, fun: u32, env: u32) -> wasmtime::Result<()> {
    let table = store.data().table.ok_or_else(|| wasmtime::Error::msg("the canister has no function table for callbacks"))?;
    let entry = table.get(&mut *store, u64::from(fun)).ok_or_else(|| wasmtime::Error::msg(format!("callback index {fun} is out of the table")))?;
    let func = entry
        .as_func()
        .flatten()
        .ok_or_else(|| wasmtime::Error::msg(format!("callback index {fun} is not a function")))?;
    let typed = func.typed::<i32, ()>(&*store)?;
    typed.call(store, env as i32)
}

/// Names of the `ic0` functions this host implements.
pub fn implemented() -> Vec<String> {
    let engine = Engine::default();
    let linker = linker(&engine).expect("the System API links");
    let mut store = wasmtime::Store::new(&engine, State::default());
    let mut names: Vec<String> = linker.iter(&mut store).filter(|(module, _, _)| *module == "ic0").map(|(_, name, _)| name.to_string()).collect();
    names.sort();
    names
}

/// The linker with every function of the System API this host implements. Other `ic0`
/// functions trap when called (validation already refused non-`ic0` imports).
pub fn linker(engine: &Engine) -> wasmtime::Result<Linker<State>> {
    let mut l = Linker::new(engine);
    l.func_wrap(IMPORT_MODULE, OUT_OF_INSTRUCTIONS, || -> HostResult<()> { Err(wasmtime::Error::new(OutOfInstructions)) })?;

    l.func_wrap("ic0", "msg_arg_data_size", |mut c: Ctx<'_>| -> HostResult<i32> {
        allowed(&mut c, "msg_arg_data_size", ARG)?;
        charge(&mut c, charge_of::DEFAULT)?;
        Ok(message(&c).arg.len() as i32)
    })?;
    l.func_wrap("ic0", "msg_arg_data_copy", |mut c: Ctx<'_>, dst: u32, offset: u32, size: u32| -> HostResult<()> {
        allowed(&mut c, "msg_arg_data_copy", ARG)?;
        charge(&mut c, charge_of::DEFAULT + u64::from(size))?;
        let arg = message(&c).arg.clone();
        copy_out(&mut c, &arg, dst, offset, size, "msg_arg_data_copy")
    })?;
    l.func_wrap("ic0", "msg_caller_size", |mut c: Ctx<'_>| -> HostResult<i32> {
        allowed(&mut c, "msg_caller_size", ALL)?;
        charge(&mut c, charge_of::DEFAULT)?;
        Ok(message(&c).caller.as_slice().len() as i32)
    })?;
    l.func_wrap("ic0", "msg_caller_copy", |mut c: Ctx<'_>, dst: u32, offset: u32, size: u32| -> HostResult<()> {
        allowed(&mut c, "msg_caller_copy", ALL)?;
        charge(&mut c, charge_of::DEFAULT + u64::from(size))?;
        let caller = message(&c).caller.as_slice().to_vec();
        copy_out(&mut c, &caller, dst, offset, size, "msg_caller_copy")
    })?;
    l.func_wrap("ic0", "msg_reject_code", |mut c: Ctx<'_>| -> HostResult<i32> {
        allowed(&mut c, "msg_reject_code", &[Kind::ReplyCallback, Kind::RejectCallback, Kind::Cleanup])?;
        charge(&mut c, charge_of::DEFAULT)?;
        Ok(message(&c).reject.as_ref().map_or(0, |r| r.0) as i32)
    })?;
    l.func_wrap("ic0", "msg_reject_msg_size", |mut c: Ctx<'_>| -> HostResult<i32> {
        allowed(&mut c, "msg_reject_msg_size", &[Kind::RejectCallback])?;
        charge(&mut c, charge_of::DEFAULT)?;
        Ok(message(&c).reject.as_ref().map_or(0, |r| r.1.len()) as i32)
    })?;
    l.func_wrap("ic0", "msg_reject_msg_copy", |mut c: Ctx<'_>, dst: u32, offset: u32, size: u32| -> HostResult<()> {
        allowed(&mut c, "msg_reject_msg_copy", &[Kind::RejectCallback])?;
        charge(&mut c, charge_of::DEFAULT + u64::from(size))?;
        let text = message(&c).reject.as_ref().map(|r| r.1.clone().into_bytes()).unwrap_or_default();
        copy_out(&mut c, &text, dst, offset, size, "msg_reject_msg_copy")
    })?;
    l.func_wrap("ic0", "msg_reply_data_append", |mut c: Ctx<'_>, src: u32, size: u32| -> HostResult<()> {
        allowed(&mut c, "msg_reply_data_append", REPLY)?;
        charge(&mut c, charge_of::DEFAULT + u64::from(size))?;
        let bytes = read_heap(&mut c, src.into(), size.into(), "msg_reply_data_append")?;
        let limit = if message(&c).kind == Kind::Query { MAX_QUERY_REPLY } else { MAX_REPLY };
        let buffer = &mut message_mut(&mut c).reply_buffer;
        if buffer.len() + bytes.len() > limit {
            return trap(&mut c, format!("msg_reply_data_append: the reply exceeds the {limit}-byte limit"));
        }
        buffer.extend_from_slice(&bytes);
        Ok(())
    })?;
    l.func_wrap("ic0", "msg_reply", |mut c: Ctx<'_>| -> HostResult<()> {
        allowed(&mut c, "msg_reply", REPLY)?;
        charge(&mut c, charge_of::DEFAULT)?;
        let data = std::mem::take(&mut message_mut(&mut c).reply_buffer);
        respond(&mut c, Response::Reply(data), "msg_reply")
    })?;
    l.func_wrap("ic0", "msg_reject", |mut c: Ctx<'_>, src: u32, size: u32| -> HostResult<()> {
        allowed(&mut c, "msg_reject", REPLY)?;
        charge(&mut c, charge_of::DEFAULT + u64::from(size))?;
        let bytes = read_heap(&mut c, src.into(), size.into(), "msg_reject")?;
        let message = String::from_utf8_lossy(&bytes).into_owned();
        respond(&mut c, Response::Reject { code: RejectCode::CanisterReject, message }, "msg_reject")
    })?;
    l.func_wrap("ic0", "msg_method_name_size", |mut c: Ctx<'_>| -> HostResult<i32> {
        allowed(&mut c, "msg_method_name_size", &[Kind::InspectMessage])?;
        charge(&mut c, charge_of::DEFAULT)?;
        Ok(message(&c).method.len() as i32)
    })?;
    l.func_wrap("ic0", "msg_method_name_copy", |mut c: Ctx<'_>, dst: u32, offset: u32, size: u32| -> HostResult<()> {
        allowed(&mut c, "msg_method_name_copy", &[Kind::InspectMessage])?;
        charge(&mut c, charge_of::DEFAULT + u64::from(size))?;
        let name = message(&c).method.clone().into_bytes();
        copy_out(&mut c, &name, dst, offset, size, "msg_method_name_copy")
    })?;
    l.func_wrap("ic0", "accept_message", |mut c: Ctx<'_>| -> HostResult<()> {
        allowed(&mut c, "accept_message", &[Kind::InspectMessage])?;
        charge(&mut c, charge_of::DEFAULT)?;
        if message(&c).accepted {
            return trap(&mut c, "\"ic0.accept_message\" called twice".into());
        }
        message_mut(&mut c).accepted = true;
        Ok(())
    })?;

    l.func_wrap("ic0", "canister_self_size", |mut c: Ctx<'_>| -> HostResult<i32> {
        allowed(&mut c, "canister_self_size", ALL)?;
        charge(&mut c, charge_of::DEFAULT)?;
        Ok(c.data().canister_id.as_slice().len() as i32)
    })?;
    l.func_wrap("ic0", "canister_self_copy", |mut c: Ctx<'_>, dst: u32, offset: u32, size: u32| -> HostResult<()> {
        allowed(&mut c, "canister_self_copy", ALL)?;
        charge(&mut c, charge_of::DEFAULT + u64::from(size))?;
        let id = c.data().canister_id.as_slice().to_vec();
        copy_out(&mut c, &id, dst, offset, size, "canister_self_copy")
    })?;
    l.func_wrap("ic0", "canister_cycle_balance128", |mut c: Ctx<'_>, dst: u32| -> HostResult<()> {
        allowed(&mut c, "canister_cycle_balance128", ALL)?;
        charge(&mut c, charge_of::DEFAULT)?;
        let balance = c.data().cycles.to_le_bytes();
        write_heap(&mut c, dst.into(), &balance, "canister_cycle_balance128")
    })?;
    l.func_wrap("ic0", "canister_liquid_cycle_balance128", |mut c: Ctx<'_>, dst: u32| -> HostResult<()> {
        allowed(&mut c, "canister_liquid_cycle_balance128", ALL)?;
        charge(&mut c, charge_of::DEFAULT)?;
        let balance = c.data().cycles.to_le_bytes();
        write_heap(&mut c, dst.into(), &balance, "canister_liquid_cycle_balance128")
    })?;
    for name in ["msg_cycles_available128", "msg_cycles_refunded128"] {
        l.func_wrap("ic0", name, move |mut c: Ctx<'_>, dst: u32| -> HostResult<()> {
            allowed(&mut c, name, ALL)?;
            charge(&mut c, charge_of::DEFAULT)?;
            write_heap(&mut c, dst.into(), &0u128.to_le_bytes(), name)
        })?;
    }
    l.func_wrap("ic0", "msg_cycles_accept128", |mut c: Ctx<'_>, _high: i64, _low: i64, dst: u32| -> HostResult<()> {
        allowed(&mut c, "msg_cycles_accept128", REPLY)?;
        charge(&mut c, charge_of::DEFAULT)?;
        write_heap(&mut c, dst.into(), &0u128.to_le_bytes(), "msg_cycles_accept128")
    })?;
    l.func_wrap("ic0", "canister_status", |mut c: Ctx<'_>| -> HostResult<i32> {
        allowed(&mut c, "canister_status", ALL)?;
        charge(&mut c, charge_of::DEFAULT)?;
        Ok(1) // running
    })?;
    l.func_wrap("ic0", "canister_version", |mut c: Ctx<'_>| -> HostResult<i64> {
        allowed(&mut c, "canister_version", ALL)?;
        charge(&mut c, charge_of::DEFAULT)?;
        Ok(c.data().canister_version as i64)
    })?;
    l.func_wrap("ic0", "in_replicated_execution", |mut c: Ctx<'_>| -> HostResult<i32> {
        let kind = allowed(&mut c, "in_replicated_execution", ALL)?;
        charge(&mut c, charge_of::DEFAULT)?;
        Ok(REPLICATED.contains(&kind) as i32)
    })?;
    l.func_wrap("ic0", "is_controller", |mut c: Ctx<'_>, src: u32, size: u32| -> HostResult<i32> {
        allowed(&mut c, "is_controller", ALL)?;
        charge(&mut c, charge_of::IS_CONTROLLER)?;
        let bytes = read_heap(&mut c, src.into(), size.into(), "is_controller")?;
        match Principal::try_from_slice(&bytes) {
            Ok(p) => Ok(c.data().controllers.contains(&p) as i32),
            Err(_) => trap(&mut c, "\"ic0.is_controller\": the argument is not a valid principal".into()),
        }
    })?;
    l.func_wrap("ic0", "time", |mut c: Ctx<'_>| -> HostResult<i64> {
        allowed(&mut c, "time", ALL)?;
        charge(&mut c, charge_of::DEFAULT)?;
        Ok(c.data().time as i64)
    })?;
    l.func_wrap("ic0", "global_timer_set", |mut c: Ctx<'_>, timestamp: i64| -> HostResult<i64> {
        allowed(&mut c, "global_timer_set", REPLICATED)?;
        charge(&mut c, charge_of::DEFAULT)?;
        let old = std::mem::replace(&mut c.data_mut().timer, timestamp as u64);
        Ok(old as i64)
    })?;
    l.func_wrap("ic0", "performance_counter", |mut c: Ctx<'_>, counter_type: u32| -> HostResult<i64> {
        allowed(&mut c, "performance_counter", ALL)?;
        charge(&mut c, charge_of::PERFORMANCE_COUNTER)?;
        let now = used(&mut c);
        match counter_type {
            0 => Ok(now as i64),
            1 => {
                let before = c.data().current.and_then(|id| c.data().contexts.get(&id)).map_or(0, |x| x.instructions_before);
                Ok((before + now) as i64)
            }
            other => trap(&mut c, format!("\"ic0.performance_counter\": unknown counter type {other}")),
        }
    })?;
    l.func_wrap("ic0", "certified_data_set", |mut c: Ctx<'_>, src: u32, size: u32| -> HostResult<()> {
        allowed(&mut c, "certified_data_set", REPLICATED)?;
        charge(&mut c, charge_of::DEFAULT + u64::from(size))?;
        if size > 32 {
            return trap(&mut c, "\"ic0.certified_data_set\": more than 32 bytes".into());
        }
        c.data_mut().certified_data = read_heap(&mut c, src.into(), size.into(), "certified_data_set")?;
        Ok(())
    })?;
    l.func_wrap("ic0", "data_certificate_present", |mut c: Ctx<'_>| -> HostResult<i32> {
        allowed(&mut c, "data_certificate_present", ALL)?;
        charge(&mut c, charge_of::DEFAULT)?;
        Ok(message(&c).certificate.is_some() as i32)
    })?;
    // Only non-replicated queries get a certificate; without one these trap, as on the IC.
    l.func_wrap("ic0", "data_certificate_size", |mut c: Ctx<'_>| -> HostResult<i32> {
        allowed(&mut c, "data_certificate_size", &[Kind::Query])?;
        charge(&mut c, charge_of::DEFAULT)?;
        match message(&c).certificate.as_ref().map(|cert| cert.len() as i32) {
            Some(size) => Ok(size),
            None => trap(&mut c, "\"ic0.data_certificate_size\": no certificate is present".into()),
        }
    })?;
    l.func_wrap("ic0", "data_certificate_copy", |mut c: Ctx<'_>, dst: u32, offset: u32, size: u32| -> HostResult<()> {
        allowed(&mut c, "data_certificate_copy", &[Kind::Query])?;
        charge(&mut c, charge_of::DEFAULT + u64::from(size))?;
        match message(&c).certificate.clone() {
            Some(certificate) => copy_out(&mut c, &certificate, dst, offset, size, "data_certificate_copy"),
            None => trap(&mut c, "\"ic0.data_certificate_copy\": no certificate is present".into()),
        }
    })?;
    l.func_wrap("ic0", "debug_print", |mut c: Ctx<'_>, src: u32, size: u32| -> HostResult<()> {
        charge(&mut c, charge_of::DEBUG_PRINT + u64::from(size))?;
        let bytes = read_heap(&mut c, src.into(), size.into(), "debug_print")?;
        c.data_mut().log.push(String::from_utf8_lossy(&bytes).into_owned());
        Ok(())
    })?;
    l.func_wrap("ic0", "trap", |mut c: Ctx<'_>, src: u32, size: u32| -> HostResult<()> {
        charge(&mut c, charge_of::DEBUG_PRINT + u64::from(size))?;
        let bytes = read_heap(&mut c, src.into(), size.into(), "trap")?;
        let text = String::from_utf8_lossy(&bytes).into_owned();
        c.data_mut().log.push(format!("[TRAP]: {text}"));
        trap(&mut c, format!("Canister called `ic0.trap` with message: '{text}'"))
    })?;

    // Stable memory.
    l.func_wrap("ic0", "stable64_size", |mut c: Ctx<'_>| -> HostResult<i64> {
        allowed(&mut c, "stable64_size", ALL)?;
        charge(&mut c, charge_of::STABLE_ACCESS)?;
        Ok(c.data().stable.size() as i64)
    })?;
    l.func_wrap("ic0", "stable64_grow", |mut c: Ctx<'_>, pages: i64| -> HostResult<i64> {
        allowed(&mut c, "stable64_grow", ALL)?;
        charge(&mut c, charge_of::STABLE_GROW)?;
        Ok(c.data_mut().stable.grow(pages as u64).map_or(-1, |old| old as i64))
    })?;
    l.func_wrap("ic0", "stable64_read", |mut c: Ctx<'_>, dst: i64, offset: i64, size: i64| -> HostResult<()> {
        allowed(&mut c, "stable64_read", ALL)?;
        let (dst, offset, size) = (dst as u64, offset as u64, size as u64);
        charge(&mut c, charge_of::STABLE_ACCESS.saturating_add(size))?;
        if !c.data().stable.in_bounds(offset, size) {
            return trap(&mut c, format!("stable memory out of bounds: read of {size} bytes at {offset}"));
        }
        let mem = memory(&mut c)?;
        if dst.checked_add(size).is_none_or(|end| end > mem.data_size(&c) as u64) {
            return trap(&mut c, format!("stable64_read: heap range {dst}+{size} is out of bounds"));
        }
        let (heap, state) = mem.data_and_store_mut(&mut c);
        state.stable.read(offset, &mut heap[dst as usize..(dst + size) as usize]);
        Ok(())
    })?;
    l.func_wrap("ic0", "stable64_write", |mut c: Ctx<'_>, offset: i64, src: i64, size: i64| -> HostResult<()> {
        allowed(&mut c, "stable64_write", ALL)?;
        let (offset, src, size) = (offset as u64, src as u64, size as u64);
        charge(&mut c, charge_of::STABLE_ACCESS.saturating_add(size))?;
        if !c.data().stable.in_bounds(offset, size) {
            return trap(&mut c, format!("stable memory out of bounds: write of {size} bytes at {offset}"));
        }
        let bytes = read_heap(&mut c, src, size, "stable64_write")?;
        // Pages this message writes for the first time cost extra, as on the IC.
        let (first, last) = (offset / charge_of::STABLE_PAGE_BYTES, (offset + size.max(1) - 1) / charge_of::STABLE_PAGE_BYTES);
        let fresh = (first..=last).filter(|p| size > 0 && c.data_mut().dirty.insert(*p)).count() as u64;
        charge(&mut c, fresh * charge_of::DIRTY_PAGE)?;
        c.data_mut().stable.write(offset, &bytes);
        Ok(())
    })?;

    // Inter-canister calls.
    l.func_wrap(
        "ic0",
        "call_new",
        |mut c: Ctx<'_>, callee_src: u32, callee_size: u32, name_src: u32, name_size: u32, reply_fun: u32, reply_env: u32, reject_fun: u32, reject_env: u32| -> HostResult<()> {
            allowed(&mut c, "call_new", CALLS)?;
            charge(&mut c, charge_of::CALL_NEW + u64::from(callee_size) + u64::from(name_size))?;
            let callee = read_heap(&mut c, callee_src.into(), callee_size.into(), "call_new")?;
            let name = read_heap(&mut c, name_src.into(), name_size.into(), "call_new")?;
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
        },
    )?;
    l.func_wrap("ic0", "call_on_cleanup", |mut c: Ctx<'_>, fun: u32, env: u32| -> HostResult<()> {
        allowed(&mut c, "call_on_cleanup", CALLS)?;
        charge(&mut c, charge_of::DEFAULT)?;
        match c.data_mut().building.as_mut() {
            Some(call) if call.cleanup.is_none() => {
                call.cleanup = Some((fun, env));
                Ok(())
            }
            _ => trap(&mut c, "\"ic0.call_on_cleanup\" without a call under construction, or twice".into()),
        }
    })?;
    l.func_wrap("ic0", "call_data_append", |mut c: Ctx<'_>, src: u32, size: u32| -> HostResult<()> {
        allowed(&mut c, "call_data_append", CALLS)?;
        charge(&mut c, charge_of::DEFAULT + u64::from(size))?;
        let bytes = read_heap(&mut c, src.into(), size.into(), "call_data_append")?;
        match c.data_mut().building.as_mut() {
            Some(call) => {
                call.payload.extend_from_slice(&bytes);
                Ok(())
            }
            None => trap(&mut c, "\"ic0.call_data_append\" without a call under construction".into()),
        }
    })?;
    l.func_wrap("ic0", "call_with_best_effort_response", |mut c: Ctx<'_>, _timeout_seconds: u32| -> HostResult<()> {
        allowed(&mut c, "call_with_best_effort_response", CALLS)?;
        charge(&mut c, charge_of::DEFAULT)?;
        if c.data().building.is_none() {
            return trap(&mut c, "\"ic0.call_with_best_effort_response\" without a call under construction".into());
        }
        Ok(())
    })?;
    l.func_wrap("ic0", "call_cycles_add128", |mut c: Ctx<'_>, _high: i64, _low: i64| -> HostResult<()> {
        allowed(&mut c, "call_cycles_add128", CALLS)?;
        charge(&mut c, charge_of::DEFAULT)?;
        Ok(())
    })?;
    l.func_wrap("ic0", "cost_call", |mut c: Ctx<'_>, method_size: u64, payload_size: u64, dst: u32| -> HostResult<()> {
        allowed(&mut c, "cost_call", ALL)?;
        charge(&mut c, charge_of::DEFAULT)?;
        // The IC's fee for a call: a base plus one per byte of method name and payload.
        let cost = 260_000u128 + 1_000 * u128::from(method_size.saturating_add(payload_size));
        write_heap(&mut c, dst.into(), &cost.to_le_bytes(), "cost_call")
    })?;
    l.func_wrap("ic0", "call_perform", |mut c: Ctx<'_>| -> HostResult<i32> {
        allowed(&mut c, "call_perform", CALLS)?;
        charge(&mut c, charge_of::CALL_PERFORM)?;
        match c.data_mut().building.take() {
            Some(call) => {
                c.data_mut().performed.push(call);
                Ok(0)
            }
            None => trap(&mut c, "\"ic0.call_perform\" without a call under construction".into()),
        }
    })?;

    Ok(l)
}
