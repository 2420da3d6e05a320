//! One root subnet of canisters on the embedded host, as a local replica holds it: canisters
//! created and installed through the management canister, ingress calls and queries with the
//! IC's reject and error codes, the request statuses read_state certifies, and the two system
//! canisters `icp deploy` talks to. The HTTP layer ([`crate::http`]) sits above this and only
//! decodes, authenticates and encodes.
//!
//! Concurrency follows the IC: messages to one canister execute one at a time (its `exec`
//! lock), different canisters in parallel, and queries run against the last committed state
//! without waiting for a running update (see [`CanisterSlot`]).

pub mod management;
pub mod reject;
pub mod system_canisters;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use candid::Principal;
use ic_management_canister_types::{CanisterStatusType, DefiniteCanisterSettings, LogVisibility, SnapshotVisibility, StatusVisibility};

use crate::host::{Host, HostConfig, HostError, Outcome};
use reject::{CallResult, ErrorCode, Reject};

/// The IC's limit on one ingress message (application subnets: `MAX_INGRESS_BYTES_PER_MESSAGE`).
pub const MAX_INGRESS_BYTES: usize = 2 * 1024 * 1024;
/// How long the request status of a finished call stays readable after its expiry.
const REQUEST_STATUS_KEPT_NS: u64 = 5 * 60 * 1_000_000_000;
/// The first user canister's index: the ids a local replica hands out (`lxzze-…` on the
/// embedded host's single-canister mode is kept for the CLI; here ids start low, after the
/// system canisters' range of a real root subnet).
const FIRST_CANISTER_INDEX: u64 = 0x0000_0000_0010_0000;
/// Cycles of a canister created without an amount (the provisional default of a replica).
pub const DEFAULT_PROVISIONAL_CYCLES: u128 = 100_000_000_000_000;

pub struct ReplicaConfig {
    /// Where canisters and keys persist; `None` keeps everything in memory.
    pub state_dir: Option<PathBuf>,
    /// Made a controller of every canister created here (besides the creator).
    pub extra_controller: Option<Principal>,
}

/// The canister id of index `index` on this subnet (8 bytes big endian, then 0x01 0x01).
pub fn canister_id_of(index: u64) -> Principal {
    let mut bytes = index.to_be_bytes().to_vec();
    bytes.extend([1, 1]);
    Principal::from_slice(&bytes)
}

/// The canister id range of this subnet: it must cover every id clients address, the system
/// canisters' included (CMC, cycles ledger, ledger), or query signatures fail their range check.
pub fn canister_ranges() -> Vec<(Principal, Principal)> {
    vec![(canister_id_of(0), canister_id_of(0xffff_ffff))]
}

/// Wall-clock nanoseconds since the epoch: certificates and `ic0.time` use the real clock, as
/// clients check certificate freshness against theirs.
pub fn now_ns() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// What the state tree shows of a canister, updated whenever a message or management
/// operation commits.
#[derive(Clone, Debug)]
pub struct Published {
    pub status: CanisterStatusType,
    pub controllers: Vec<Principal>,
    pub module_hash: Option<[u8; 32]>,
    /// `icp:public` / `icp:private` custom sections: (name, public, bytes).
    pub metadata: Vec<(String, bool, Vec<u8>)>,
    pub certified_data: Vec<u8>,
}

/// A canister with code.
pub struct Installed {
    pub host: Host,
    /// SHA-256 of the module as it was given to `install_code` (gzipped if it came gzipped),
    /// which is what the IC reports and deploy tools compare against their file.
    pub module_hash: [u8; 32],
    pub wasm_size: u64,
}

/// Everything the management canister knows about a canister.
pub struct CanisterRecord {
    pub id: Principal,
    pub settings: DefiniteCanisterSettings,
    pub status: CanisterStatusType,
    pub cycles: u128,
    pub module: Option<Installed>,
    /// The wasm chunk store: (SHA-256, chunk), in upload order.
    pub chunks: Vec<([u8; 32], Vec<u8>)>,
    /// Canister version while there is no module (the host counts it once there is one).
    pub version: u64,
}

impl CanisterRecord {
    fn new(id: Principal, controllers: Vec<Principal>, cycles: u128) -> CanisterRecord {
        CanisterRecord { id, settings: default_settings(controllers), status: CanisterStatusType::Running, cycles, module: None, chunks: Vec::new(), version: 0 }
    }

    pub fn is_controller(&self, who: &Principal) -> bool {
        self.settings.controllers.contains(who)
    }

    pub fn published(&self) -> Published {
        let (module_hash, metadata) = match &self.module {
            None => (None, Vec::new()),
            Some(m) => {
                let info = m.host.module_info();
                let metadata = info.candid_service.iter().map(|did| ("candid:service".to_string(), true, did.as_bytes().to_vec())).collect();
                (Some(m.module_hash), metadata)
            }
        };
        Published { status: self.status, controllers: self.settings.controllers.clone(), module_hash, metadata, certified_data: Vec::new() }
    }
}

/// The settings a new canister gets (the IC's defaults).
pub fn default_settings(controllers: Vec<Principal>) -> DefiniteCanisterSettings {
    DefiniteCanisterSettings {
        controllers,
        compute_allocation: 0u64.into(),
        memory_allocation: 0u64.into(),
        freezing_threshold: 2_592_000u64.into(),
        reserved_cycles_limit: 5_000_000_000_000u64.into(),
        minimum_incoming_canister_call_cycles: 0u64.into(),
        log_visibility: LogVisibility::Controllers,
        log_memory_limit: 4_096u64.into(),
        snapshot_visibility: SnapshotVisibility::Controllers,
        status_visibility: StatusVisibility::Controllers,
        wasm_memory_limit: (3u64 << 30).into(),
        wasm_memory_threshold: 0u64.into(),
        environment_variables: Vec::new(),
    }
}

/// One canister: `exec` serializes its messages; `published` is what read_state and queries
/// see of its last committed state.
pub struct CanisterSlot {
    pub id: Principal,
    pub exec: Mutex<CanisterRecord>,
    pub published: RwLock<Published>,
}

impl CanisterSlot {
    fn publish(&self, record: &CanisterRecord) {
        *self.published.write().unwrap_or_else(|e| e.into_inner()) = record.published();
    }

    pub fn lock(&self) -> std::sync::MutexGuard<'_, CanisterRecord> {
        // A panic while holding the lock is a host bug; the record itself stays consistent
        // (every change is applied after the fallible work), so keep serving.
        self.exec.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Where a request stands, as `/request_status/<id>` reports it.
#[derive(Clone, Debug)]
pub enum RequestStatus {
    Processing,
    Done(CallResult),
}

#[derive(Clone, Debug)]
pub struct RequestRecord {
    pub sender: Principal,
    pub receiver: Principal,
    pub expiry: u64,
    pub status: RequestStatus,
}

/// The subnet.
pub struct Replica {
    config: ReplicaConfig,
    canisters: RwLock<BTreeMap<Principal, Arc<CanisterSlot>>>,
    requests: Mutex<HashMap<[u8; 32], RequestRecord>>,
    next_index: Mutex<u64>,
    clock: Mutex<u64>,
    subnet_id: Principal,
    /// Blocks of the emulated cycles ledger (one per canister it created).
    blocks: Mutex<u64>,
}

impl Replica {
    /// An empty subnet with id `subnet_id` (which, with no NNS delegation, clients derive from
    /// the root key: see [`crate::http::keys`]).
    pub fn new(config: ReplicaConfig, subnet_id: Principal) -> Replica {
        Replica {
            config,
            canisters: RwLock::default(),
            requests: Mutex::default(),
            next_index: Mutex::new(FIRST_CANISTER_INDEX),
            clock: Mutex::new(0),
            subnet_id,
            blocks: Mutex::new(0),
        }
    }

    pub fn subnet_id(&self) -> Principal {
        self.subnet_id
    }

    /// The next block index of the emulated cycles ledger.
    pub fn next_block(&self) -> u64 {
        let mut blocks = self.blocks.lock().unwrap_or_else(|e| e.into_inner());
        *blocks += 1;
        *blocks
    }

    pub fn config(&self) -> &ReplicaConfig {
        &self.config
    }

    /// Strictly increasing wall-clock time for executions (two messages never see the same time).
    pub fn time(&self) -> u64 {
        let mut last = self.clock.lock().unwrap_or_else(|e| e.into_inner());
        *last = now_ns().max(*last + 1);
        *last
    }

    pub fn canister(&self, id: &Principal) -> Option<Arc<CanisterSlot>> {
        self.canisters.read().unwrap_or_else(|e| e.into_inner()).get(id).cloned()
    }

    pub fn canister_ids(&self) -> Vec<Principal> {
        self.canisters.read().unwrap_or_else(|e| e.into_inner()).keys().copied().collect()
    }

    /// Creates an empty canister controlled by `controllers` (the creator when empty), plus the
    /// configured extra controller; `specified` asks for a particular id.
    pub fn create_canister(&self, mut controllers: Vec<Principal>, creator: Principal, cycles: u128, specified: Option<Principal>) -> Result<Principal, Reject> {
        if controllers.is_empty() {
            controllers.push(creator);
        }
        if let Some(extra) = self.config.extra_controller.filter(|extra| !controllers.contains(extra)) {
            controllers.push(extra);
        }
        if controllers.len() > management::MAX_CONTROLLERS {
            return Err(Reject::new(ErrorCode::InvalidManagementPayload, format!("Invalid settings: at most {} controllers are allowed", management::MAX_CONTROLLERS)));
        }
        let mut canisters = self.canisters.write().unwrap_or_else(|e| e.into_inner());
        let id = match specified {
            Some(id) => {
                if canisters.contains_key(&id) {
                    return Err(Reject { code: crate::host::RejectCode::SysTransient, message: format!("Canister {id} is already installed."), error_code: "IC0205".into() });
                }
                id
            }
            None => {
                let mut next = self.next_index.lock().unwrap_or_else(|e| e.into_inner());
                loop {
                    let id = canister_id_of(*next);
                    *next += 1;
                    if !canisters.contains_key(&id) {
                        break id;
                    }
                }
            }
        };
        let record = CanisterRecord::new(id, controllers, cycles);
        let slot = Arc::new(CanisterSlot { id, published: RwLock::new(record.published()), exec: Mutex::new(record) });
        canisters.insert(id, slot);
        Ok(id)
    }

    pub fn remove_canister(&self, id: &Principal) {
        self.canisters.write().unwrap_or_else(|e| e.into_inner()).remove(id);
    }

    /// Records that a call was received (and is being processed); returns the known record if
    /// the same request id was submitted before (the IC runs a request once).
    pub fn begin_request(&self, request_id: [u8; 32], sender: Principal, receiver: Principal, expiry: u64) -> Option<RequestRecord> {
        let mut requests = self.requests.lock().unwrap_or_else(|e| e.into_inner());
        let now = now_ns();
        requests.retain(|_, r| r.expiry.saturating_add(REQUEST_STATUS_KEPT_NS) > now || matches!(r.status, RequestStatus::Processing));
        if let Some(known) = requests.get(&request_id) {
            return Some(known.clone());
        }
        requests.insert(request_id, RequestRecord { sender, receiver, expiry, status: RequestStatus::Processing });
        None
    }

    pub fn finish_request(&self, request_id: [u8; 32], result: CallResult) {
        if let Some(r) = self.requests.lock().unwrap_or_else(|e| e.into_inner()).get_mut(&request_id) {
            r.status = RequestStatus::Done(result);
        }
    }

    /// Drops a request refused before execution (its status is never certified).
    pub fn forget_request(&self, request_id: &[u8; 32]) {
        self.requests.lock().unwrap_or_else(|e| e.into_inner()).remove(request_id);
    }

    /// Whether an ingress call to `canister_id` may be inducted: the checks the IC makes before
    /// execution, whose failures are not certified (v3/v4 `non_replicated_rejection`).
    pub fn admit_call(&self, canister_id: &Principal) -> Result<(), Reject> {
        if *canister_id == Principal::management_canister() || system_canisters::is_system_canister(canister_id) {
            return Ok(());
        }
        let slot = self.canister(canister_id).ok_or_else(|| Reject::canister_not_found(canister_id))?;
        // From the published state: the canister may be busy with a message.
        let published = slot.published.read().unwrap_or_else(|e| e.into_inner()).clone();
        runnable(canister_id, published.status, published.module_hash.is_some())
    }

    pub fn request(&self, request_id: &[u8; 32]) -> Option<RequestRecord> {
        self.requests.lock().unwrap_or_else(|e| e.into_inner()).get(request_id).cloned()
    }

    /// Executes an ingress update call to `canister_id` (a canister, the management canister or
    /// one of the system canisters); blocks until it is done.
    pub fn call(&self, sender: Principal, canister_id: Principal, method: &str, arg: &[u8]) -> CallResult {
        if canister_id == Principal::management_canister() {
            return management::call(self, sender, method, arg);
        }
        if let Some(result) = system_canisters::call(self, sender, canister_id, method, arg) {
            return result;
        }
        let slot = self.canister(&canister_id).ok_or_else(|| Reject::canister_not_found(&canister_id))?;
        let mut record = slot.lock();
        runnable(&canister_id, record.status, record.module.is_some())?;
        let time = self.time();
        let Some(installed) = record.module.as_mut() else { unreachable!("runnable checked the module") };
        installed.host.set_time(time);
        let result = outcome_of(&canister_id, method, "update", installed.host.update(method, arg, sender));
        slot.publish(&record);
        result
    }

    /// Executes a query against the canister's last committed state.
    pub fn query(&self, sender: Principal, canister_id: Principal, method: &str, arg: &[u8]) -> CallResult {
        if canister_id == Principal::management_canister() {
            return management::query(self, sender, method, arg);
        }
        if let Some(result) = system_canisters::query(self, sender, canister_id, method, arg) {
            return result;
        }
        let slot = self.canister(&canister_id).ok_or_else(|| Reject::canister_not_found(&canister_id))?;
        let mut record = slot.lock();
        runnable(&canister_id, record.status, record.module.is_some())?;
        let time = self.time();
        let Some(installed) = record.module.as_mut() else { unreachable!("runnable checked the module") };
        installed.host.set_time(time);
        outcome_of(&canister_id, method, "query", installed.host.query(method, arg, sender))
    }

    /// Runs every due global timer (the server calls this periodically, as the IC's scheduler
    /// runs timers between messages). Canisters busy with a message are skipped this round.
    pub fn run_timers(&self) {
        for id in self.canister_ids() {
            let Some(slot) = self.canister(&id) else { continue };
            let Ok(mut record) = slot.exec.try_lock() else { continue };
            if record.status != CanisterStatusType::Running {
                continue;
            }
            let time = self.time();
            let Some(installed) = record.module.as_mut() else { continue };
            installed.host.set_time(time);
            if let Ok(Some(_)) = installed.host.tick() {
                slot.publish(&record);
            }
        }
    }
}

/// Whether a canister can take a message now.
fn runnable(id: &Principal, status: CanisterStatusType, has_module: bool) -> Result<(), Reject> {
    match status {
        CanisterStatusType::Stopped => return Err(Reject::new(ErrorCode::CanisterStopped, format!("Canister {id} is stopped and therefore does not have a CallContextManager"))),
        CanisterStatusType::Stopping => return Err(Reject::new(ErrorCode::CanisterStopping, format!("Canister {id} is stopping"))),
        CanisterStatusType::Running => {}
    }
    if !has_module {
        return Err(Reject::new(ErrorCode::CanisterWasmModuleNotFound, format!("Error from Canister {id}: Attempted to execute a message, but the canister contains no Wasm module.")));
    }
    Ok(())
}

/// The reply or reject of one execution on the embedded host.
fn outcome_of(canister: &Principal, method: &str, kind: &str, outcome: Result<Outcome, HostError>) -> CallResult {
    match outcome {
        Ok(outcome) => reject::from_response(canister, &outcome.response),
        Err(HostError::NoMethod(_)) => Err(Reject::new(ErrorCode::CanisterMethodNotFound, format!("Error from Canister {canister}: Canister has no {kind} method '{method}'."))),
        Err(HostError::Trapped { message, .. }) => Err(reject::from_canister(canister, crate::host::RejectCode::CanisterError, &message)),
        Err(e) => Err(Reject::new(ErrorCode::CanisterTrapped, format!("Error from Canister {canister}: {e}"))),
    }
}

/// The host configuration of a canister about to be installed.
pub fn host_config(record: &CanisterRecord, time: u64) -> HostConfig {
    let wasm_memory_limit = u64::try_from(record.settings.wasm_memory_limit.0.clone()).unwrap_or(crate::host::MAX_WASM_MEMORY);
    let wasm_memory_limit = if wasm_memory_limit == 0 { crate::host::MAX_WASM_MEMORY } else { wasm_memory_limit };
    HostConfig {
        controllers: record.settings.controllers.clone(),
        canister_id: record.id,
        wasm_memory_limit,
        start_time_ns: time,
        cycles: record.cycles,
        random_seed: time,
    }
}
