//! Stable memory layout (see `docs/STORAGE.md`): one metadata cell and two slots per blob kind.
//! An upload always goes to the slot that is not active, so the active model keeps serving until
//! the new one is verified and the metadata flips to it in one write.

use std::borrow::Cow;

use candid::{CandidType, Decode, Deserialize, Encode};
use ic_stable_structures::memory_manager::{MemoryId, MemoryManager, VirtualMemory};
use ic_stable_structures::storable::Bound;
use ic_stable_structures::{Cell, Memory, Storable};

use crate::api::{BlobKind, Error};

pub const META: MemoryId = MemoryId::new(0);
/// Slots: model A, model B, tokenizer A, tokenizer B.
pub const SLOTS: [MemoryId; 4] = [MemoryId::new(1), MemoryId::new(2), MemoryId::new(3), MemoryId::new(4)];
const WASM_PAGE: u64 = 65_536;
/// Largest model we accept: it must also fit in the 4 GiB heap once loaded.
pub const MAX_BLOB_BYTES: u64 = 1 << 30;
/// Largest tokenizer: parsing costs ~700 instructions per byte and must fit in one message
/// (`upload_finish`, and `post_upgrade` again): 16 MiB is ~12 B of the 40 B update limit.
/// GPT-2's tokenizer.json is 1.4 MB.
pub const MAX_TOKENIZER_BYTES: u64 = 16 << 20;
/// The layout this code reads and writes.
pub const LAYOUT_VERSION: u32 = 1;

/// The largest blob of a kind.
pub fn max_bytes(kind: BlobKind) -> u64 {
    match kind {
        BlobKind::Model => MAX_BLOB_BYTES,
        BlobKind::Tokenizer => MAX_TOKENIZER_BYTES,
    }
}

/// SHA-256 of the bytes received so far, as sha2's compression function leaves it: kept in
/// stable memory after every chunk, so that no call (after an upgrade either) ever hashes the
/// staged bytes again.
#[derive(CandidType, Deserialize, Clone, Debug, PartialEq)]
pub struct HashState {
    /// The eight state words after the last whole 64-byte block.
    pub state: Vec<u32>,
    /// Bytes hashed in all (whole blocks and `partial`).
    pub length: u64,
    /// The bytes after the last whole block (fewer than 64).
    pub partial: Vec<u8>,
}

/// FIPS 180-4's initial hash value for SHA-256.
const SHA256_IV: [u32; 8] = [0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19];

impl Default for HashState {
    fn default() -> HashState {
        HashState { state: SHA256_IV.to_vec(), length: 0, partial: Vec::new() }
    }
}

impl HashState {
    fn words(&self) -> [u32; 8] {
        // Written only by this code with eight words; anything else restarts from the IV (and the
        // hash then mismatches at `upload_finish`, a typed error) rather than trapping.
        <[u32; 8]>::try_from(self.state.as_slice()).unwrap_or(SHA256_IV)
    }

    fn compress(state: &mut [u32; 8], blocks: &[u8]) {
        use sha2::digest::generic_array::GenericArray;
        let blocks: Vec<GenericArray<u8, sha2::digest::consts::U64>> = blocks.chunks_exact(64).map(GenericArray::clone_from_slice).collect();
        sha2::compress256(state, &blocks);
    }

    pub fn update(&mut self, bytes: &[u8]) {
        let mut state = self.words();
        let mut rest = bytes;
        if !self.partial.is_empty() {
            let take = (64 - self.partial.len()).min(rest.len());
            self.partial.extend_from_slice(&rest[..take]);
            rest = &rest[take..];
            if self.partial.len() == 64 {
                Self::compress(&mut state, &self.partial);
                self.partial.clear();
            }
        }
        let whole = rest.len() / 64 * 64;
        Self::compress(&mut state, &rest[..whole]);
        self.partial.extend_from_slice(&rest[whole..]);
        self.length = self.length.saturating_add(bytes.len() as u64);
        self.state = state.to_vec();
    }

    /// The digest: the message padded with 0x80, zeros and its length in bits (FIPS 180-4 5.1.1).
    pub fn finish(&self) -> Vec<u8> {
        let mut state = self.words();
        let mut tail = self.partial.clone();
        tail.push(0x80);
        while tail.len() % 64 != 56 {
            tail.push(0);
        }
        tail.extend_from_slice(&self.length.wrapping_mul(8).to_be_bytes());
        Self::compress(&mut state, &tail);
        state.iter().flat_map(|w| w.to_be_bytes()).collect()
    }
}

#[derive(CandidType, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct BlobMeta {
    /// Index into this kind's two slots of the active blob.
    pub active: Option<u8>,
    pub active_size: u64,
    pub active_sha256: Vec<u8>,
    pub uploading: bool,
    /// The slot the upload writes to (always the inactive one).
    pub staging: u8,
    pub received: u64,
    /// The hash of the `received` bytes (absent in metadata written before it existed: such an
    /// upload must restart).
    pub hash: Option<HashState>,
}

#[derive(CandidType, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct Meta {
    pub layout_version: u32,
    pub model: BlobMeta,
    pub tokenizer: BlobMeta,
    pub call_budget: u64,
    pub max_sessions: u32,
    pub max_sessions_per_caller: u32,
    pub session_timeout_seconds: u64,
    /// Heap that the model, the tokenizer and every session at its full context may take
    /// together (absent: the default, see `service::DEFAULT_HEAP_BUDGET`).
    pub heap_budget_bytes: Option<u64>,
}

impl Storable for Meta {
    fn to_bytes(&self) -> Cow<'_, [u8]> {
        Cow::Owned(Encode!(self).expect("metadata encodes"))
    }
    fn into_bytes(self) -> Vec<u8> {
        Encode!(&self).expect("metadata encodes")
    }
    fn from_bytes(bytes: Cow<[u8]>) -> Self {
        // Written only by this code; a decoding failure means the layout changed incompatibly.
        Decode!(&bytes, Meta).expect("stable metadata of an unknown layout")
    }
    const BOUND: Bound = Bound::Unbounded;
}

pub struct Storage<M: Memory + Clone> {
    meta: Cell<Meta, VirtualMemory<M>>,
    slots: Vec<VirtualMemory<M>>,
}

fn slot_index(kind: BlobKind, slot: u8) -> usize {
    match kind {
        BlobKind::Model => slot as usize,
        BlobKind::Tokenizer => 2 + slot as usize,
    }
}

impl<M: Memory + Clone> Storage<M> {
    /// Opens the layout in `memory`, creating it with `defaults` if the memory is empty.
    pub fn init(memory: M, defaults: Meta) -> Storage<M> {
        let manager = MemoryManager::init(memory);
        let meta = Cell::init(manager.get(META), defaults);
        let slots = SLOTS.iter().map(|&id| manager.get(id)).collect();
        Storage { meta, slots }
    }

    pub fn meta(&self) -> &Meta {
        self.meta.get()
    }

    pub fn update_meta(&mut self, f: impl FnOnce(&mut Meta)) {
        let mut meta = self.meta.get().clone();
        f(&mut meta);
        self.meta.set(meta);
    }

    pub fn blob(&self, kind: BlobKind) -> &BlobMeta {
        match kind {
            BlobKind::Model => &self.meta().model,
            BlobKind::Tokenizer => &self.meta().tokenizer,
        }
    }

    fn update_blob(&mut self, kind: BlobKind, f: impl FnOnce(&mut BlobMeta)) {
        self.update_meta(|m| match kind {
            BlobKind::Model => f(&mut m.model),
            BlobKind::Tokenizer => f(&mut m.tokenizer),
        });
    }

    /// Starts (or restarts) an upload into the inactive slot.
    pub fn begin_upload(&mut self, kind: BlobKind) {
        self.update_blob(kind, |b| {
            b.staging = match b.active {
                Some(0) => 1,
                _ => 0,
            };
            b.uploading = true;
            b.received = 0;
            b.hash = Some(HashState::default());
        });
    }

    /// Bytes `[offset, offset + len)` of the staging slot.
    pub fn read_staging(&self, kind: BlobKind, offset: u64, len: usize) -> Vec<u8> {
        let slot = &self.slots[slot_index(kind, self.blob(kind).staging)];
        let mut buf = vec![0; len];
        slot.read(offset, &mut buf);
        buf
    }

    /// Appends to the staging slot at `received` and extends the upload's hash, in one
    /// metadata write. Returns the new received size.
    pub fn append(&mut self, kind: BlobKind, bytes: &[u8]) -> Result<u64, Error> {
        let blob = self.blob(kind).clone();
        let max = max_bytes(kind);
        let end = blob.received.checked_add(bytes.len() as u64).filter(|&end| end <= max).ok_or(Error::BlobTooLarge { max })?;
        let mut hash = blob.hash.clone().ok_or(Error::UploadNotStarted)?;
        let slot = &self.slots[slot_index(kind, blob.staging)];
        let have = slot.size() * WASM_PAGE;
        if end > have {
            let pages = (end - have).div_ceil(WASM_PAGE);
            if slot.grow(pages) < 0 {
                return Err(Error::StableMemoryFull);
            }
        }
        slot.write(blob.received, bytes);
        hash.update(bytes);
        self.update_blob(kind, |b| {
            b.received = end;
            b.hash = Some(hash);
        });
        Ok(end)
    }

    /// The whole staging blob.
    pub fn staging_bytes(&self, kind: BlobKind) -> Vec<u8> {
        let received = self.blob(kind).received as usize;
        self.read_staging(kind, 0, received)
    }

    /// The whole active blob, if any.
    pub fn active_bytes(&self, kind: BlobKind) -> Option<Vec<u8>> {
        let blob = self.blob(kind);
        let slot = &self.slots[slot_index(kind, blob.active?)];
        let mut buf = vec![0; blob.active_size as usize];
        slot.read(0, &mut buf);
        Some(buf)
    }

    /// Makes the staging blob the active one (one metadata write).
    pub fn activate(&mut self, kind: BlobKind, sha256: Vec<u8>) {
        self.update_blob(kind, |b| {
            b.active = Some(b.staging);
            b.active_size = b.received;
            b.active_sha256 = sha256;
            b.uploading = false;
            b.hash = None;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ic_stable_structures::DefaultMemoryImpl;

    #[test]
    fn uploads_go_to_the_inactive_slot_and_survive_reopening() {
        let memory = DefaultMemoryImpl::default();
        let mut s = Storage::init(memory.clone(), Meta::default());
        s.begin_upload(BlobKind::Model);
        s.append(BlobKind::Model, b"first ").unwrap();
        s.append(BlobKind::Model, b"model").unwrap();
        s.activate(BlobKind::Model, vec![1]);
        assert_eq!(s.active_bytes(BlobKind::Model).unwrap(), b"first model");
        s.begin_upload(BlobKind::Model);
        assert_eq!(s.blob(BlobKind::Model).staging, 1);
        s.append(BlobKind::Model, b"second").unwrap();
        // Still serving the first until activation.
        assert_eq!(s.active_bytes(BlobKind::Model).unwrap(), b"first model");
        let reopened = Storage::init(memory, Meta::default());
        assert_eq!(reopened.active_bytes(BlobKind::Model).unwrap(), b"first model");
        assert_eq!(reopened.blob(BlobKind::Model).received, 6);
        assert_eq!(reopened.staging_bytes(BlobKind::Model), b"second");
        assert!(reopened.active_bytes(BlobKind::Tokenizer).is_none());
    }

    /// The stored hash state against sha2's own streaming hasher, across block boundaries.
    #[test]
    fn the_stored_hash_matches_sha2() {
        use sha2::{Digest, Sha256};
        let data: Vec<u8> = (0..10_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
        for pieces in [vec![0usize], vec![1, 63, 64, 65, 200], vec![55, 1, 8, 1000], vec![64, 64, 64]] {
            let mut state = HashState::default();
            let mut at = 0;
            for n in pieces {
                let end = (at + n).min(data.len());
                state.update(&data[at..end]);
                at = end;
            }
            state.update(&data[at..]);
            assert_eq!(state.finish(), Sha256::digest(&data).to_vec());
        }
        assert_eq!(HashState::default().finish(), Sha256::digest(b"").to_vec());
        let mut short = HashState::default();
        short.update(&data[..56]);
        assert_eq!(short.finish(), Sha256::digest(&data[..56]).to_vec());
    }
}
