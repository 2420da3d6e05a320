//! The system state a canister's messages read and write through the System API: handles of its
//! memory, counter and table, limits, stable memory, time, timer, cycles, controllers, certified
//! data, the log, the running [`Message`], and the call contexts with the calls they made.

use std::collections::{HashMap, HashSet};

use candid::Principal;
use wasmtime::{Global, Memory, ResourceLimiter, Table};

use crate::instrument::{PAGE_ACCESSED, PAGE_WRITTEN};
use crate::management::Rng;
use crate::message::Message;
use crate::persist::CanisterState;
use crate::stable::StableMemory;
use crate::types::{Accounting, HostConfig, PageUse, Response};

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

/// The memory pages the running message touched, and what they cost it (see
/// [`Accounting::Ic2026`]; under [`Accounting::Ic2025`] only `used.instructions` is).
pub struct Pages {
    pub accounting: Accounting,
    /// The instance's page map (one byte per 64 KiB heap page, see [`crate::instrument`]),
    /// when heap pages are tracked.
    pub map: Option<Memory>,
    /// Stable memory pages (64 KiB) the message touched: [`PAGE_ACCESSED`] | [`PAGE_WRITTEN`].
    pub stable: HashMap<u64, u8>,
    /// Whether the running message pays for first writes and copying (not queries and
    /// `inspect_message`, whose changes are discarded).
    pub writes_paid: bool,
    /// What the running (or last) message touched and paid for pages.
    pub used: PageUse,
}

impl Pages {
    fn new(accounting: Accounting) -> Pages {
        Pages { accounting, map: None, stable: HashMap::new(), writes_paid: true, used: PageUse::default() }
    }

    pub fn tracked(&self) -> bool {
        self.accounting == Accounting::Ic2026
    }
}

/// Marks one page (its byte in a page map) as accessed, and written if `write`; counts it in
/// `used` and returns what it costs the message.
pub fn touch_page(page: &mut u8, write: bool, writes_paid: bool, used: &mut PageUse) -> u64 {
    use crate::cost::pages::{FIRST_ACCESS, FIRST_WRITE};
    let mut cost = 0;
    if *page & PAGE_ACCESSED == 0 {
        *page |= PAGE_ACCESSED;
        used.accessed += 1;
        cost += FIRST_ACCESS;
    }
    if write && *page & PAGE_WRITTEN == 0 {
        *page |= PAGE_WRITTEN;
        used.written += 1;
        if writes_paid {
            cost += FIRST_WRITE;
        }
    }
    used.instructions += cost;
    cost
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
    pub contexts: HashMap<u64, CallContext>,
    /// The context the running message executes in.
    pub current: Option<u64>,
    next_context: u64,
    /// The call the running message is building (`call_new` … `call_perform`).
    pub(crate) building: Option<PendingCall>,
    /// Calls made by the running message (kept only if it succeeds).
    pub(crate) performed: Vec<PendingCall>,
    /// The IC's wording of the running message's trap, when the System API trapped.
    pub(crate) trap_message: Option<String>,
    pub last_accepted: bool,
    /// 4 KiB stable pages written by the running message (2025 accounting).
    pub(crate) dirty: HashSet<u64>,
    pub pages: Pages,
    pub random: Rng,
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
            pages: Pages::new(Accounting::default()),
            random: Rng::default(),
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
            random: Rng::new(config.random_seed),
            pages: Pages::new(config.accounting),
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
            random: self.random.clone(),
            pages: Pages::new(self.pages.accounting),
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
        self.random = Rng::new(s.random);
    }

    pub fn begin_message(&mut self, message: Message) {
        self.trap_message = None;
        self.building = None;
        self.performed.clear();
        self.dirty.clear();
        self.pages.stable.clear();
        self.pages.used = PageUse::default();
        self.pages.writes_paid = message.pays_writes;
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
}
