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
pub mod state_dir;
pub mod system_canisters;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use candid::Principal;
use ic_management_canister_types::{CanisterStatusType, DefiniteCanisterSettings, LogVisibility, SnapshotVisibility, StatusVisibility};

use crate::host::{Host, HostConfig, HostError, Inspection, Outcome};
use crate::persist::CanisterState;
use crate::validate::Visibility;
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
    /// The canister log (`debug_print` and traps), newest last, within `log_memory_limit`.
    pub logs: std::collections::VecDeque<ic_management_canister_types::CanisterLogRecord>,
    next_log_idx: u64,
    /// How many lines of the host's log are already in `logs`.
    log_seen: usize,
}

/// The last committed state of a canister with code: what queries run against while an update
/// holds the canister, and what the state directory stores.
pub struct Committed {
    pub version: u64,
    pub module_hash: [u8; 32],
    pub state: Arc<CanisterState>,
}

impl CanisterRecord {
    fn new(id: Principal, controllers: Vec<Principal>, cycles: u128) -> CanisterRecord {
        CanisterRecord {
            id,
            settings: default_settings(controllers),
            status: CanisterStatusType::Running,
            cycles,
            module: None,
            chunks: Vec::new(),
            version: 0,
            logs: Default::default(),
            next_log_idx: 0,
            log_seen: 0,
        }
    }

    pub fn is_controller(&self, who: &Principal) -> bool {
        self.settings.controllers.contains(who)
    }

    /// The canister version (`canister_status`, `ic0.canister_version`).
    pub fn version(&self) -> u64 {
        self.module.as_ref().map_or(self.version, |m| m.host.canister_version())
    }

    /// Moves what the canister printed since the last time into its log, stamped `time`, and
    /// drops the oldest records beyond `log_memory_limit` bytes (as the IC keeps a bounded log).
    pub fn collect_logs(&mut self, time: u64) {
        let Some(installed) = self.module.as_ref() else { return };
        let lines = installed.host.log();
        let start = self.log_seen.min(lines.len());
        for line in &lines[start..] {
            self.logs.push_back(ic_management_canister_types::CanisterLogRecord {
                idx: self.next_log_idx,
                timestamp_nanos: time,
                content: line.as_bytes().to_vec(),
            });
            self.next_log_idx += 1;
        }
        self.log_seen = lines.len();
        let limit = usize::try_from(self.settings.log_memory_limit.0.clone()).unwrap_or(usize::MAX);
        let mut total: usize = self.logs.iter().map(|r| r.content.len()).sum();
        while total > limit {
            let Some(dropped) = self.logs.pop_front() else { break };
            total -= dropped.content.len();
        }
    }

    /// Leaves out of the log what the host printed since the last collection.
    pub fn skip_logs(&mut self) {
        self.log_seen = self.module.as_ref().map_or(0, |m| m.host.log().len());
    }

    /// A new host (install, reinstall) starts its own log from the beginning.
    pub fn reset_log_cursor(&mut self) {
        self.log_seen = 0;
    }

    /// Counts a settings change in the canister version.
    pub fn bump_version(&mut self) {
        match self.module.as_mut() {
            Some(m) => m.host.bump_canister_version(),
            None => self.version += 1,
        }
    }

    pub fn published(&self) -> Published {
        let (module_hash, metadata) = match &self.module {
            None => (None, Vec::new()),
            Some(m) => {
                let metadata =
                    m.host.module_info().metadata.iter().map(|s| (s.name.clone(), s.visibility == Visibility::Public, s.bytes.clone())).collect();
                (Some(m.module_hash), metadata)
            }
        };
        let certified_data = self.module.as_ref().map(|m| m.host.certified_data().to_vec()).unwrap_or_default();
        Published { status: self.status, controllers: self.settings.controllers.clone(), module_hash, metadata, certified_data }
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

/// One canister: `exec` serializes its messages and management operations; `published` is
/// what read_state sees of its last committed state, `committed` that state itself, which a
/// second instance (`query_host`) runs queries against while `exec` is busy, as the IC
/// answers queries from the last certified state during a long update.
pub struct CanisterSlot {
    pub id: Principal,
    pub exec: Mutex<CanisterRecord>,
    pub published: RwLock<Published>,
    pub committed: RwLock<Option<Arc<Committed>>>,
    query_host: Mutex<Option<(Arc<Committed>, Host)>>,
    /// Changed since the state directory last got it.
    pub dirty: std::sync::atomic::AtomicBool,
    /// The state last written to the state directory (for incremental writes).
    written: Mutex<Option<Arc<CanisterState>>>,
}

impl CanisterSlot {
    fn new(record: CanisterRecord) -> CanisterSlot {
        CanisterSlot {
            id: record.id,
            published: RwLock::new(record.published()),
            committed: RwLock::new(None),
            query_host: Mutex::new(None),
            dirty: std::sync::atomic::AtomicBool::new(true),
            written: Mutex::new(None),
            exec: Mutex::new(record),
        }
    }

    /// Writes the canister to the state directory if it changed. With `wait` false a canister
    /// busy with a message is left for the next round.
    fn persist(&self, root: &std::path::Path, wait: bool) -> std::io::Result<()> {
        use std::sync::atomic::Ordering;
        if !self.dirty.swap(false, Ordering::AcqRel) {
            return Ok(());
        }
        let record = if wait { Some(self.lock()) } else { self.exec.try_lock().ok() };
        let Some(record) = record else {
            self.dirty.store(true, Ordering::Release);
            return Ok(());
        };
        // Consistent with the record: commits happen under the same lock.
        let committed = self.committed.read().unwrap_or_else(|e| e.into_inner()).clone();
        let chunks = record.chunks.clone();
        let settings = record.settings.clone();
        let (status, cycles, version) = (record.status, record.cycles, record.version());
        let wasm_size = record.module.as_ref().map_or(0, |m| m.wasm_size);
        drop(record);
        let mut written = self.written.lock().unwrap_or_else(|e| e.into_inner());
        let write = state_dir::CanisterWrite {
            id: self.id,
            status,
            cycles,
            settings: &settings,
            version,
            chunks: &chunks,
            module: committed.as_ref().map(|c| (c.module_hash, wasm_size, &*c.state)),
        };
        let result = state_dir::write_canister(root, &write, written.as_deref());
        match result {
            Ok(()) => *written = committed.map(|c| c.state.clone()),
            Err(_) => self.dirty.store(true, Ordering::Release),
        }
        result
    }

    /// Makes what `record` now holds the committed state: published for read_state, a
    /// snapshot for queries (taken only when the canister version or module changed, which
    /// every committed execution and settings change does), marked for the state directory.
    pub fn commit(&self, record: &mut CanisterRecord) {
        *self.published.write().unwrap_or_else(|e| e.into_inner()) = record.published();
        let version = record.version();
        let mut committed = self.committed.write().unwrap_or_else(|e| e.into_inner());
        let stale = match (&*committed, &record.module) {
            (Some(c), Some(m)) => c.version != version || c.module_hash != m.module_hash,
            (None, None) => false,
            _ => true,
        };
        if stale {
            *committed = record.module.as_mut().map(|m| Arc::new(Committed { version, module_hash: m.module_hash, state: Arc::new(m.host.state()) }));
        }
        self.dirty.store(true, std::sync::atomic::Ordering::Release);
    }

    /// Runs `f` on the second instance, brought up to the committed state first.
    fn with_query_host<T>(&self, time: u64, f: impl FnOnce(&mut Host) -> T) -> Result<T, Reject> {
        let committed = self.committed.read().unwrap_or_else(|e| e.into_inner()).clone();
        let Some(committed) = committed else { return Err(no_module(&self.id)) };
        let mut slot = self.query_host.lock().unwrap_or_else(|e| e.into_inner());
        let fresh = matches!(&*slot, Some((c, _)) if Arc::ptr_eq(c, &committed));
        if !fresh {
            let restored = match slot.take() {
                Some((_, mut host)) => host.restore_state(&committed.state).map(|()| host),
                None => Host::from_state(&committed.state),
            };
            match restored {
                Ok(host) => *slot = Some((committed.clone(), host)),
                Err(e) => {
                    return Err(Reject::new(
                        ErrorCode::CanisterTrapped,
                        format!("Error from Canister {}: restoring the committed state failed: {e}", self.id),
                    ));
                }
            }
        }
        let Some((_, host)) = slot.as_mut() else { return Err(no_module(&self.id)) };
        host.set_time(time);
        Ok(f(host))
    }

    /// Runs a query against the committed state on the second instance.
    fn query_committed(&self, time: u64, method: &str, arg: &[u8], caller: Principal, certificate: Vec<u8>) -> CallResult {
        let outcome = self.with_query_host(time, |host| host.query_with_certificate(method, arg, caller, Some(certificate)))?;
        outcome_of(&self.id, method, "query", outcome)
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
    /// Canisters deleted since the state directory was last written.
    removed: Mutex<Vec<Principal>>,
    /// Counts committed changes: the height `/api/v2/status` reports (a replica's certified
    /// block height grows once per round; here once per committed message or operation).
    height: std::sync::atomic::AtomicU64,
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
            removed: Mutex::new(Vec::new()),
            height: std::sync::atomic::AtomicU64::new(0),
        }
    }

    pub fn height(&self) -> u64 {
        self.height.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn advance_height(&self) {
        self.height.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// The subnet stored in `config.state_dir` (or a new one if it holds none yet).
    pub fn open(config: ReplicaConfig, subnet_id: Principal) -> std::io::Result<Replica> {
        let root = config.state_dir.clone();
        let replica = Replica::new(config, subnet_id);
        let Some(root) = root else { return Ok(replica) };
        if let Some((next, blocks)) = state_dir::read_replica(&root)? {
            *replica.next_index.lock().unwrap_or_else(|e| e.into_inner()) = next.max(FIRST_CANISTER_INDEX);
            *replica.blocks.lock().unwrap_or_else(|e| e.into_inner()) = blocks;
        }
        let mut canisters = replica.canisters.write().unwrap_or_else(|e| e.into_inner());
        for stored in state_dir::read_canisters(&root)? {
            let id = stored.id;
            let module = match stored.module {
                None => None,
                Some((module_hash, wasm_size, state)) => {
                    let host =
                        Host::from_state(&state).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, format!("canister {id}: {e}")))?;
                    Some(Installed { host, module_hash, wasm_size })
                }
            };
            let record = CanisterRecord {
                id,
                settings: stored.settings,
                status: stored.status,
                cycles: stored.cycles,
                module,
                chunks: stored.chunks,
                version: stored.version,
                logs: Default::default(),
                next_log_idx: 0,
                log_seen: 0,
            };
            let slot = CanisterSlot::new(record);
            slot.commit(&mut slot.lock());
            // What was read is what the directory holds: nothing to write until it changes.
            *slot.written.lock().unwrap_or_else(|e| e.into_inner()) =
                slot.committed.read().unwrap_or_else(|e| e.into_inner()).as_ref().map(|c| c.state.clone());
            slot.dirty.store(false, std::sync::atomic::Ordering::Release);
            canisters.insert(id, Arc::new(slot));
        }
        drop(canisters);
        Ok(replica)
    }

    /// Writes what changed to the state directory (no-op without one). The server calls this
    /// periodically (`wait` false: busy canisters wait for the next round) and at shutdown.
    pub fn persist(&self, wait: bool) -> std::io::Result<()> {
        let Some(root) = self.config.state_dir.clone() else { return Ok(()) };
        std::fs::create_dir_all(root.join("canisters"))?;
        let next = *self.next_index.lock().unwrap_or_else(|e| e.into_inner());
        let blocks = *self.blocks.lock().unwrap_or_else(|e| e.into_inner());
        state_dir::write_replica(&root, next, blocks)?;
        let removed = std::mem::take(&mut *self.removed.lock().unwrap_or_else(|e| e.into_inner()));
        for id in removed {
            state_dir::remove_canister(&root, &id)?;
        }
        let mut first_error = None;
        for id in self.canister_ids() {
            if let Some(Err(e)) = self.canister(&id).map(|slot| slot.persist(&root, wait)) {
                first_error.get_or_insert(std::io::Error::new(e.kind(), format!("canister {id}: {e}")));
            }
        }
        first_error.map_or(Ok(()), Err)
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
    pub fn create_canister(
        &self,
        mut controllers: Vec<Principal>,
        creator: Principal,
        cycles: u128,
        specified: Option<Principal>,
    ) -> Result<Principal, Reject> {
        if controllers.is_empty() {
            controllers.push(creator);
        }
        if let Some(extra) = self.config.extra_controller.filter(|extra| !controllers.contains(extra)) {
            controllers.push(extra);
        }
        if controllers.len() > management::MAX_CONTROLLERS {
            return Err(Reject::new(
                ErrorCode::InvalidManagementPayload,
                format!("Invalid settings: at most {} controllers are allowed", management::MAX_CONTROLLERS),
            ));
        }
        let mut canisters = self.canisters.write().unwrap_or_else(|e| e.into_inner());
        let id = match specified {
            Some(id) => {
                if canisters.contains_key(&id) {
                    return Err(Reject {
                        code: crate::host::RejectCode::SysTransient,
                        message: format!("Canister {id} is already installed."),
                        error_code: "IC0205".into(),
                    });
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
        let slot = Arc::new(CanisterSlot::new(record));
        canisters.insert(id, slot);
        Ok(id)
    }

    pub fn remove_canister(&self, id: &Principal) {
        self.canisters.write().unwrap_or_else(|e| e.into_inner()).remove(id);
        self.removed.lock().unwrap_or_else(|e| e.into_inner()).push(*id);
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
        self.advance_height();
        if let Some(r) = self.requests.lock().unwrap_or_else(|e| e.into_inner()).get_mut(&request_id) {
            r.status = RequestStatus::Done(result);
        }
    }

    /// Drops a request refused before execution (its status is never certified).
    pub fn forget_request(&self, request_id: &[u8; 32]) {
        self.requests.lock().unwrap_or_else(|e| e.into_inner()).remove(request_id);
    }

    /// Whether an ingress call may be inducted: the checks the IC makes before execution,
    /// whose refusals are not certified (v3/v4 `non_replicated_rejection`): the canister
    /// exists, has code and runs, and its `canister_inspect_message` accepts the message. The
    /// inspection runs on the committed state (on the second instance if an update holds the
    /// canister), and its changes are discarded.
    pub fn admit_call(&self, sender: Principal, canister_id: &Principal, method: &str, arg: &[u8]) -> Result<(), Reject> {
        if *canister_id == Principal::management_canister() || system_canisters::is_system_canister(canister_id) {
            return Ok(());
        }
        let slot = self.canister(canister_id).ok_or_else(|| Reject::canister_not_found(canister_id))?;
        let published = slot.published.read().unwrap_or_else(|e| e.into_inner()).clone();
        runnable(canister_id, published.status, published.module_hash.is_some())?;
        let time = self.time();
        let inspection = match slot.exec.try_lock() {
            Ok(mut record) => match record.module.as_mut() {
                Some(installed) => {
                    installed.host.set_time(time);
                    installed.host.inspect_message(method, arg, sender)
                }
                None => return Err(no_module(canister_id)),
            },
            Err(_) => slot.with_query_host(time, |host| host.inspect_message(method, arg, sender))?,
        };
        match inspection {
            Ok((Inspection::Accepted, _)) => Ok(()),
            // An update that does not exist is for the execution to reject (certified, IC0536).
            Err(HostError::NoMethod(_)) => Ok(()),
            Ok((Inspection::Refused, _)) => {
                Err(Reject::new(ErrorCode::CanisterRejectedMessage, format!("Error from Canister {canister_id}: Canister rejected the message")))
            }
            Ok((Inspection::Trapped(message), _)) => Err(reject::from_canister(canister_id, crate::host::RejectCode::CanisterError, &message)),
            Err(e) => Err(Reject::new(ErrorCode::CanisterTrapped, format!("Error from Canister {canister_id}: {e}"))),
        }
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
        let Some(installed) = record.module.as_mut() else { return Err(no_module(&canister_id)) };
        installed.host.set_time(time);
        // inspect_message ran when the message was admitted ([`Replica::admit_call`]).
        let result = outcome_of(&canister_id, method, "update", installed.host.execute_update(method, arg, sender));
        record.collect_logs(time);
        slot.commit(&mut record);
        result
    }

    /// Executes a query against the canister's last committed state. `data_certificate` makes
    /// `data_certificate_copy` work in it: the caller builds it over [`Replica::certified_data`].
    pub fn query(
        &self,
        sender: Principal,
        canister_id: Principal,
        method: &str,
        arg: &[u8],
        data_certificate: impl FnOnce(&[u8]) -> Vec<u8>,
    ) -> CallResult {
        if canister_id == Principal::management_canister() {
            return management::query(self, sender, method, arg);
        }
        if let Some(result) = system_canisters::query(self, sender, canister_id, method, arg) {
            return result;
        }
        let slot = self.canister(&canister_id).ok_or_else(|| Reject::canister_not_found(&canister_id))?;
        let time = self.time();
        // While an update holds the canister, the query runs on the committed state instead.
        let Ok(mut record) = slot.exec.try_lock() else {
            let published = slot.published.read().unwrap_or_else(|e| e.into_inner()).clone();
            runnable(&canister_id, published.status, published.module_hash.is_some())?;
            let certificate = data_certificate(&published.certified_data);
            return slot.query_committed(time, method, arg, sender, certificate);
        };
        runnable(&canister_id, record.status, record.module.is_some())?;
        let Some(installed) = record.module.as_mut() else { return Err(no_module(&canister_id)) };
        installed.host.set_time(time);
        let certificate = data_certificate(installed.host.certified_data());
        let result = outcome_of(&canister_id, method, "query", installed.host.query_with_certificate(method, arg, sender, Some(certificate)));
        // What a non-replicated query prints is not part of the canister log (as on the IC).
        record.skip_logs();
        result
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
                record.collect_logs(time);
                slot.commit(&mut record);
            }
        }
    }
}

/// Whether a canister can take a message now.
fn runnable(id: &Principal, status: CanisterStatusType, has_module: bool) -> Result<(), Reject> {
    match status {
        CanisterStatusType::Stopped => {
            return Err(Reject::new(
                ErrorCode::CanisterStopped,
                format!("Canister {id} is stopped and therefore does not have a CallContextManager"),
            ));
        }
        CanisterStatusType::Stopping => return Err(Reject::new(ErrorCode::CanisterStopping, format!("Canister {id} is stopping"))),
        CanisterStatusType::Running => {}
    }
    if !has_module {
        return Err(no_module(id));
    }
    Ok(())
}

fn no_module(id: &Principal) -> Reject {
    Reject::new(
        ErrorCode::CanisterWasmModuleNotFound,
        format!("Error from Canister {id}: Attempted to execute a message, but the canister contains no Wasm module."),
    )
}

/// The reply or reject of one execution on the embedded host.
fn outcome_of(canister: &Principal, method: &str, kind: &str, outcome: Result<Outcome, HostError>) -> CallResult {
    match outcome {
        Ok(outcome) => reject::from_response(canister, &outcome.response),
        Err(HostError::NoMethod(_)) => {
            Err(Reject::new(ErrorCode::CanisterMethodNotFound, format!("Error from Canister {canister}: Canister has no {kind} method '{method}'.")))
        }
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
        accounting: crate::types::Accounting::default(),
    }
}
