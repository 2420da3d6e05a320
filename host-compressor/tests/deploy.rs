//! Deploy, upload and call with the real clients against `ic-host serve` (issue 13):
//!
//! 1. `icp deploy` (icp-cli 1.5) from the repository's icp.yaml installs the gzipped module in one
//!    `install_code`; `walsh upload` puts gpt2-small's model and tokenizer in; `walsh generate
//!    --canister` returns the reference's greedy ids (sessions and the query).
//! 2. An upload killed midway and rerun resumes: the calls that reached the replica show that no
//!    byte before the offset `upload_status` reported was sent again; the model is then active and
//!    generates the reference's ids.
//! 3. An identity that is not a controller gets a one-line error and exit status 2, and the active
//!    model stays; so do the other failures (no such canister, no walsh interface, unreachable
//!    network, a file the canister rejects, anonymous).
//! 4. `verify_single_user.sh "ROMEO:" 20` through icp-cli with char-tiny's model and meta.pkl:
//!    exactly 20 tokens, counted and printed.
//!
//! The server runs in-process behind a recording proxy (tests/deploy/proxy.rs), so every call the
//! canister is sent is seen. icp-cli: `ICP_BIN`, `icp` on PATH, or the npm package
//! `@icp-sdk/icp-cli-linux-x64@1.5.0` installed globally (.ci/run installs it). The deployed module is
//! `target/canister/walsh_canister.wasm.gz` (scripts/build_canister.sh; scripts/test.sh builds it).
//! Without icp-cli or the module these tests print SKIPPED, except in CI, where they fail.

#[path = "deploy/proxy.rs"]
mod proxy;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use candid::{Encode, Principal};
use host_compressor::ic::api::{BlobKind, UploadStatus};
use ic_agent::Agent;
use ic_agent::identity::Secp256k1Identity;
use ic_host::http::server::{RunningServer, ServeConfig, start};
use proxy::{Kind, Proxy};
use serde_json::Value;
use sha2::Digest;

const CHUNK: u64 = 1_900_000;
/// A throwaway secp256k1 key (PKCS#8, as icp-cli writes them), for the controller of test 2.
const CONTROLLER_PEM: &str = "-----BEGIN PRIVATE KEY-----\nMIGEAgEAMBAGByqGSM49AgEGBSuBBAAKBG0wawIBAQQgmpocoXVrsB/rnGwpCFLm\n47YkfPW6aXJWxoMvPpNg6KWhRANCAASatEJMt61fasPoVEbgrc43uvwrPm0f4NhC\ncW733/K/iY/S2kKOtVpjzaugsIndW27O8lyH3Jm/MVYRciBA5rVN\n-----END PRIVATE KEY-----\n";

fn skip_or_fail(why: &str) -> Option<()> {
    if std::env::var_os("CI").is_some() {
        panic!("{why}");
    }
    eprintln!("SKIPPED: {why}");
    None
}

fn icp_bin() -> Option<PathBuf> {
    host_compressor::ic::identity::find_icp().filter(|p| p.is_file()).or_else(|| {
        skip_or_fail("icp-cli is not installed (npm install -g @icp-sdk/icp-cli-linux-x64@1.5.0, or set ICP_BIN)")?;
        None
    })
}

fn gz_module() -> Option<PathBuf> {
    let path = std::env::var_os("WALSH_CANISTER_WASM")
        .map(|p| PathBuf::from(format!("{}.gz", PathBuf::from(p).display())))
        .filter(|p| p.is_file())
        .unwrap_or_else(|| test_support::repo_root().join("target/canister/walsh_canister.wasm.gz"));
    if path.is_file() {
        return Some(path);
    }
    skip_or_fail(&format!("{} is missing: run scripts/build_canister.sh", path.display()))?;
    None
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("deploy-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn server() -> RunningServer {
    start(ServeConfig { port: 0, state_dir: None, controller: None }).expect("ic-host serve starts")
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

fn stderr_of(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn ok(what: &str, out: Output) -> String {
    assert!(out.status.success(), "{what} failed ({}):\nstdout: {}\nstderr: {}", out.status, String::from_utf8_lossy(&out.stdout), stderr_of(&out));
    String::from_utf8(out.stdout).unwrap()
}

/// A failure as the issue asks for it: exit status 2 and one error line, `error: …`, naming
/// `reason`, last on stderr (after any progress lines).
fn refused(what: &str, out: &Output, reason: &str) -> String {
    let stderr = stderr_of(out);
    assert_eq!(out.status.code(), Some(2), "{what}: exit status 2 expected, got {}: {stderr}", out.status);
    let errors: Vec<&str> = stderr.lines().filter(|l| l.contains("error")).collect();
    assert_eq!(errors.len(), 1, "{what}: one error line expected on stderr, got {stderr:?}");
    assert!(stderr.trim_end().ends_with(errors[0]), "{what}: the error comes last: {stderr:?}");
    assert!(errors[0].starts_with("error: ") && errors[0].contains(reason), "{what}: {:?} does not say {reason:?}", errors[0]);
    assert!(out.stdout.is_empty(), "{what}: nothing on stdout: {}", String::from_utf8_lossy(&out.stdout));
    errors[0].to_string()
}

struct Icp {
    bin: PathBuf,
    home: PathBuf,
}

impl Icp {
    fn command(&self, dir: &Path) -> Command {
        let mut c = Command::new(&self.bin);
        c.current_dir(dir).env("ICP_HOME", &self.home).env("DO_NOT_TRACK", "1").stdin(Stdio::null());
        c
    }

    fn run(&self, dir: &Path, args: &[&str]) -> String {
        ok(&format!("icp {}", args.join(" ")), self.command(dir).args(args).output().expect("run icp"))
    }

    fn new_identity(&self, name: &str) -> Principal {
        self.run(Path::new("."), &["identity", "new", name, "--storage", "plaintext"]);
        let pem = self.home.join("identity/keys").join(format!("{name}.pem"));
        Principal::from_text(self.run(Path::new("."), &["identity", "principal", "--identity", name]).trim())
            .unwrap_or_else(|e| panic!("{}: {e}", pem.display()))
    }
}

fn walsh(dir: &Path, icp_home: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_walsh")).current_dir(dir).env("ICP_HOME", icp_home).args(args).stdin(Stdio::null()).output().expect("run walsh")
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

async fn agent(url: &str, pem: &[u8]) -> Agent {
    let identity = Secp256k1Identity::from_pem(pem).unwrap();
    let agent = Agent::builder().with_url(url).with_identity(identity).build().unwrap();
    agent.fetch_root_key().await.unwrap();
    agent
}

async fn upload_status(agent: &Agent, canister: Principal, kind: BlobKind) -> UploadStatus {
    let reply = agent.query(&canister, "upload_status").with_arg(Encode!(&kind).unwrap()).call().await.unwrap();
    candid::decode_one(&reply).unwrap()
}

fn u32s(v: &Value) -> Vec<u32> {
    v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect()
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(sha2::Sha256::digest(bytes))
}

/// `walsh generate --canister … --temperature 0 --json` for each reference prompt (with `--query`
/// too): the reference's prompt ids and greedy ids.
fn generate_matches_reference(dir: &Path, icp_home: &Path, canister: &str, network: &str, set: &Path, tokens: usize) {
    let reference = test_support::reference(set);
    for (i, prompt) in reference.prompts.iter().enumerate() {
        let n = tokens.to_string();
        let mut args = vec![
            "generate",
            "--canister",
            canister,
            "--network",
            network,
            "--prompt",
            &prompt.prompt,
            "--max-tokens",
            &n,
            "--temperature",
            "0",
            "--json",
        ];
        if i == 0 {
            args.push("--query");
        }
        let out: Value = serde_json::from_str(&ok("walsh generate --canister", walsh(dir, icp_home, &args))).unwrap();
        assert_eq!(u32s(&out["prompt_ids"]), prompt.prompt_ids, "prompt ids of {:?}", prompt.prompt);
        assert_eq!(
            u32s(&out["ids"]),
            prompt.walsh.greedy_ids[..tokens],
            "greedy ids of {:?} ({})",
            prompt.prompt,
            if i == 0 { "query" } else { "session" }
        );
        assert_eq!(out["stop_reason"], "max_tokens");
        assert!(out["instructions_per_token"].as_u64().unwrap() > 0);
    }
}

#[test]
fn icp_deploy_then_walsh_upload_generate_and_verify_single_user() {
    let (Some(icp_bin), Some(gz)) = (icp_bin(), gz_module()) else { return };
    let Some(testdata) = test_support::testdata() else { return };
    let server = server();
    let proxy = Proxy::start(&server.url);
    let work = temp_dir("icp");
    let icp = Icp { bin: icp_bin, home: work.join("icp-home") };
    let dev = icp.new_identity("dev");
    icp.run(&work, &["identity", "default", "dev"]);

    // The repository's icp.yaml, with the local network's URL pointing at this server (the one change).
    let yaml = std::fs::read_to_string(test_support::repo_root().join("icp.yaml")).unwrap();
    assert_eq!(yaml.matches("url: http://127.0.0.1:4943").count(), 1, "icp.yaml names the local network once");
    let project = work.join("project");
    std::fs::create_dir_all(project.join("target/canister")).unwrap();
    std::fs::write(project.join("icp.yaml"), yaml.replace("url: http://127.0.0.1:4943", &format!("url: {}", proxy.url))).unwrap();
    std::fs::copy(&gz, project.join("target/canister/walsh_canister.wasm.gz")).unwrap();
    let module = std::fs::read(&gz).unwrap();

    // 1. icp deploy: one install_code with the gzipped module, no chunked install.
    icp.run(&project, &["deploy"]);
    let ids: Value = serde_json::from_slice(&std::fs::read(project.join(".icp/data/mappings/local.ids.json")).unwrap()).unwrap();
    let canister = Principal::from_text(ids["backend"].as_str().unwrap()).unwrap();
    let management: Vec<_> = proxy.log().into_iter().filter(|s| s.canister == Principal::management_canister()).collect();
    let installs: Vec<_> = management.iter().filter_map(|s| s.install.clone()).collect();
    assert_eq!(installs.len(), 1, "one install_code: {:?}", management.iter().map(|s| &s.method).collect::<Vec<_>>());
    assert_eq!(installs[0].0, "Install");
    assert!(
        installs[0].1 == module,
        "install_code carried the gzipped module byte for byte ({} bytes sent, file {})",
        installs[0].1.len(),
        module.len()
    );
    assert!(module.starts_with(&[0x1f, 0x8b]) && module.len() < 2 * 1024 * 1024);
    assert!(!management.iter().any(|s| s.method == "upload_chunk" || s.method == "install_chunked_code"), "no chunked install");
    let status = icp.run(&project, &["canister", "status", "backend"]);
    assert!(status.contains("Running") || status.to_lowercase().contains("running"), "canister status: {status}");
    if String::from_utf8_lossy(&flate2_decompress(&module)).contains("icp:public candid:service") {
        let did = icp.run(&project, &["canister", "metadata", "backend", "candid:service"]);
        assert!(did.contains("upload_chunk") && did.contains("session_start"), "candid:service metadata: {did}");
    }

    // walsh upload by the canister's name in the project, as icp-cli's default identity (dev).
    let set = testdata.join("gpt2-small");
    let model = set.join("model.walsh");
    let tokenizer = set.join("tokenizer.json");
    let model_bytes = std::fs::read(&model).unwrap();
    proxy.clear();
    let started = Instant::now();
    let out = ok(
        "walsh upload",
        walsh(
            &project,
            &icp.home,
            &[
                "upload",
                model.to_str().unwrap(),
                "--tokenizer",
                tokenizer.to_str().unwrap(),
                "--canister",
                "backend",
                "--network",
                &proxy.url,
                "--json",
            ],
        ),
    );
    let seconds = started.elapsed().as_secs_f64();
    let report: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["identity"], dev.to_text());
    assert_eq!(report["active"]["model_sha256"], sha256_hex(&model_bytes));
    assert_eq!(report["active"]["tokenizer"]["sha256"], sha256_hex(&std::fs::read(&tokenizer).unwrap()));
    let sent: u64 = proxy.log().iter().filter_map(|s| s.chunk).map(|(_, _, n)| n as u64).sum();
    let total = model_bytes.len() as u64 + std::fs::metadata(&tokenizer).unwrap().len();
    assert!(sent >= total, "every byte reached the canister ({sent} of {total})");
    eprintln!(
        "gpt2-small upload: {total} bytes in {seconds:.2} s wall ({:.1} MB/s), {} upload_chunk calls: {}",
        total as f64 / seconds / 1e6,
        proxy.log().iter().filter(|s| s.chunk.is_some()).count(),
        report["blobs"]
    );
    generate_matches_reference(&project, &icp.home, "backend", &proxy.url, &set, 40);

    // 3. Not a controller: one line, status 2, and the active model stays.
    icp.new_identity("stranger");
    let char_tiny = testdata.join("char-tiny");
    let tiny_model = char_tiny.join("model.walsh");
    let out = walsh(
        &project,
        &icp.home,
        &["upload", tiny_model.to_str().unwrap(), "--canister", "backend", "--network", &proxy.url, "--identity", "stranger"],
    );
    refused("a stranger's upload", &out, "is not a controller of canister");
    let rt = runtime();
    rt.block_on(async {
        let stranger_pem = std::fs::read(icp.home.join("identity/keys/stranger.pem")).unwrap();
        let stranger = agent(&proxy.url, &stranger_pem).await;
        // The canister refuses it too, whatever the client checks: its inspect_message turns the
        // ingress message away before it runs (the IC's reject IC0406, CanisterReject).
        let refused = stranger.update(&canister, "upload_start").with_arg(Encode!(&BlobKind::Model).unwrap()).call_and_wait().await;
        match refused {
            Err(ic_agent::AgentError::UncertifiedReject { reject, .. }) => {
                assert_eq!(reject.reject_code, ic_agent::agent::RejectCode::CanisterReject, "{reject:?}");
                assert_eq!(reject.error_code.as_deref(), Some("IC0406"), "{reject:?}");
            }
            other => panic!("a stranger's upload_start was not refused by inspect_message: {other:?}"),
        }
        let status = upload_status(&stranger, canister, BlobKind::Model).await;
        assert_eq!(status.active_sha256.map(hex::encode), Some(sha256_hex(&model_bytes)), "the active model is unchanged");
        assert!(!status.in_progress);
    });
    generate_matches_reference(&project, &icp.home, "backend", &proxy.url, &set, 8);

    // The other failures, each one line with exit status 2.
    let url = proxy.url.as_str();
    let m = tiny_model.to_str().unwrap();
    let missing = ic_host::replica::canister_id_of(4000).to_text();
    refused("no such canister", &walsh(&project, &icp.home, &["upload", m, "--canister", &missing, "--network", url]), "no canister");
    refused(
        "anonymous",
        &walsh(&project, &icp.home, &["upload", m, "--canister", "backend", "--network", url, "--identity", "anonymous"]),
        "anonymous",
    );
    refused(
        "unreachable",
        &walsh(&project, &icp.home, &["upload", m, "--canister", "backend", "--network", "http://127.0.0.1:9"]),
        "cannot reach the network",
    );
    refused(
        "a name the project lacks",
        &walsh(&project, &icp.home, &["upload", m, "--canister", "frontend", "--network", url]),
        "neither a canister id nor a canister name",
    );
    let readme = char_tiny.join("README.md");
    refused(
        "a file the canister rejects",
        &walsh(&project, &icp.home, &["upload", readme.to_str().unwrap(), "--canister", "backend", "--network", url]),
        "the canister refused the model: not a .walsh file",
    );
    // A canister without the walsh interface (an empty module), created by dev.
    let dev_pem = std::fs::read(icp.home.join("identity/keys/dev.pem")).unwrap();
    let other = rt.block_on(async {
        let dev = agent(&proxy.url, &dev_pem).await;
        let create = ic_management_canister_types::ProvisionalCreateCanisterWithCyclesArgs::default();
        let reply = dev
            .update(&Principal::management_canister(), "provisional_create_canister_with_cycles")
            .with_effective_canister_id(canister)
            .with_arg(Encode!(&create).unwrap())
            .call_and_wait()
            .await
            .unwrap();
        let id = candid::decode_one::<ic_management_canister_types::CanisterIdRecord>(&reply).unwrap().canister_id;
        let install = ic_management_canister_types::InstallCodeArgs {
            mode: ic_management_canister_types::CanisterInstallMode::Install,
            canister_id: id,
            wasm_module: b"\0asm\x01\0\0\0".to_vec(),
            arg: vec![],
            sender_canister_version: None,
        };
        dev.update(&Principal::management_canister(), "install_code")
            .with_effective_canister_id(id)
            .with_arg(Encode!(&install).unwrap())
            .call_and_wait()
            .await
            .unwrap();
        id
    });
    refused(
        "not a walsh canister",
        &walsh(&project, &icp.home, &["upload", m, "--canister", &other.to_text(), "--network", url]),
        "does not have the walsh interface",
    );
    refused(
        "generate on it",
        &walsh(&project, &icp.home, &["generate", "--canister", &other.to_text(), "--network", url, "--prompt", "hi"]),
        "does not have the walsh interface",
    );

    // 4. char-tiny's model and meta.pkl (the active gpt2 tokenizer does not fit the char model, so
    // the tokenizer goes first), then verify_single_user.sh through icp-cli.
    let out = ok(
        "walsh upload char-tiny",
        walsh(
            &project,
            &icp.home,
            &["upload", m, "--tokenizer", char_tiny.join("meta.pkl").to_str().unwrap(), "--canister", "backend", "--network", url],
        ),
    );
    assert!(out.contains("model:") && out.contains("tokenizer:"), "{out}");
    let script = test_support::repo_root().join("verify_single_user.sh");
    let out = Command::new(&script)
        .args(["ROMEO:", "20", "--canister", &canister.to_text(), "--network", url])
        .env("ICP_HOME", &icp.home)
        .env("ICP_BIN", &icp.bin)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stdout = ok("verify_single_user.sh", out);
    eprintln!("verify_single_user.sh:\n{stdout}");
    let lines: Vec<&str> = stdout.lines().collect();
    let summary = lines.last().unwrap();
    assert!(summary.starts_with("20 tokens in "), "the exact token count: {summary}");
    assert!(summary.contains("tokens/s") && summary.contains("M instructions per token") && summary.contains("stopped: MaxTokens"), "{summary}");
    // char-tiny's tokens are characters: the text after the prompt has exactly 20 of them.
    let text = lines[..lines.len() - 1].join("\n");
    assert_eq!(text.strip_prefix("ROMEO:").expect("the prompt first").chars().count(), 20, "{text:?}");
    drop(proxy);
    server.shutdown();
}

fn flate2_decompress(gz: &[u8]) -> Vec<u8> {
    use std::io::Read;
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(gz).read_to_end(&mut out).unwrap();
    out
}

#[test]
fn a_killed_upload_rerun_resumes_without_resending_the_bytes_before_the_offset() {
    let Some(testdata) = test_support::testdata() else { return };
    let set = testdata.join("gpt2-small");
    let model = set.join("model.walsh");
    let tokenizer = set.join("tokenizer.json");
    let model_bytes = std::fs::read(&model).unwrap();
    let size = model_bytes.len() as u64;
    assert!(size > 3 * CHUNK, "gpt2-small's model spans 4 chunks");
    let server = server();
    let proxy = Proxy::start(&server.url);
    let work = temp_dir("resume");
    let pem = work.join("controller.pem");
    std::fs::write(&pem, CONTROLLER_PEM).unwrap();
    let icp_home = work.join("no-icp-home");
    let rt = runtime();
    let admin = rt.block_on(agent(&proxy.url, CONTROLLER_PEM.as_bytes()));
    let canister = rt.block_on(async {
        let create = ic_management_canister_types::ProvisionalCreateCanisterWithCyclesArgs::default();
        let reply = admin
            .update(&Principal::management_canister(), "provisional_create_canister_with_cycles")
            .with_effective_canister_id(ic_host::replica::canister_id_of(0))
            .with_arg(Encode!(&create).unwrap())
            .call_and_wait()
            .await
            .unwrap();
        let id = candid::decode_one::<ic_management_canister_types::CanisterIdRecord>(&reply).unwrap().canister_id;
        let install = ic_management_canister_types::InstallCodeArgs {
            mode: ic_management_canister_types::CanisterInstallMode::Install,
            canister_id: id,
            wasm_module: gzip(test_support::canister_wasm()),
            arg: Encode!(&Option::<()>::None).unwrap(),
            sender_canister_version: None,
        };
        admin
            .update(&Principal::management_canister(), "install_code")
            .with_effective_canister_id(id)
            .with_arg(Encode!(&install).unwrap())
            .call_and_wait()
            .await
            .unwrap();
        id
    });
    let id = canister.to_text();
    let args = [
        "upload",
        model.to_str().unwrap(),
        "--tokenizer",
        tokenizer.to_str().unwrap(),
        "--canister",
        &id,
        "--network",
        &proxy.url,
        "--identity",
        pem.to_str().unwrap(),
        "--parallel",
        "2",
        "--json",
    ];

    // The third chunk on never reaches the replica; the upload is killed while it waits for it.
    // One chunk in flight for this run, so the first two land in order (with two, the second can
    // overtake the first, and the client then waits for the held third before resending it).
    proxy.hold_chunks_from(2 * CHUNK);
    let mut one_in_flight = args;
    one_in_flight[args.len() - 2] = "1";
    let mut child = Command::new(env!("CARGO_BIN_EXE_walsh"))
        .args(one_in_flight)
        .env("ICP_HOME", &icp_home)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        let status = rt.block_on(upload_status(&admin, canister, BlobKind::Model));
        if proxy.held() > 0 && status.received == 2 * CHUNK {
            break status;
        }
        assert!(child.try_wait().unwrap().is_none(), "walsh upload ended before it was killed");
        assert!(Instant::now() < deadline, "the upload did not reach its third chunk: {status:?}, {} held", proxy.held());
        std::thread::sleep(Duration::from_millis(20));
    };
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(status.in_progress);
    let resume_at = status.received;
    let before: Vec<_> = proxy.log().iter().filter_map(|s| s.chunk).filter(|c| c.0 == Kind::Model).collect();
    assert_eq!(before.iter().map(|c| c.1).max(), Some(CHUNK), "before the kill the replica got the first two chunks: {before:?}");

    // The rerun: what the canister is sent starts at the reported offset.
    proxy.open();
    proxy.clear();
    let out = Command::new(env!("CARGO_BIN_EXE_walsh")).args(args).env("ICP_HOME", &icp_home).stdin(Stdio::null()).output().unwrap();
    let report: Value = serde_json::from_str(&ok("the rerun", out)).unwrap();
    let log = proxy.log();
    assert!(
        !log.iter().any(|s| s.method == "upload_start" && s.canister == canister && is_model_start(s)),
        "the rerun did not restart the model upload"
    );
    let model_chunks: Vec<_> = log.iter().filter_map(|s| s.chunk).filter(|c| c.0 == Kind::Model).collect();
    assert!(!model_chunks.is_empty());
    for &(_, offset, len) in &model_chunks {
        assert!(offset >= resume_at, "a chunk at {offset} (+{len}) resent bytes before the reported offset {resume_at}");
    }
    let resent: u64 = model_chunks.iter().map(|c| c.2 as u64).sum();
    let refused = report["blobs"][0]["out_of_order"].as_u64().unwrap();
    assert!(
        resent >= size - resume_at && (refused > 0 || resent == size - resume_at),
        "the replica got {resent} model bytes for the {} missing",
        size - resume_at
    );
    assert_eq!(report["blobs"][0]["resumed_from"], resume_at);
    assert_eq!(report["active"]["model_sha256"], sha256_hex(&model_bytes));
    eprintln!("resumed at {resume_at}: the canister was sent {:?} (kind, offset, length)", model_chunks);
    let status = rt.block_on(upload_status(&admin, canister, BlobKind::Model));
    assert!(!status.in_progress && status.active_size == Some(size));
    generate_matches_reference(&work, &icp_home, &id, &proxy.url, &set, 8);
    drop(proxy);
    server.shutdown();
}

/// Whether a logged upload_start addresses the model.
fn is_model_start(seen: &proxy::Seen) -> bool {
    seen.small_arg.as_deref().and_then(|a| candid::decode_one::<Kind>(a).ok()) == Some(Kind::Model)
}
