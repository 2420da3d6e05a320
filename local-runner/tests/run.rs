//! `walsh-local --json` with a reference model: the canister on the embedded host reproduces the
//! reference greedy continuation, and reports its calls and the decode cost per token.

use std::path::PathBuf;
use std::process::Command;

/// Where the canister wasm is, for the binary's `--wasm` flag.
fn canister_wasm() -> PathBuf {
    let wasm = test_support::canister_wasm();
    let path = std::env::temp_dir().join(format!("walsh-local-test-{}.wasm", std::process::id()));
    std::fs::write(&path, wasm).unwrap();
    path
}

#[test]
fn json_run_reproduces_the_reference() {
    let Some(data) = test_support::testdata() else { return };
    let dir = data.join("char-tiny");
    let reference = test_support::reference(&dir).prompts.remove(0);
    let out = Command::new(env!("CARGO_BIN_EXE_walsh-local"))
        .arg("--wasm")
        .arg(canister_wasm())
        .arg("--model")
        .arg(dir.join("model.walsh"))
        .arg("--tokenizer")
        .arg(dir.join("meta.pkl"))
        .args(["--prompt", &reference.prompt, "--max-tokens", "40", "--temperature", "0", "--json"])
        .output()
        .expect("run walsh-local");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    let ids: Vec<u32> = v["ids"].as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect();
    assert_eq!(ids, reference.walsh.greedy_ids);
    assert_eq!(v["text"], reference.walsh.decoded_text);
    let calls = v["calls"].as_array().unwrap();
    let methods: Vec<&str> = calls.iter().map(|c| c["method"].as_str().unwrap()).collect();
    for m in ["install", "upload_start", "upload_chunk", "upload_finish", "session_start"] {
        assert!(methods.contains(&m), "{methods:?}");
    }
    assert!(calls.iter().all(|c| c["instructions"].as_u64().is_some()));
    assert!(v["decode_instructions_per_token"].as_u64().unwrap() > 0);
}
