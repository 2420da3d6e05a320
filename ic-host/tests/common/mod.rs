//! Test helpers: the test canister's wasm (built once per test binary, for wasm32, in its own
//! target directory so it never contends with the outer build) and the scenario backends.

#![allow(dead_code)]

pub mod backend;
pub mod replica;
pub mod scenarios;

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

pub fn test_canister_wasm() -> &'static [u8] {
    static WASM: OnceLock<Vec<u8>> = OnceLock::new();
    WASM.get_or_init(|| {
        let crate_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("test-canister");
        let target_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/test-canister");
        let status = Command::new(env!("CARGO"))
            .args(["build", "--release", "--target", "wasm32-unknown-unknown", "--manifest-path"])
            .arg(crate_dir.join("Cargo.toml"))
            .arg("--target-dir")
            .arg(&target_dir)
            .env_remove("RUSTFLAGS")
            .env_remove("CARGO_ENCODED_RUSTFLAGS")
            .status()
            .expect("run cargo to build the test canister");
        assert!(status.success(), "building the test canister failed");
        std::fs::read(target_dir.join("wasm32-unknown-unknown/release/ic_host_test_canister.wasm")).expect("test canister wasm")
    })
}
