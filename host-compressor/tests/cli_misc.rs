//! The demo model, `inspect`, errors and exit codes of the `walsh` command.

use std::process::Command;

fn walsh(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_walsh")).args(args).output().expect("run walsh")
}

fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("walsh-cli-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn demo_model_is_deterministic_and_runs() {
    let dir = temp_dir("demo");
    let a = dir.join("a.walsh");
    let b = dir.join("b.walsh");
    for path in [&a, &b] {
        let out = walsh(&["demo-model", "-o", path.to_str().unwrap()]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap(), "same seed, same bytes");
    let tokenizer = dir.join("a.tokenizer.json");
    let run = |seed: &str| {
        let out = walsh(&[
            "generate",
            a.to_str().unwrap(),
            "--tokenizer",
            tokenizer.to_str().unwrap(),
            "--prompt",
            "Hello",
            "--max-tokens",
            "30",
            "--temperature",
            "0.9",
            "--top-k",
            "40",
            "--top-p",
            "0.95",
            "--seed",
            seed,
            "--json",
        ]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        (v["ids"].as_array().unwrap().len(), v["text"].as_str().unwrap().to_string())
    };
    let (n, text) = run("7");
    assert_eq!(n, 30);
    assert_eq!(run("7").1, text, "same seed, same text");
    assert_ne!(run("8").1, text, "another seed, another text");
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn inspect_reports_records_and_totals() {
    let Some(data) = test_support::testdata() else { return };
    let out = walsh(&["inspect", data.join("char-tiny/model.walsh").to_str().unwrap(), "--json"]);
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["version"], 4);
    assert_eq!(v["config"]["n_embd"], 64);
    let records = v["records"].as_array().unwrap();
    // R, E, then per layer N + 4×(B,S) + H + h + N + 3×(B,S), then the final N.
    assert_eq!(records.len(), 2 + 2 * (1 + 8 + 2 + 1 + 6) + 1);
    let wq = records.iter().find(|r| r["name"] == "layers.0.attention.wq.weight").unwrap();
    assert_eq!(wq["kind"], "B");
    assert_eq!(wq["shape"], serde_json::json!([8, 8, 8]));
    let sparsity = wq["sparsity"].as_f64().unwrap();
    assert!(sparsity > 0.1 && sparsity < 0.5, "{sparsity}");
    assert!(v.get("runnable_error").is_none());
    let text = walsh(&["inspect", data.join("author-256/model-v2.walsh").to_str().unwrap()]);
    let text = String::from_utf8(text.stdout).unwrap();
    assert!(text.contains("version 2") && text.contains("runnable: yes"), "{text}");
}

#[test]
fn bad_input_exits_2_with_a_message() {
    let dir = temp_dir("bad");
    let junk = dir.join("junk.walsh");
    std::fs::write(&junk, b"PK\x03\x04 not a model").unwrap();
    for args in [
        vec!["inspect", junk.to_str().unwrap()],
        vec!["generate", junk.to_str().unwrap(), "--tokenizer", "x.json", "--prompt", "a"],
        vec!["inspect", "/nonexistent/file.walsh"],
    ] {
        let out = walsh(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.starts_with("error: "), "{stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
    let model = dir.join("demo.walsh");
    assert!(walsh(&["demo-model", "-o", model.to_str().unwrap()]).status.success());
    let tok = dir.join("demo.tokenizer.json");
    for (extra, needle) in [
        (vec!["--temperature", "-1"], "temperature"),
        (vec!["--temperature", "NaN"], "temperature"),
        (vec!["--top-k", "0"], "top_k"),
        (vec!["--top-p", "1.5"], "top_p"),
        (vec!["--max-tokens", "0"], "max_tokens"),
    ] {
        let mut args = vec!["generate", model.to_str().unwrap(), "--tokenizer", tok.to_str().unwrap(), "--prompt", "hi"];
        args.extend(extra);
        let out = walsh(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(String::from_utf8_lossy(&out.stderr).contains(needle), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    // The prompt "€" has no character in the demo vocabulary: nothing is left to run.
    let out = walsh(&["generate", model.to_str().unwrap(), "--tokenizer", tok.to_str().unwrap(), "--prompt", "€"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("dropped") && stderr.contains("empty"), "{stderr}");
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn meta_pkl_and_converted_tokenizer_agree() {
    let Some(data) = test_support::testdata() else { return };
    let model = data.join("char-tiny/model.walsh");
    let run = |tokenizer: &str| {
        let out = walsh(&[
            "generate",
            model.to_str().unwrap(),
            "--tokenizer",
            tokenizer,
            "--prompt",
            "To be",
            "--max-tokens",
            "5",
            "--temperature",
            "0",
            "--json",
        ]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    let pkl = data.join("char-tiny/meta.pkl");
    let from_pkl = run(pkl.to_str().unwrap());
    assert!(from_pkl.contains("\"prompt_ids\":[32,53,1,40,43]"), "{from_pkl}");
}
