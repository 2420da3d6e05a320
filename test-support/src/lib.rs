//! Test helpers: where the shared reference data lives, and readers for its files.
//!
//! The data sits beside the repository in `../shared/testdata`. CI always has it, so a missing
//! directory fails there (`CI` set); a fresh clone without `../shared` skips with a message.

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// The repository root (this crate lives one level below it).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("test-support sits inside the repository").to_path_buf()
}

/// `../shared/testdata`, or `None` (after printing why) when `../shared` is absent outside CI.
///
/// Panics when running in CI, or when `../shared` exists but has no testdata: then the data is
/// expected and its absence is an error, not a reason to skip.
pub fn testdata() -> Option<PathBuf> {
    let shared = repo_root().join("../shared");
    let dir = shared.join("testdata");
    if dir.is_dir() {
        return Some(dir);
    }
    if std::env::var_os("CI").is_some() || shared.exists() {
        panic!("reference data missing: {} does not exist (it must sit beside the repository)", dir.display());
    }
    eprintln!("SKIPPED: {} is absent (a fresh clone without ../shared); reference tests did not run", dir.display());
    None
}

/// Every reference set, with the tokenizer file each uses.
pub const SETS: [&str; 5] = ["char-tiny", "gpt2-small", "gpt2-bench", "author-256", "author-512"];

/// The tokenizer a set ships: `tokenizer.json` if present, else the char `meta.pkl`.
pub fn tokenizer_path(set_dir: &Path) -> PathBuf {
    let json = set_dir.join("tokenizer.json");
    if json.exists() { json } else { set_dir.join("meta.pkl") }
}

#[derive(Debug, Deserialize)]
pub struct Reference {
    pub prompts: Vec<PromptReference>,
}

#[derive(Debug, Deserialize)]
pub struct PromptReference {
    pub prompt: String,
    pub prompt_ids: Vec<u32>,
    pub walsh: Continuation,
}

#[derive(Debug, Deserialize)]
pub struct Continuation {
    pub greedy_ids: Vec<u32>,
    pub decoded_text: String,
    pub steps: Vec<StepReference>,
}

#[derive(Debug, Deserialize)]
pub struct StepReference {
    pub top_ids: Vec<u32>,
    pub top_values: Vec<f64>,
    pub l2_norm: f64,
    pub argmax: u32,
}

pub fn reference(set_dir: &Path) -> Reference {
    let path = set_dir.join("reference.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A little-endian float32 `.npy` array: its shape and values.
pub fn read_npy_f32(path: &Path) -> (Vec<usize>, Vec<f32>) {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(&bytes[..6], b"\x93NUMPY", "{} is not .npy", path.display());
    let (header_len, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        _ => (u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize, 12),
    };
    let header = std::str::from_utf8(&bytes[start..start + header_len]).expect("npy header is text");
    assert!(header.contains("'descr': '<f4'"), "expected little-endian float32, header {header}");
    assert!(header.contains("'fortran_order': False"), "expected C order, header {header}");
    let shape_text = header.split("'shape': (").nth(1).and_then(|s| s.split(')').next()).expect("npy shape");
    let shape: Vec<usize> = shape_text.split(',').filter(|s| !s.trim().is_empty()).map(|s| s.trim().parse().expect("npy dim")).collect();
    let values: Vec<f32> = bytes[start + header_len..].chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
    assert_eq!(values.len(), shape.iter().product::<usize>(), "npy data length");
    (shape, values)
}

/// The Walsh canister wasm: `WALSH_CANISTER_WASM` if set (scripts/test.sh builds it first and sets
/// it), otherwise built once here, in its own target directory so that it never waits for the
/// lock of the build running the tests.
pub fn canister_wasm() -> &'static [u8] {
    static WASM: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    WASM.get_or_init(|| {
        if let Some(path) = std::env::var_os("WALSH_CANISTER_WASM") {
            let path = PathBuf::from(path);
            return std::fs::read(&path).unwrap_or_else(|e| panic!("WALSH_CANISTER_WASM={}: {e}", path.display()));
        }
        let root = repo_root();
        let target_dir = root.join("target/canister-tests");
        let status = std::process::Command::new(env!("CARGO"))
            .current_dir(&root)
            .args(["build", "-p", "walsh-canister", "--lib", "--target", "wasm32-unknown-unknown", "--profile", "canister", "--target-dir"])
            .arg(&target_dir)
            .env_remove("RUSTFLAGS")
            .env_remove("CARGO_ENCODED_RUSTFLAGS")
            .status()
            .expect("run cargo to build the canister");
        assert!(status.success(), "building the canister failed");
        std::fs::read(target_dir.join("wasm32-unknown-unknown/canister/walsh_canister.wasm")).expect("canister wasm")
    })
}

/// A directory under the system's temp dir for one test, named by the test and this process
/// (so parallel runs do not meet), emptied when made and removed when dropped.
pub struct Scratch(PathBuf);

impl Scratch {
    pub fn new(name: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
        Scratch(dir)
    }

    /// A path inside the directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    /// The names of the files in it, sorted (to check what a command left behind).
    pub fn files(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(&self.0).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        names.sort();
        names
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
