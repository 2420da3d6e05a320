//! Helpers for the tests of `ic-host serve` with the real ic-agent client.

use std::io::Write;

use candid::{CandidType, Decode, Deserialize, Encode, Principal};
use ic_agent::identity::{BasicIdentity, Identity, Secp256k1Identity};
use ic_agent::{Agent, AgentError};
use ic_host::http::server::{RunningServer, ServeConfig, start};

#[derive(CandidType)]
pub struct InitArg {
    pub greeting: String,
}

pub fn server() -> RunningServer {
    start(ServeConfig { port: 0, state_dir: None, controller: None }).expect("ic-host serve starts")
}

pub async fn agent(url: &str, identity: impl Identity + 'static) -> Agent {
    let agent = Agent::builder().with_url(url).with_identity(identity).build().expect("agent");
    agent.fetch_root_key().await.expect("the root key is served");
    agent
}

pub fn ed25519(seed: u8) -> BasicIdentity {
    BasicIdentity::from_raw_key(&[seed; 32])
}

pub fn secp256k1(seed: u8) -> Secp256k1Identity {
    Secp256k1Identity::from_private_key(k256::SecretKey::from_slice(&[seed; 32]).expect("valid scalar"))
}

/// Creates a canister through the management canister and installs `wasm` with `arg`.
pub async fn create_and_install(agent: &Agent, wasm: &[u8], arg: Vec<u8>) -> Principal {
    #[derive(CandidType, Deserialize)]
    struct CanisterIdRecord {
        canister_id: Principal,
    }
    let create = ic_management_canister_types::ProvisionalCreateCanisterWithCyclesArgs::default();
    let reply = agent
        .update(&Principal::management_canister(), "provisional_create_canister_with_cycles")
        .with_effective_canister_id(ic_host::replica::canister_id_of(0))
        .with_arg(Encode!(&create).unwrap())
        .call_and_wait()
        .await
        .expect("create");
    let id = Decode!(&reply, CanisterIdRecord).unwrap().canister_id;
    let install = ic_management_canister_types::InstallCodeArgs {
        mode: ic_management_canister_types::CanisterInstallMode::Install,
        canister_id: id,
        wasm_module: wasm.to_vec(),
        arg,
        sender_canister_version: None,
    };
    agent
        .update(&Principal::management_canister(), "install_code")
        .with_effective_canister_id(id)
        .with_arg(Encode!(&install).unwrap())
        .call_and_wait()
        .await
        .expect("install_code");
    id
}

pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

/// A walsh canister reply in Candid text, typed by `canister/walsh.did` (so field names show
/// even when the module under test carries no metadata).
pub fn walsh_reply_text(method: &str, reply: &[u8]) -> String {
    let did = test_support::repo_root().join("canister/walsh.did");
    let (env, actor) = candid_parser::utils::CandidSource::File(&did).load().expect("walsh.did parses");
    let service = actor.expect("walsh.did has a service");
    let func = env.get_method(&service, method).expect("method in walsh.did");
    candid::IDLArgs::from_bytes_with_types(reply, &env, &func.rets).expect("reply matches walsh.did").to_string()
}

pub fn reject_of(error: AgentError) -> ic_transport_types::RejectResponse {
    match error {
        AgentError::CertifiedReject { reject, .. } | AgentError::UncertifiedReject { reject, .. } => reject,
        other => panic!("expected a reject, got {other}"),
    }
}

/// A server keeping its state in `dir`.
pub fn server_in(dir: &std::path::Path) -> RunningServer {
    start(ServeConfig { port: 0, state_dir: Some(dir.to_path_buf()), controller: None }).expect("ic-host serve starts")
}

/// A fresh empty directory under the target directory.
pub fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[derive(CandidType, Clone, Copy)]
pub enum BlobKind {
    Tokenizer,
    Model,
}

/// Uploads `bytes` as `kind` through the walsh canister's chunked upload API and activates it;
/// panics with the canister's answer if any step is refused.
pub async fn walsh_upload(agent: &Agent, id: Principal, kind: BlobKind, bytes: &[u8]) {
    use sha2::Digest;
    let ok = |method: &str, reply: Vec<u8>| {
        let text = walsh_reply_text(method, &reply);
        assert!(is_ok(&text), "{method}: {text}");
    };
    let reply = agent.update(&id, "upload_start").with_arg(Encode!(&kind).unwrap()).call_and_wait().await.expect("upload_start");
    ok("upload_start", reply);
    for (i, chunk) in bytes.chunks(1_900_000).enumerate() {
        let offset = (i * 1_900_000) as u64;
        let arg = Encode!(&kind, &offset, &serde_bytes::Bytes::new(chunk)).unwrap();
        let reply = agent.update(&id, "upload_chunk").with_arg(arg).call_and_wait().await.expect("upload_chunk");
        ok("upload_chunk", reply);
    }
    let hash = sha2::Sha256::digest(bytes).to_vec();
    let arg = Encode!(&kind, &(bytes.len() as u64), &serde_bytes::ByteBuf::from(hash)).unwrap();
    let reply = agent.update(&id, "upload_finish").with_arg(arg).call_and_wait().await.expect("upload_finish");
    ok("upload_finish", reply);
}

#[derive(CandidType)]
pub struct GenerateRequest {
    pub prompt: String,
    pub max_tokens: u32,
    pub temperature: Option<f32>,
    pub top_k: Option<u32>,
    pub top_p: Option<f32>,
    pub seed: Option<u64>,
}

pub fn greedy(prompt: &str, max_tokens: u32) -> GenerateRequest {
    GenerateRequest { prompt: prompt.into(), max_tokens, temperature: Some(0.0), top_k: None, top_p: None, seed: Some(1) }
}

/// Whether a walsh reply in Candid text is `variant { Ok … }`.
pub fn is_ok(text: &str) -> bool {
    text.split_whitespace().collect::<String>().starts_with("(variant{Ok")
}
