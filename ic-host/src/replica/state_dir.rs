//! The replica's state directory (`ic-host serve --state-dir`): every canister's management
//! record, chunk store and committed state, so that a restarted server has the same canisters
//! with the same memories, as a local replica keeps them across `stop`/`start`. Layout and
//! rules: `docs/IC-HOST-STATE.md`, "The replica's state directory".

use std::io;
use std::path::{Path, PathBuf};

use candid::{Decode, Encode, Principal};
use ic_management_canister_types::{CanisterStatusType, DefiniteCanisterSettings};
use serde::{Deserialize, Serialize};

use crate::persist::CanisterState;

/// Bumped when the layout changes; a directory of another format is refused, not misread.
const FORMAT: u32 = 1;
/// Record files are small; anything bigger is not one of ours.
const MAX_RECORD_BYTES: u64 = 1 << 20;

#[derive(Serialize, Deserialize)]
struct ReplicaFile {
    format: u32,
    next_canister_index: u64,
    cycles_ledger_blocks: u64,
}

#[derive(Serialize, Deserialize)]
struct RecordFile {
    format: u32,
    id: String,
    status: String,
    cycles: String,
    /// Hex SHA-256 of the module as installed; the state lives in `state/` when present.
    module_hash: Option<String>,
    wasm_size: u64,
    version: u64,
    /// The settings, Candid-encoded (`DefiniteCanisterSettings`), in hex.
    settings: String,
    /// Hex SHA-256 of each chunk in the chunk store, in upload order (files in `chunks/`).
    chunks: Vec<String>,
}

/// One canister as stored.
pub struct StoredCanister {
    pub id: Principal,
    pub status: CanisterStatusType,
    pub cycles: u128,
    pub settings: DefiniteCanisterSettings,
    pub version: u64,
    pub chunks: Vec<([u8; 32], Vec<u8>)>,
    /// Module hash, module size and the committed state, for a canister with code.
    pub module: Option<([u8; 32], u64, CanisterState)>,
}

fn invalid(path: &Path, why: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("{}: {why}", path.display()))
}

/// Writes `bytes` to `path` through a temporary file and a rename, so a crash leaves either
/// the old or the new file.
fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes)?;
    std::fs::File::open(&tmp)?.sync_all()?;
    std::fs::rename(&tmp, path)
}

fn read_small(path: &Path) -> io::Result<Vec<u8>> {
    let len = std::fs::metadata(path)?.len();
    if len > MAX_RECORD_BYTES {
        return Err(invalid(path, format!("{len} bytes, more than a record file can be")));
    }
    std::fs::read(path)
}

fn hash_from_hex(path: &Path, text: &str) -> io::Result<[u8; 32]> {
    let bytes = hex::decode(text).map_err(|e| invalid(path, format!("hash {text:?}: {e}")))?;
    bytes.try_into().map_err(|_| invalid(path, format!("hash {text:?} is not 32 bytes")))
}

pub fn canister_dir(root: &Path, id: &Principal) -> PathBuf {
    root.join("canisters").join(id.to_text())
}

pub fn write_replica(root: &Path, next_canister_index: u64, cycles_ledger_blocks: u64) -> io::Result<()> {
    let file = ReplicaFile { format: FORMAT, next_canister_index, cycles_ledger_blocks };
    write_atomic(&root.join("replica.json"), &serde_json::to_vec_pretty(&file).map_err(io::Error::other)?)
}

/// `(next canister index, cycles ledger blocks)`, or `None` for a directory never written.
pub fn read_replica(root: &Path) -> io::Result<Option<(u64, u64)>> {
    let path = root.join("replica.json");
    if !path.exists() {
        return Ok(None);
    }
    let file: ReplicaFile = serde_json::from_slice(&read_small(&path)?).map_err(|e| invalid(&path, e))?;
    if file.format != FORMAT {
        return Err(invalid(&path, format!("format {} (this ic-host reads format {FORMAT})", file.format)));
    }
    Ok(Some((file.next_canister_index, file.cycles_ledger_blocks)))
}

fn status_text(status: CanisterStatusType) -> &'static str {
    match status {
        CanisterStatusType::Running => "running",
        CanisterStatusType::Stopping => "stopping",
        CanisterStatusType::Stopped => "stopped",
    }
}

/// What [`write_canister`] stores of one canister.
pub struct CanisterWrite<'a> {
    pub id: Principal,
    pub status: CanisterStatusType,
    pub cycles: u128,
    pub settings: &'a DefiniteCanisterSettings,
    pub version: u64,
    pub chunks: &'a [([u8; 32], Vec<u8>)],
    pub module: Option<([u8; 32], u64, &'a CanisterState)>,
}

/// Stores a canister; `previous` is the state last written for it (only changed stable pages
/// are then rewritten).
pub fn write_canister(root: &Path, canister: &CanisterWrite<'_>, previous: Option<&CanisterState>) -> io::Result<()> {
    let dir = canister_dir(root, &canister.id);
    let chunk_dir = dir.join("chunks");
    std::fs::create_dir_all(&chunk_dir)?;
    if let Some((_, _, state)) = &canister.module {
        state.write_to(&dir.join("state"), previous)?;
    }
    let mut keep = Vec::new();
    for (hash, bytes) in canister.chunks {
        let name = hex::encode(hash);
        let path = chunk_dir.join(&name);
        if !path.exists() {
            write_atomic(&path, bytes)?;
        }
        keep.push(name);
    }
    let record = RecordFile {
        format: FORMAT,
        id: canister.id.to_text(),
        status: status_text(canister.status).into(),
        cycles: canister.cycles.to_string(),
        module_hash: canister.module.as_ref().map(|(hash, _, _)| hex::encode(hash)),
        wasm_size: canister.module.as_ref().map_or(0, |(_, size, _)| *size),
        version: canister.version,
        settings: hex::encode(Encode!(canister.settings).map_err(io::Error::other)?),
        chunks: keep.clone(),
    };
    write_atomic(&dir.join("record.json"), &serde_json::to_vec_pretty(&record).map_err(io::Error::other)?)?;
    // Chunks cleared from the store since the last write.
    for entry in std::fs::read_dir(&chunk_dir)? {
        let entry = entry?;
        if !keep.iter().any(|k| entry.file_name() == k.as_str()) {
            std::fs::remove_file(entry.path())?;
        }
    }
    if canister.module.is_none() && dir.join("state").exists() {
        std::fs::remove_dir_all(dir.join("state"))?;
    }
    Ok(())
}

pub fn remove_canister(root: &Path, id: &Principal) -> io::Result<()> {
    let dir = canister_dir(root, id);
    if dir.exists() { std::fs::remove_dir_all(dir) } else { Ok(()) }
}

/// Every canister stored under `root`.
pub fn read_canisters(root: &Path) -> io::Result<Vec<StoredCanister>> {
    let dir = root.join("canisters");
    if !dir.exists() {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&dir)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            out.push(read_canister(&entry.path())?);
        }
    }
    Ok(out)
}

fn read_canister(dir: &Path) -> io::Result<StoredCanister> {
    let path = dir.join("record.json");
    let record: RecordFile = serde_json::from_slice(&read_small(&path)?).map_err(|e| invalid(&path, e))?;
    if record.format != FORMAT {
        return Err(invalid(&path, format!("format {} (this ic-host reads format {FORMAT})", record.format)));
    }
    let id = Principal::from_text(&record.id).map_err(|e| invalid(&path, format!("canister id {:?}: {e}", record.id)))?;
    let status = match record.status.as_str() {
        "running" => CanisterStatusType::Running,
        "stopping" => CanisterStatusType::Stopping,
        "stopped" => CanisterStatusType::Stopped,
        other => return Err(invalid(&path, format!("status {other:?}"))),
    };
    let cycles = record.cycles.parse::<u128>().map_err(|e| invalid(&path, format!("cycles {:?}: {e}", record.cycles)))?;
    let settings_bytes = hex::decode(&record.settings).map_err(|e| invalid(&path, format!("settings: {e}")))?;
    let settings = Decode!(&settings_bytes, DefiniteCanisterSettings).map_err(|e| invalid(&path, format!("settings: {e}")))?;
    let mut chunks = Vec::new();
    for name in &record.chunks {
        let hash = hash_from_hex(&path, name)?;
        let chunk_path = dir.join("chunks").join(name);
        let bytes = std::fs::read(&chunk_path)?;
        let actual: [u8; 32] = sha2::Digest::finalize(sha2::Digest::chain_update(sha2::Sha256::default(), &bytes)).into();
        if actual != hash {
            return Err(invalid(&chunk_path, "the chunk's content does not match its hash"));
        }
        chunks.push((hash, bytes));
    }
    let module = match &record.module_hash {
        None => None,
        Some(text) => Some((hash_from_hex(&path, text)?, record.wasm_size, CanisterState::read_from(&dir.join("state"))?)),
    };
    Ok(StoredCanister { id, status, cycles, settings, version: record.version, chunks, module })
}
