//! A canister's persistent state between messages ([`CanisterState`]) and its files on disk, as
//! `docs/IC-HOST-STATE.md` specifies them: a manifest written last and atomically, beside data
//! files that are never overwritten, so a crash mid-write leaves the previous state readable.

use std::collections::{BTreeMap, HashSet};
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use candid::Principal;
use sha2::{Digest, Sha256};

use crate::stable::{self, StableMemory};
use crate::validate::{MAX_GLOBALS, MAX_MODULE_BYTES};

/// A canister's complete persistent state between messages: what the IC keeps of a canister
/// (code, memories, globals, system state). Cloning is cheap except for the heap copy the
/// snapshot already made: stable pages are shared copy-on-write.
#[derive(Clone, PartialEq)]
pub struct CanisterState {
    /// The module as installed (uncompressed and validated).
    pub wasm: Arc<[u8]>,
    /// The wasm heap, a whole number of 64 KiB pages.
    pub heap: Arc<[u8]>,
    /// The module's mutable globals, in the order the host exports them.
    pub globals: Vec<GlobalValue>,
    pub stable: StableMemory,
    /// The global timer's deadline in nanoseconds since the epoch; 0 when unset.
    pub timer: u64,
    pub certified_data: Vec<u8>,
    pub controllers: Vec<Principal>,
    pub canister_id: Principal,
    pub cycles: u128,
    /// The host's clock, nanoseconds since the epoch.
    pub time: u64,
    pub canister_version: u64,
    pub wasm_memory_limit: u64,
    /// State of the deterministic `raw_rand` stream.
    pub random: u64,
}

/// A mutable global's value as raw bits, with its type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GlobalValue {
    I32(u32),
    I64(u64),
    /// IEEE 754 bits (NaN payloads survive).
    F32(u32),
    F64(u64),
    V128(u128),
}

impl GlobalValue {
    fn tag(self) -> u8 {
        match self {
            GlobalValue::I32(_) => 0,
            GlobalValue::I64(_) => 1,
            GlobalValue::F32(_) => 2,
            GlobalValue::F64(_) => 3,
            GlobalValue::V128(_) => 4,
        }
    }

    fn bits(self) -> u128 {
        match self {
            GlobalValue::I32(v) | GlobalValue::F32(v) => v.into(),
            GlobalValue::I64(v) | GlobalValue::F64(v) => v.into(),
            GlobalValue::V128(v) => v,
        }
    }

    fn from_parts(tag: u8, bits: u128) -> Option<GlobalValue> {
        let narrow32 = u32::try_from(bits).ok();
        let narrow64 = u64::try_from(bits).ok();
        Some(match tag {
            0 => GlobalValue::I32(narrow32?),
            1 => GlobalValue::I64(narrow64?),
            2 => GlobalValue::F32(narrow32?),
            3 => GlobalValue::F64(narrow64?),
            4 => GlobalValue::V128(bits),
            _ => return None,
        })
    }
}

/// Why a state directory could not be read. Carried inside an [`io::Error`] of kind
/// `InvalidData`; `error.get_ref()` and `downcast_ref::<StateFileError>()` recover it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StateFileError {
    /// The manifest does not start with the magic bytes.
    #[error("not an ic-host state manifest")]
    Magic,
    #[error("state format version {0} is not supported (this host reads version {FORMAT_VERSION})")]
    Version(u32),
    /// The manifest's SHA-256 does not match its contents.
    #[error("the state manifest is corrupt (checksum mismatch)")]
    Checksum,
    /// The manifest ends inside a field.
    #[error("the state manifest is truncated")]
    Truncated,
    #[error("the state manifest has {0} bytes after its checksum")]
    TrailingBytes(u64),
    /// A size beyond the limit a canister can reach.
    #[error("{what} is {found}, limit {limit}")]
    TooLarge { what: &'static str, found: u64, limit: u64 },
    /// A field with a value no writer produces.
    #[error("invalid {0} in the state manifest")]
    Invalid(&'static str),
    /// A data file whose length differs from the manifest's.
    #[error("{file} has {found} bytes, the manifest says {expected}")]
    FileLength { file: String, expected: u64, found: u64 },
}

impl From<StateFileError> for io::Error {
    fn from(e: StateFileError) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidData, e)
    }
}

const MAGIC: &[u8; 8] = b"ICHSTATE";
const FORMAT_VERSION: u32 = 1;
const MANIFEST: &str = "state";
const STABLE_DIR: &str = "stable";
const TMP_SUFFIX: &str = ".tmp";
/// The longest principal (29 bytes) and certified data (32 bytes) the IC allows.
const MAX_PRINCIPAL: usize = 29;
const MAX_CERTIFIED_DATA: usize = 32;
/// A wasm32 heap (4 GiB).
const MAX_HEAP: u64 = 4 << 30;
/// The largest manifest: fixed fields, 1000 globals, one entry per stable page; controllers are
/// bounded by the file itself.
const MAX_MANIFEST: u64 = (1 << 20) + stable::MAX_PAGES * 16;

/// Where the manifest says each data file is: the generation that wrote it.
struct Manifest {
    generation: u64,
    wasm: (u64, u64),
    heap: (u64, u64),
    /// Page index → generation of its file.
    pages: BTreeMap<u64, u64>,
}

fn wasm_name(generation: u64) -> String {
    format!("wasm.{generation:016x}")
}

fn heap_name(generation: u64) -> String {
    format!("heap.{generation:016x}")
}

fn page_name(index: u64, generation: u64) -> String {
    format!("{index:016x}.{generation:016x}")
}

/// The generation in a data file's name (`wasm.G`, `heap.G`, `stable/I.G`, or a leftover
/// `….tmp`), if the name is one this format writes.
fn generation_of(name: &str) -> Option<u64> {
    let name = name.strip_suffix(TMP_SUFFIX).unwrap_or(name);
    let (_, generation) = name.rsplit_once('.')?;
    (generation.len() == 16).then(|| u64::from_str_radix(generation, 16).ok()).flatten()
}

impl CanisterState {
    /// Persists the state in `dir` (created if missing). `previous`, the state last written
    /// there, lets it skip the module and heap when they are unchanged and write only the stable
    /// pages that are not the same `Arc` as in `previous` (pages a message wrote since).
    /// The new manifest replaces the old one atomically, then files it no longer names are deleted.
    pub fn write_to(&self, dir: &Path, previous: Option<&CanisterState>) -> io::Result<()> {
        let stable_dir = dir.join(STABLE_DIR);
        fs::create_dir_all(&stable_dir)?;
        let current = read_manifest(dir).ok();
        // A fresh generation, above every file present (even unreadable leftovers), so no new
        // file replaces one the current manifest names.
        let names = list(dir)?.into_iter().chain(list(&stable_dir)?);
        let generation = names.filter_map(|n| generation_of(&n)).chain(current.as_ref().map(|m| m.generation)).max().unwrap_or(0) + 1;
        let old = previous.zip(current);

        let same = |a: &Arc<[u8]>, b: &Arc<[u8]>| Arc::ptr_eq(a, b) || a[..] == b[..];
        let wasm = match &old {
            Some((p, m)) if same(&p.wasm, &self.wasm) && m.wasm.1 == self.wasm.len() as u64 => m.wasm,
            _ => {
                write_file(&dir.join(wasm_name(generation)), &self.wasm)?;
                (generation, self.wasm.len() as u64)
            }
        };
        let heap = match &old {
            Some((p, m)) if same(&p.heap, &self.heap) && m.heap.1 == self.heap.len() as u64 => m.heap,
            _ => {
                write_file(&dir.join(heap_name(generation)), &self.heap)?;
                (generation, self.heap.len() as u64)
            }
        };
        let mut pages = BTreeMap::new();
        for (index, page) in self.stable.pages() {
            let kept = old.as_ref().and_then(|(p, m)| p.stable.page(index).filter(|before| Arc::ptr_eq(before, page)).and(m.pages.get(&index)));
            let page_generation = match kept {
                Some(&g) => g,
                None => {
                    write_file(&stable_dir.join(page_name(index, generation)), page)?;
                    generation
                }
            };
            pages.insert(index, page_generation);
        }
        let manifest = Manifest { generation, wasm, heap, pages };
        write_file(&dir.join(MANIFEST), &self.encode(&manifest))?;
        sync_dir(&stable_dir)?;
        sync_dir(dir)?;
        collect_garbage(dir, &manifest)
    }

    /// Reads the state `write_to` left in `dir`. A corrupt, truncated or oversized file is an
    /// `InvalidData` error carrying a [`StateFileError`]; a missing file is `NotFound`.
    pub fn read_from(dir: &Path) -> io::Result<CanisterState> {
        let bytes = read_bounded(&dir.join(MANIFEST), MAX_MANIFEST, "the state manifest")?;
        let (manifest, mut state) = decode(&bytes)?;
        state.wasm = read_exact_file(&dir.join(wasm_name(manifest.wasm.0)), manifest.wasm.1)?.into();
        state.heap = read_exact_file(&dir.join(heap_name(manifest.heap.0)), manifest.heap.1)?.into();
        let mut pages = Vec::with_capacity(manifest.pages.len());
        for (&index, &generation) in &manifest.pages {
            let page = read_exact_file(&dir.join(STABLE_DIR).join(page_name(index, generation)), stable::PAGE)?;
            pages.push((index, Arc::from(page)));
        }
        state.stable = StableMemory::from_pages(state.stable.size(), pages).ok_or(StateFileError::Invalid("stable page"))?;
        Ok(state)
    }

    fn encode(&self, m: &Manifest) -> Vec<u8> {
        let mut out = Vec::with_capacity(256 + 16 * m.pages.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        for v in [m.generation, m.wasm.0, m.wasm.1, m.heap.0, m.heap.1] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        put_bytes8(&mut out, self.canister_id.as_slice());
        out.extend_from_slice(&(self.controllers.len() as u32).to_le_bytes());
        for c in &self.controllers {
            put_bytes8(&mut out, c.as_slice());
        }
        out.extend_from_slice(&self.cycles.to_le_bytes());
        for v in [self.time, self.timer, self.canister_version, self.wasm_memory_limit, self.random] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        put_bytes8(&mut out, &self.certified_data);
        out.extend_from_slice(&(self.globals.len() as u32).to_le_bytes());
        for g in &self.globals {
            out.push(g.tag());
            out.extend_from_slice(&g.bits().to_le_bytes());
        }
        out.extend_from_slice(&self.stable.size().to_le_bytes());
        out.extend_from_slice(&(m.pages.len() as u64).to_le_bytes());
        for (index, generation) in &m.pages {
            out.extend_from_slice(&index.to_le_bytes());
            out.extend_from_slice(&generation.to_le_bytes());
        }
        let checksum: [u8; 32] = Sha256::digest(&out).into();
        out.extend_from_slice(&checksum);
        out
    }
}

/// A byte string of at most 255 bytes, prefixed with its length.
fn put_bytes8(out: &mut Vec<u8>, bytes: &[u8]) {
    out.push(bytes.len() as u8);
    out.extend_from_slice(bytes);
}

/// Reads fields off the front of the manifest; running out is [`StateFileError::Truncated`].
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], StateFileError> {
        if n > self.0.len() {
            return Err(StateFileError::Truncated);
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N], StateFileError> {
        Ok(self.take(N)?.try_into().expect("take returned N bytes"))
    }
    fn u8(&mut self) -> Result<u8, StateFileError> {
        Ok(self.array::<1>()?[0])
    }
    fn u32(&mut self) -> Result<u32, StateFileError> {
        self.array().map(u32::from_le_bytes)
    }
    fn u64(&mut self) -> Result<u64, StateFileError> {
        self.array().map(u64::from_le_bytes)
    }
    fn u128(&mut self) -> Result<u128, StateFileError> {
        self.array().map(u128::from_le_bytes)
    }
    /// A length-prefixed byte string of at most `limit` bytes.
    fn bytes8(&mut self, limit: usize, what: &'static str) -> Result<&'a [u8], StateFileError> {
        let n = self.u8()? as usize;
        if n > limit {
            return Err(StateFileError::TooLarge { what, found: n as u64, limit: limit as u64 });
        }
        self.take(n)
    }
    fn principal(&mut self) -> Result<Principal, StateFileError> {
        Principal::try_from_slice(self.bytes8(MAX_PRINCIPAL, "a principal's length")?).map_err(|_| StateFileError::Invalid("principal"))
    }
    /// A count of items of `item` bytes each, checked against the bytes left before anything is
    /// allocated for them.
    fn count(&mut self, count: u64, item: usize) -> Result<usize, StateFileError> {
        match usize::try_from(count).ok().and_then(|c| c.checked_mul(item)) {
            Some(bytes) if bytes <= self.0.len() => Ok(count as usize),
            _ => Err(StateFileError::Truncated),
        }
    }
}

fn limit(what: &'static str, found: u64, limit: u64) -> Result<(), StateFileError> {
    if found > limit {
        return Err(StateFileError::TooLarge { what, found, limit });
    }
    Ok(())
}

/// Parses a manifest into the file table and a state without its data files.
fn decode(bytes: &[u8]) -> Result<(Manifest, CanisterState), StateFileError> {
    if bytes.len() < MAGIC.len() || &bytes[..MAGIC.len()] != MAGIC {
        return Err(StateFileError::Magic);
    }
    let mut r = Reader(&bytes[MAGIC.len()..]);
    let version = r.u32()?;
    if version != FORMAT_VERSION {
        return Err(StateFileError::Version(version));
    }
    let body = bytes.len().checked_sub(32).filter(|&n| n >= MAGIC.len() + 4).ok_or(StateFileError::Truncated)?;
    if Sha256::digest(&bytes[..body])[..] != bytes[body..] {
        return Err(StateFileError::Checksum);
    }
    r = Reader(&bytes[MAGIC.len() + 4..body]);
    let generation = r.u64()?;
    let wasm = (r.u64()?, r.u64()?);
    limit("the module's length", wasm.1, MAX_MODULE_BYTES as u64)?;
    let heap = (r.u64()?, r.u64()?);
    limit("the heap's length", heap.1, MAX_HEAP)?;
    if heap.1 % stable::PAGE != 0 {
        return Err(StateFileError::Invalid("heap length (not a whole number of 64 KiB pages)"));
    }
    let canister_id = r.principal()?;
    let n = r.u32()?;
    let n = r.count(n.into(), 1)?;
    let controllers = (0..n).map(|_| r.principal()).collect::<Result<Vec<_>, _>>()?;
    let cycles = r.u128()?;
    let (time, timer, canister_version, wasm_memory_limit, random) = (r.u64()?, r.u64()?, r.u64()?, r.u64()?, r.u64()?);
    let certified_data = r.bytes8(MAX_CERTIFIED_DATA, "the certified data's length")?.to_vec();
    let n = r.u32()?;
    limit("the number of globals", n.into(), MAX_GLOBALS as u64)?;
    let n = r.count(n.into(), 17)?;
    let globals = (0..n)
        .map(|_| {
            let (tag, bits) = (r.u8()?, r.u128()?);
            GlobalValue::from_parts(tag, bits).ok_or(StateFileError::Invalid("global"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let size = r.u64()?;
    limit("the stable memory's size in pages", size, stable::MAX_PAGES)?;
    let n = r.u64()?;
    let n = r.count(n, 16)?;
    let mut pages = BTreeMap::new();
    for _ in 0..n {
        let (index, page_generation) = (r.u64()?, r.u64()?);
        // Strictly ascending indices below the size: one file per page, none past the end.
        if index >= size || pages.last_key_value().is_some_and(|(&last, _)| last >= index) {
            return Err(StateFileError::Invalid("stable page index"));
        }
        pages.insert(index, page_generation);
    }
    if !r.0.is_empty() {
        return Err(StateFileError::Invalid("manifest length"));
    }
    let stable = StableMemory::from_pages(size, []).ok_or(StateFileError::Invalid("stable memory size"))?;
    let empty: Arc<[u8]> = Arc::from(&[][..]);
    let state = CanisterState {
        wasm: empty.clone(),
        heap: empty,
        globals,
        stable,
        timer,
        certified_data,
        controllers,
        canister_id,
        cycles,
        time,
        canister_version,
        wasm_memory_limit,
        random,
    };
    Ok((Manifest { generation, wasm, heap, pages }, state))
}

fn read_manifest(dir: &Path) -> io::Result<Manifest> {
    let bytes = read_bounded(&dir.join(MANIFEST), MAX_MANIFEST, "the state manifest")?;
    Ok(decode(&bytes)?.0)
}

/// A whole file of at most `max` bytes.
fn read_bounded(path: &Path, max: u64, what: &'static str) -> io::Result<Vec<u8>> {
    let mut file = File::open(path)?;
    let len = file.metadata()?.len();
    limit(what, len, max)?;
    let mut bytes = Vec::with_capacity(len as usize);
    file.read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// A data file that must have exactly `expected` bytes.
fn read_exact_file(path: &Path, expected: u64) -> io::Result<Vec<u8>> {
    let mut file = File::open(path)?;
    let found = file.metadata()?.len();
    let file_name = || path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    if found != expected {
        return Err(StateFileError::FileLength { file: file_name(), expected, found }.into());
    }
    let mut bytes = vec![0u8; expected as usize];
    file.read_exact(&mut bytes)?;
    Ok(bytes)
}

/// Writes `bytes` under a temporary name, flushes it to disk, then renames it into place, so a
/// file with its final name is always complete.
fn write_file(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(TMP_SUFFIX);
    let tmp = PathBuf::from(tmp);
    let mut file = File::create(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    fs::rename(&tmp, path)
}

/// Makes the renames in `dir` durable.
fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

fn list(dir: &Path) -> io::Result<Vec<String>> {
    let mut names = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_file() {
            names.push(entry.file_name().to_string_lossy().into_owned());
        }
    }
    Ok(names)
}

/// Deletes the data files (and leftover temporary files) of this format that `manifest` does
/// not name; other files in the directory are left alone.
fn collect_garbage(dir: &Path, manifest: &Manifest) -> io::Result<()> {
    let keep: HashSet<String> = [wasm_name(manifest.wasm.0), heap_name(manifest.heap.0)].into();
    let manifest_tmp = format!("{MANIFEST}{TMP_SUFFIX}");
    for name in list(dir)? {
        let ours = ((name.starts_with("wasm.") || name.starts_with("heap.")) && generation_of(&name).is_some()) || name == manifest_tmp;
        if ours && !keep.contains(&name) {
            fs::remove_file(dir.join(&name))?;
        }
    }
    let keep: HashSet<String> = manifest.pages.iter().map(|(&i, &g)| page_name(i, g)).collect();
    let stable_dir = dir.join(STABLE_DIR);
    for name in list(&stable_dir)? {
        if generation_of(&name).is_some() && !keep.contains(&name) {
            fs::remove_file(stable_dir.join(&name))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh, empty directory for one test.
    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("ic-host-persist-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn sample() -> CanisterState {
        let mut stable = StableMemory::default();
        stable.grow(10);
        for page in [0u64, 3, 9] {
            stable.write(page * stable::PAGE + 7, &[page as u8 + 1; 100]);
        }
        let mut heap = vec![0u8; 2 * stable::PAGE as usize];
        heap[70_000] = 42;
        CanisterState {
            wasm: Arc::from(&b"\0asm\x01\0\0\0"[..]),
            heap: heap.into(),
            globals: vec![
                GlobalValue::I32(7),
                GlobalValue::I64(u64::MAX),
                GlobalValue::F32(f32::NAN.to_bits() | 1),
                GlobalValue::F64(2.5f64.to_bits()),
                GlobalValue::V128(u128::MAX - 1),
            ],
            stable,
            timer: 5,
            certified_data: b"certified".to_vec(),
            controllers: vec![Principal::anonymous(), Principal::self_authenticating(b"x")],
            canister_id: Principal::from_text("lxzze-o7777-77777-aaaaa-cai").unwrap(),
            cycles: u128::MAX / 3,
            time: 1_767_225_600_000_000_000,
            canister_version: 12,
            wasm_memory_limit: 3 << 30,
            random: 0xdead_beef,
        }
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut n = list(dir).unwrap();
        n.sort();
        n
    }

    fn kind(e: &io::Error) -> Option<&StateFileError> {
        e.get_ref().and_then(|e| e.downcast_ref::<StateFileError>())
    }

    #[test]
    fn round_trip_then_incremental_write() {
        let dir = scratch("incremental");
        let first = sample();
        first.write_to(&dir, None).unwrap();
        assert!(CanisterState::read_from(&dir).unwrap() == first);
        let g1 = "0000000000000001";
        assert_eq!(names(&dir), [format!("heap.{g1}"), "state".into(), format!("wasm.{g1}")]);

        // One stable page and the heap change; the module and the other pages stay on disk.
        let mut second = first.clone();
        second.stable.write(3 * stable::PAGE, b"changed");
        let mut heap = second.heap.to_vec();
        heap[0] = 1;
        second.heap = heap.into();
        second.canister_version += 1;
        second.write_to(&dir, Some(&first)).unwrap();
        let g2 = "0000000000000002";
        assert_eq!(names(&dir), [format!("heap.{g2}"), "state".into(), format!("wasm.{g1}")]);
        let pages = [format!("0000000000000000.{g1}"), format!("0000000000000003.{g2}"), format!("0000000000000009.{g1}")];
        assert_eq!(names(&dir.join(STABLE_DIR)), pages);
        assert!(CanisterState::read_from(&dir).unwrap() == second);

        // Without `previous` everything is written again.
        second.write_to(&dir, None).unwrap();
        assert!(names(&dir.join(STABLE_DIR)).iter().all(|n| n.ends_with("0000000000000003")));
        assert!(CanisterState::read_from(&dir).unwrap() == second);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn an_interrupted_write_leaves_the_previous_state() {
        let dir = scratch("interrupted");
        let state = sample();
        state.write_to(&dir, None).unwrap();
        // What a crash before the manifest's rename leaves: new data files, a partial manifest.
        fs::write(dir.join("heap.0000000000000063"), b"new heap").unwrap();
        fs::write(dir.join("heap.0000000000000064.tmp"), b"half").unwrap();
        fs::write(dir.join(STABLE_DIR).join("0000000000000000.0000000000000063"), b"new page").unwrap();
        fs::write(dir.join("state.tmp"), b"ICHSTATE partial").unwrap();
        fs::write(dir.join("notes.txt"), b"not ours").unwrap();
        assert!(CanisterState::read_from(&dir).unwrap() == state);
        // The next write takes a generation above the leftovers and deletes them.
        state.write_to(&dir, Some(&state)).unwrap();
        assert_eq!(names(&dir), ["heap.0000000000000001", "notes.txt", "state", "wasm.0000000000000001"]);
        assert_eq!(names(&dir.join(STABLE_DIR)).len(), 3);
        assert_eq!(read_manifest(&dir).unwrap().generation, 0x65);
        assert!(CanisterState::read_from(&dir).unwrap() == state);
        fs::remove_dir_all(&dir).unwrap();
    }

    /// Rewrites the manifest with `edit` applied and a valid checksum.
    fn forge(dir: &Path, edit: impl FnOnce(&mut Vec<u8>)) {
        let path = dir.join(MANIFEST);
        let mut bytes = fs::read(&path).unwrap();
        bytes.truncate(bytes.len() - 32);
        edit(&mut bytes);
        let checksum: [u8; 32] = Sha256::digest(&bytes).into();
        bytes.extend_from_slice(&checksum);
        fs::write(path, bytes).unwrap();
    }

    #[test]
    fn corrupt_files_are_typed_errors() {
        let dir = scratch("corrupt");
        let state = sample();
        let fresh = |dir: &Path| {
            let _ = fs::remove_dir_all(dir);
            state.write_to(dir, None).unwrap();
        };
        let manifest = dir.join(MANIFEST);
        let read = |dir: &Path| CanisterState::read_from(dir).err().expect("reading must fail");

        fresh(&dir);
        let mut bytes = fs::read(&manifest).unwrap();
        bytes[60] ^= 1;
        fs::write(&manifest, &bytes).unwrap();
        assert_eq!(kind(&read(&dir)), Some(&StateFileError::Checksum));

        fresh(&dir);
        let bytes = fs::read(&manifest).unwrap();
        fs::write(&manifest, &bytes[..20]).unwrap();
        assert_eq!(kind(&read(&dir)), Some(&StateFileError::Truncated));
        fs::write(&manifest, &bytes[..bytes.len() - 1]).unwrap();
        assert_eq!(kind(&read(&dir)), Some(&StateFileError::Checksum));
        fs::write(&manifest, b"GARBAGE!").unwrap();
        assert_eq!(kind(&read(&dir)), Some(&StateFileError::Magic));
        fs::write(&manifest, [&MAGIC[..], &2u32.to_le_bytes()].concat()).unwrap();
        assert_eq!(kind(&read(&dir)), Some(&StateFileError::Version(2)));

        // Checksummed but impossible: a 5 GiB heap, a heap not in pages, a page count beyond the
        // file, a page past the size, an unknown global type.
        let heap_len = MAGIC.len() + 4 + 4 * 8;
        for (at, value, expected) in [
            (heap_len, 5u64 << 30, StateFileError::TooLarge { what: "the heap's length", found: 5 << 30, limit: MAX_HEAP }),
            (heap_len, 100, StateFileError::Invalid("heap length (not a whole number of 64 KiB pages)")),
        ] {
            fresh(&dir);
            forge(&dir, |b| b[at..at + 8].copy_from_slice(&value.to_le_bytes()));
            assert_eq!(kind(&read(&dir)), Some(&expected));
        }
        // The tail of the manifest: size, count, then (index, generation) per page.
        let tail = 8 + 8 + 3 * 16;
        fresh(&dir);
        forge(&dir, |b| {
            let at = b.len() - tail + 8;
            b[at..at + 8].copy_from_slice(&u64::MAX.to_le_bytes());
        });
        assert_eq!(kind(&read(&dir)), Some(&StateFileError::Truncated));
        fresh(&dir);
        forge(&dir, |b| {
            let at = b.len() - 16;
            b[at..at + 8].copy_from_slice(&10u64.to_le_bytes());
        });
        assert_eq!(kind(&read(&dir)), Some(&StateFileError::Invalid("stable page index")));
        fresh(&dir);
        forge(&dir, |b| {
            let at = b.len() - tail - 17;
            b[at] = 9;
        });
        assert_eq!(kind(&read(&dir)), Some(&StateFileError::Invalid("global")));

        // Data files: a truncated heap, a missing page.
        fresh(&dir);
        let heap = dir.join(heap_name(1));
        fs::write(&heap, vec![0u8; 100]).unwrap();
        assert_eq!(kind(&read(&dir)), Some(&StateFileError::FileLength { file: heap_name(1), expected: 2 * stable::PAGE, found: 100 }));
        fresh(&dir);
        fs::remove_file(dir.join(STABLE_DIR).join(page_name(3, 1))).unwrap();
        assert_eq!(read(&dir).kind(), io::ErrorKind::NotFound);
        fs::remove_dir_all(&dir).unwrap();
    }
}
