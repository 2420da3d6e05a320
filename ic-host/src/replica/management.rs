//! The management canister (`aaaaa-aa`) as users reach it by ingress: creating canisters,
//! installing code (gzip-compressed modules too, whole or from the chunk store), status,
//! settings, start, stop, delete. Argument and result types are those of
//! `ic-management-canister-types` (the current record shapes, which icp-cli decodes strictly);
//! checks, limits and error codes as the IC's management canister documents them.

use std::io::Read;

use candid::{CandidType, Decode, Deserialize, Encode, Nat, Principal};
use ic_management_canister_types::{
    CanisterIdRecord, CanisterInstallMode, CanisterSettings, CanisterStatusResult, CanisterStatusType, ChunkHash, CreateCanisterArgs,
    DefiniteCanisterSettings, InstallChunkedCodeArgs, InstallCodeArgs, MemoryMetrics, ProvisionalCreateCanisterWithCyclesArgs,
    ProvisionalTopUpCanisterArgs, QueryStats, UpdateSettingsArgs, UploadChunkArgs, WasmMemoryPersistence,
};
use sha2::{Digest, Sha256};

use super::reject::{CallResult, ErrorCode, Reject};
use super::{CanisterRecord, DEFAULT_PROVISIONAL_CYCLES, Installed, Replica, host_config};
use crate::host::{Host, HostError};

/// The IC's limits: controllers per canister, chunk size and count of the chunk store,
/// decompressed module size, environment variables.
pub const MAX_CONTROLLERS: usize = 10;
pub const MAX_CHUNK_BYTES: usize = 1024 * 1024;
pub const MAX_STORED_CHUNKS: usize = 100;
pub const MAX_WASM_BYTES: u64 = 100 * 1024 * 1024;
const MAX_ENVIRONMENT_VARIABLES: usize = 20;
const MAX_ENVIRONMENT_VARIABLE_BYTES: usize = 128;
/// The gzip magic number: the IC accepts modules compressed with gzip.
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// The canister a management call is about, which must be the effective canister id of the
/// request (the URL's), as the IC routes management calls to the subnet of that canister.
/// `None` for calls that create canisters (any effective id is fine) or that name none.
pub fn effective_canister_id(method: &str, arg: &[u8]) -> Option<Principal> {
    #[derive(CandidType, Deserialize)]
    struct Target {
        canister_id: Option<Principal>,
        target_canister: Option<Principal>,
    }
    if matches!(method, "create_canister" | "provisional_create_canister_with_cycles") {
        return None;
    }
    let target = Decode!(arg, Target).ok()?;
    target.target_canister.filter(|_| method == "install_chunked_code").or(target.canister_id)
}

fn decode<T: CandidType + for<'de> Deserialize<'de>>(method: &str, arg: &[u8]) -> Result<T, Reject> {
    Decode!(arg, T).map_err(|e| Reject::invalid_payload(method, e))
}

fn encode<T: CandidType>(value: &T) -> CallResult {
    Encode!(value).map_err(|e| Reject::new(ErrorCode::CanisterContractViolation, format!("encoding the reply failed: {e}")))
}

/// An ingress update call to the management canister.
pub fn call(replica: &Replica, sender: Principal, method: &str, arg: &[u8]) -> CallResult {
    match method {
        "provisional_create_canister_with_cycles" => {
            let args: ProvisionalCreateCanisterWithCyclesArgs = decode(method, arg)?;
            let cycles = args.amount.map_or(Ok(DEFAULT_PROVISIONAL_CYCLES), |n| nat_to_u128(&n, "amount"))?;
            create(replica, sender, args.settings, cycles, args.specified_id)
        }
        "create_canister" => {
            let args: CreateCanisterArgs = decode(method, arg)?;
            create(replica, sender, args.settings, DEFAULT_PROVISIONAL_CYCLES, None)
        }
        "install_code" => {
            let args: InstallCodeArgs = decode(method, arg)?;
            with_controlled(replica, sender, args.canister_id, method, |record| install(replica, record, args.mode, &args.wasm_module, &args.arg))
        }
        "upload_chunk" => {
            let args: UploadChunkArgs = decode(method, arg)?;
            with_controlled(replica, sender, args.canister_id, method, |record| {
                if args.chunk.len() > MAX_CHUNK_BYTES {
                    return Err(Reject::new(
                        ErrorCode::InvalidManagementPayload,
                        format!("Wasm chunk size {} exceeds the maximum chunk size of {MAX_CHUNK_BYTES}", args.chunk.len()),
                    ));
                }
                let hash: [u8; 32] = Sha256::digest(&args.chunk).into();
                if !record.chunks.iter().any(|(h, _)| *h == hash) {
                    if record.chunks.len() >= MAX_STORED_CHUNKS {
                        return Err(Reject::new(
                            ErrorCode::CanisterContractViolation,
                            format!("Error from Wasm chunk store: the chunk store is full ({MAX_STORED_CHUNKS} chunks)"),
                        ));
                    }
                    record.chunks.push((hash, args.chunk));
                }
                encode(&ChunkHash { hash: hash.to_vec() })
            })
        }
        "stored_chunks" => {
            let args: CanisterIdRecord = decode(method, arg)?;
            with_controlled(replica, sender, args.canister_id, method, |record| {
                encode(&record.chunks.iter().map(|(h, _)| ChunkHash { hash: h.to_vec() }).collect::<Vec<_>>())
            })
        }
        "clear_chunk_store" => {
            let args: CanisterIdRecord = decode(method, arg)?;
            with_controlled(replica, sender, args.canister_id, method, |record| {
                record.chunks.clear();
                encode(&())
            })
        }
        "install_chunked_code" => {
            let args: InstallChunkedCodeArgs = decode(method, arg)?;
            install_chunked(replica, sender, args)
        }
        "canister_status" => {
            let args: CanisterIdRecord = decode(method, arg)?;
            with_controlled(replica, sender, args.canister_id, method, |record| encode(&status(record)))
        }
        "update_settings" => {
            let args: UpdateSettingsArgs = decode(method, arg)?;
            with_controlled(replica, sender, args.canister_id, method, |record| {
                let settings = apply_settings(&record.settings, &args.settings)?;
                set_settings(record, settings);
                encode(&())
            })
        }
        "start_canister" => {
            let args: CanisterIdRecord = decode(method, arg)?;
            with_controlled(replica, sender, args.canister_id, method, |record| {
                record.status = CanisterStatusType::Running;
                encode(&())
            })
        }
        "stop_canister" => {
            let args: CanisterIdRecord = decode(method, arg)?;
            // The embedded host finishes every call tree before it answers, so a canister
            // never has open call contexts to wait for: stopping is immediate.
            with_controlled(replica, sender, args.canister_id, method, |record| {
                record.status = CanisterStatusType::Stopped;
                encode(&())
            })
        }
        "delete_canister" => {
            let args: CanisterIdRecord = decode(method, arg)?;
            let result = with_controlled(replica, sender, args.canister_id, method, |record| {
                if record.status != CanisterStatusType::Stopped {
                    return Err(Reject::new(ErrorCode::CanisterNotStopped, format!("Canister {} must be stopped before it is deleted.", record.id)));
                }
                encode(&())
            });
            if result.is_ok() {
                replica.remove_canister(&args.canister_id);
            }
            result
        }
        "uninstall_code" => {
            let args: CanisterIdRecord = decode(method, arg)?;
            with_controlled(replica, sender, args.canister_id, method, |record| {
                let version = record.version();
                record.module = None;
                record.chunks.clear();
                record.version = version + 1;
                encode(&())
            })
        }
        "provisional_top_up_canister" => {
            let args: ProvisionalTopUpCanisterArgs = decode(method, arg)?;
            let amount = nat_to_u128(&args.amount, "amount")?;
            let slot = replica.canister(&args.canister_id).ok_or_else(|| Reject::canister_not_found(&args.canister_id))?;
            let mut record = slot.lock();
            record.cycles = record.cycles.saturating_add(amount);
            encode(&())
        }
        "raw_rand" | "http_request" | "ecdsa_public_key" | "sign_with_ecdsa" | "schnorr_public_key" | "sign_with_schnorr" | "deposit_cycles"
        | "canister_info" => Err(Reject::new(ErrorCode::CanisterRejectedMessage, format!("Only canisters can call ic00 method {method}"))),
        _ => Err(Reject::new(ErrorCode::UnknownManagementMessage, format!("Management canister has no method '{method}'"))),
    }
}

/// A query to the management canister (ic-utils asks for `canister_status` as a query).
pub fn query(replica: &Replica, sender: Principal, method: &str, arg: &[u8]) -> CallResult {
    match method {
        "canister_status" => {
            let args: CanisterIdRecord = decode(method, arg)?;
            with_controlled(replica, sender, args.canister_id, method, |record| encode(&status(record)))
        }
        "fetch_canister_logs" => {
            let args: ic_management_canister_types::FetchCanisterLogsArgs = decode(method, arg)?;
            let slot = replica.canister(&args.canister_id).ok_or_else(|| Reject::canister_not_found(&args.canister_id))?;
            let record = slot.lock();
            let allowed = match &record.settings.log_visibility {
                ic_management_canister_types::LogVisibility::Public => true,
                ic_management_canister_types::LogVisibility::Controllers => record.is_controller(&sender),
                ic_management_canister_types::LogVisibility::AllowedViewers(viewers) => record.is_controller(&sender) || viewers.contains(&sender),
            };
            if !allowed {
                return Err(Reject::new(
                    ErrorCode::CanisterRejectedMessage,
                    format!("Caller {sender} is not allowed to query ic00 method fetch_canister_logs"),
                ));
            }
            // Filters select by index or time, both bounds inclusive.
            let keep = |r: &&ic_management_canister_types::CanisterLogRecord| match &args.filter {
                None => true,
                Some(ic_management_canister_types::CanisterLogFilter::ByIdx { start, end }) => (*start..=*end).contains(&r.idx),
                Some(ic_management_canister_types::CanisterLogFilter::ByTimestampNanos { start, end }) => {
                    (*start..=*end).contains(&r.timestamp_nanos)
                }
            };
            let canister_log_records = record.logs.iter().filter(keep).cloned().collect();
            encode(&ic_management_canister_types::FetchCanisterLogsResult { canister_log_records })
        }
        _ => Err(Reject::new(ErrorCode::CanisterMethodNotFound, format!("Management canister has no query method '{method}'"))),
    }
}

/// Runs `f` on the canister's record if `sender` controls it; publishes what changed.
fn with_controlled(
    replica: &Replica,
    sender: Principal,
    id: Principal,
    method: &str,
    f: impl FnOnce(&mut CanisterRecord) -> CallResult,
) -> CallResult {
    let slot = replica.canister(&id).ok_or_else(|| Reject::canister_not_found(&id))?;
    let mut record = slot.lock();
    if !record.is_controller(&sender) {
        return Err(Reject::not_controller(&id, method));
    }
    let result = f(&mut record);
    slot.commit(&mut record);
    result
}

fn create(replica: &Replica, sender: Principal, settings: Option<CanisterSettings>, cycles: u128, specified: Option<Principal>) -> CallResult {
    let id = create_canister(replica, sender, settings, cycles, specified)?;
    encode(&CanisterIdRecord { canister_id: id })
}

/// Creates a canister with `settings` for `sender` (also what the cycles ledger does).
pub fn create_for(replica: &Replica, sender: Principal, settings: Option<CanisterSettings>, cycles: u128) -> Result<Principal, Reject> {
    create_canister(replica, sender, settings, cycles, None)
}

fn create_canister(
    replica: &Replica,
    sender: Principal,
    settings: Option<CanisterSettings>,
    cycles: u128,
    specified: Option<Principal>,
) -> Result<Principal, Reject> {
    let settings = settings.unwrap_or_default();
    let controllers = settings.controllers.clone().unwrap_or_default();
    // Validate everything before the canister exists, so a bad argument creates nothing.
    let base = apply_settings(&super::default_settings(vec![sender]), &CanisterSettings { controllers: None, ..settings.clone() })?;
    let id = replica.create_canister(controllers, sender, cycles, specified)?;
    if let Some(slot) = replica.canister(&id) {
        let mut record = slot.lock();
        let controllers = record.settings.controllers.clone();
        record.settings = DefiniteCanisterSettings { controllers, ..base };
        slot.commit(&mut record);
    }
    Ok(id)
}

fn set_settings(record: &mut CanisterRecord, settings: DefiniteCanisterSettings) {
    if let Some(installed) = record.module.as_mut() {
        let limit = u64::try_from(settings.wasm_memory_limit.0.clone()).unwrap_or(crate::host::MAX_WASM_MEMORY);
        installed.host.set_wasm_memory_limit(if limit == 0 { crate::host::MAX_WASM_MEMORY } else { limit });
        installed.host.set_controllers(settings.controllers.clone());
    }
    record.settings = settings;
    record.bump_version();
}

/// `settings` applied over `current`, refusing what the IC refuses.
pub fn apply_settings(current: &DefiniteCanisterSettings, settings: &CanisterSettings) -> Result<DefiniteCanisterSettings, Reject> {
    let invalid = |what: String| Reject::new(ErrorCode::InvalidManagementPayload, format!("Invalid settings: {what}"));
    let mut next = current.clone();
    if let Some(controllers) = &settings.controllers {
        if controllers.len() > MAX_CONTROLLERS {
            return Err(invalid(format!("at most {MAX_CONTROLLERS} controllers are allowed, got {}", controllers.len())));
        }
        let mut unique = controllers.clone();
        unique.sort();
        unique.dedup();
        next.controllers = unique;
    }
    if let Some(n) = &settings.compute_allocation {
        if *n > 100u32 {
            return Err(invalid(format!("compute_allocation must be in 0..=100, got {n}")));
        }
        next.compute_allocation = n.clone();
    }
    if let Some(n) = &settings.wasm_memory_limit {
        if *n > (1u64 << 48) {
            return Err(invalid(format!("wasm_memory_limit {n} exceeds 2^48")));
        }
        next.wasm_memory_limit = n.clone();
    }
    for (field, value) in [
        (&mut next.memory_allocation, &settings.memory_allocation),
        (&mut next.freezing_threshold, &settings.freezing_threshold),
        (&mut next.reserved_cycles_limit, &settings.reserved_cycles_limit),
        (&mut next.minimum_incoming_canister_call_cycles, &settings.minimum_incoming_canister_call_cycles),
        (&mut next.log_memory_limit, &settings.log_memory_limit),
        (&mut next.wasm_memory_threshold, &settings.wasm_memory_threshold),
    ] {
        if let Some(v) = value {
            if *v > u64::MAX {
                return Err(invalid(format!("{v} does not fit 64 bits")));
            }
            *field = v.clone();
        }
    }
    if let Some(v) = &settings.log_visibility {
        next.log_visibility = v.clone();
    }
    if let Some(v) = &settings.snapshot_visibility {
        next.snapshot_visibility = v.clone();
    }
    if let Some(v) = &settings.status_visibility {
        next.status_visibility = v.clone();
    }
    if let Some(vars) = &settings.environment_variables {
        if vars.len() > MAX_ENVIRONMENT_VARIABLES {
            return Err(invalid(format!("at most {MAX_ENVIRONMENT_VARIABLES} environment variables are allowed, got {}", vars.len())));
        }
        if let Some(v) = vars.iter().find(|v| v.name.len() > MAX_ENVIRONMENT_VARIABLE_BYTES || v.value.len() > MAX_ENVIRONMENT_VARIABLE_BYTES) {
            return Err(invalid(format!(
                "environment variable {:?}: names and values are limited to {MAX_ENVIRONMENT_VARIABLE_BYTES} bytes",
                v.name
            )));
        }
        let mut sorted = vars.clone();
        sorted.sort_by(|a, b| a.name.cmp(&b.name));
        if sorted.windows(2).any(|w| w[0].name == w[1].name) {
            return Err(invalid("duplicate environment variable names".into()));
        }
        next.environment_variables = sorted;
    }
    Ok(next)
}

fn nat_to_u128(n: &Nat, what: &str) -> Result<u128, Reject> {
    u128::try_from(n.0.clone()).map_err(|_| Reject::new(ErrorCode::InvalidManagementPayload, format!("{what} {n} does not fit 128 bits")))
}

/// The module bytes to run: gunzipped if gzipped (bounded: a small file must not inflate into
/// gigabytes).
pub fn decompress(wasm: &[u8]) -> Result<Vec<u8>, Reject> {
    if !wasm.starts_with(&GZIP_MAGIC) {
        return Ok(wasm.to_vec());
    }
    let mut out = Vec::new();
    let mut decoder = flate2::read::GzDecoder::new(wasm).take(MAX_WASM_BYTES + 1);
    decoder.read_to_end(&mut out).map_err(|e| Reject::new(ErrorCode::CanisterInvalidWasm, format!("Wasm module is not valid gzip: {e}")))?;
    if out.len() as u64 > MAX_WASM_BYTES {
        return Err(Reject::new(
            ErrorCode::CanisterInvalidWasm,
            format!("Wasm module exceeds the limit of {MAX_WASM_BYTES} bytes when decompressed"),
        ));
    }
    Ok(out)
}

fn install(replica: &Replica, record: &mut CanisterRecord, mode: CanisterInstallMode, wasm_module: &[u8], arg: &[u8]) -> CallResult {
    let id = record.id;
    let module_hash: [u8; 32] = Sha256::digest(wasm_module).into();
    let wasm = decompress(wasm_module)?;
    let time = replica.time();
    let install_error = |e: HostError| -> Reject {
        match e {
            HostError::Invalid(e) => {
                Reject::new(ErrorCode::CanisterInvalidWasm, format!("Error from Canister {id}: Canister's Wasm module is not valid: {e}"))
            }
            HostError::Trapped { message, .. } => super::reject::from_canister(&id, crate::host::RejectCode::CanisterError, &message),
            other => Reject::new(ErrorCode::CanisterInvalidWasm, format!("Error from Canister {id}: {other}")),
        }
    };
    match mode {
        CanisterInstallMode::Install | CanisterInstallMode::Reinstall => {
            if mode == CanisterInstallMode::Install && record.module.is_some() {
                return Err(Reject::new(
                    ErrorCode::CanisterNonEmpty,
                    format!("Canister {id} cannot be installed because the canister is not empty. Try installing with mode='reinstall' instead."),
                ));
            }
            let (mut host, _) = Host::install(&wasm, arg, host_config(record, time)).map_err(install_error)?;
            // The version counts on from the canister's history (creation, earlier modules).
            for _ in 0..record.version() {
                host.bump_canister_version();
            }
            record.module = Some(Installed { host, module_hash, wasm_size: wasm.len() as u64 });
            record.reset_log_cursor();
            record.collect_logs(time);
        }
        CanisterInstallMode::Upgrade(flags) => {
            let Some(installed) = record.module.as_mut() else {
                return Err(Reject::new(
                    ErrorCode::CanisterWasmModuleNotFound,
                    format!("Error from Canister {id}: Attempted to upgrade a canister that contains no Wasm module."),
                ));
            };
            let flags = flags.unwrap_or_default();
            if flags.wasm_memory_persistence == Some(WasmMemoryPersistence::Keep) {
                return Err(Reject::new(
                    ErrorCode::CanisterContractViolation,
                    format!(
                        "Error from Canister {id}: wasm_memory_persistence = keep needs enhanced orthogonal persistence, which this module does not declare."
                    ),
                ));
            }
            if flags.skip_pre_upgrade == Some(true) {
                return Err(Reject::new(ErrorCode::CanisterContractViolation, "skip_pre_upgrade is not supported by the embedded host".to_string()));
            }
            installed.host.set_time(time);
            installed.host.upgrade(&wasm, arg).map_err(install_error)?;
            installed.module_hash = module_hash;
            installed.wasm_size = wasm.len() as u64;
            record.collect_logs(time);
        }
    }
    encode(&())
}

fn install_chunked(replica: &Replica, sender: Principal, args: InstallChunkedCodeArgs) -> CallResult {
    let method = "install_chunked_code";
    let store_id = args.store_canister.unwrap_or(args.target_canister);
    // The chunks come from the store canister, which the sender must control too.
    let wasm = if store_id == args.target_canister {
        None
    } else {
        Some(with_controlled(replica, sender, store_id, method, |store| assemble(store, &args))?)
    };
    with_controlled(replica, sender, args.target_canister, method, |record| {
        let wasm = match &wasm {
            Some(w) => w.clone(),
            None => assemble(record, &args)?,
        };
        install(replica, record, args.mode, &wasm, &args.arg)
    })
}

/// The module from the chunk store, checked against the hash the caller expects.
fn assemble(store: &CanisterRecord, args: &InstallChunkedCodeArgs) -> CallResult {
    let mut wasm = Vec::new();
    for wanted in &args.chunk_hashes_list {
        let chunk = store.chunks.iter().find(|(h, _)| h.as_slice() == wanted.hash.as_slice()).map(|(_, c)| c);
        let Some(chunk) = chunk else {
            return Err(Reject::new(
                ErrorCode::CanisterContractViolation,
                format!("Error from Wasm chunk store: chunk {} is not in the chunk store", hex::encode(&wanted.hash)),
            ));
        };
        wasm.extend_from_slice(chunk);
    }
    let actual: [u8; 32] = Sha256::digest(&wasm).into();
    if actual.as_slice() != args.wasm_module_hash.as_slice() {
        return Err(Reject::new(
            ErrorCode::CanisterContractViolation,
            format!(
                "Wasm module hash {} does not match the hash of the assembled chunks {}",
                hex::encode(&args.wasm_module_hash),
                hex::encode(actual)
            ),
        ));
    }
    Ok(wasm)
}

/// `canister_status` with every field of the current record.
pub fn status(record: &CanisterRecord) -> CanisterStatusResult {
    let (heap, stable, wasm_size, module_hash, version) = match &record.module {
        Some(m) => (m.host.heap_bytes(), m.host.stable_bytes(), m.wasm_size, Some(m.module_hash.to_vec()), record.version()),
        None => (0, 0, 0, None, record.version()),
    };
    let chunk_bytes: usize = record.chunks.iter().map(|(_, c)| c.len()).sum();
    let memory_size = heap + stable + wasm_size + chunk_bytes as u64;
    CanisterStatusResult {
        status: record.status,
        ready_for_migration: false,
        version,
        settings: record.settings.clone(),
        module_hash,
        memory_size: memory_size.into(),
        memory_metrics: MemoryMetrics {
            wasm_memory_size: heap.into(),
            stable_memory_size: stable.into(),
            global_memory_size: 0u64.into(),
            wasm_binary_size: wasm_size.into(),
            custom_sections_size: 0u64.into(),
            canister_history_size: 0u64.into(),
            wasm_chunk_store_size: (chunk_bytes as u64).into(),
            snapshots_size: 0u64.into(),
            log_memory_store_size: 0u64.into(),
        },
        cycles: record.cycles.into(),
        reserved_cycles: 0u64.into(),
        idle_cycles_burned_per_day: 0u64.into(),
        query_stats: QueryStats {
            num_calls_total: 0u64.into(),
            num_instructions_total: 0u64.into(),
            request_payload_bytes_total: 0u64.into(),
            response_payload_bytes_total: 0u64.into(),
        },
    }
}
