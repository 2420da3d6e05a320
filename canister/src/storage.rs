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
pub const SLOTS: [MemoryId; 4] = [
    MemoryId::new(1),
    MemoryId::new(2),
    MemoryId::new(3),
    MemoryId::new(4),
];
const WASM_PAGE: u64 = 65_536;
/// Largest blob we accept: a model must also fit in the 4 GiB heap once loaded.
pub const MAX_BLOB_BYTES: u64 = 1 << 30;

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
        });
    }

    /// Bytes `[offset, offset + len)` of the staging slot.
    pub fn read_staging(&self, kind: BlobKind, offset: u64, len: usize) -> Vec<u8> {
        let slot = &self.slots[slot_index(kind, self.blob(kind).staging)];
        let mut buf = vec![0; len];
        slot.read(offset, &mut buf);
        buf
    }

    /// Appends to the staging slot at `received`. Returns the new received size.
    pub fn append(&mut self, kind: BlobKind, bytes: &[u8]) -> Result<u64, Error> {
        let blob = self.blob(kind).clone();
        let end = blob.received + bytes.len() as u64;
        if end > MAX_BLOB_BYTES {
            return Err(Error::BlobTooLarge {
                max: MAX_BLOB_BYTES,
            });
        }
        let slot = &self.slots[slot_index(kind, blob.staging)];
        let have = slot.size() * WASM_PAGE;
        if end > have {
            let pages = (end - have).div_ceil(WASM_PAGE);
            if slot.grow(pages) < 0 {
                return Err(Error::BlobTooLarge { max: have });
            }
        }
        slot.write(blob.received, bytes);
        self.update_blob(kind, |b| b.received = end);
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
        assert_eq!(
            reopened.active_bytes(BlobKind::Model).unwrap(),
            b"first model"
        );
        assert_eq!(reopened.blob(BlobKind::Model).received, 6);
        assert_eq!(reopened.staging_bytes(BlobKind::Model), b"second");
        assert!(reopened.active_bytes(BlobKind::Tokenizer).is_none());
    }
}
