//! `walsh-local`: the canister end to end on the embedded IC host. Installs the canister wasm,
//! uploads a model and its tokenizer through the upload API (chunked, sha256-checked), generates
//! through update sessions, and prints the text (or one JSON object with the calls' instructions).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use candid::{CandidType, Decode, Encode};
use clap::Parser;
use ic_host::host::{Host, HostConfig, Response, default_controller};
use serde::Serialize;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};
use walsh_canister::api::*;

/// Upload chunk size: the canister's maximum, under the IC's 2 MiB ingress limit.
const CHUNK: usize = 1_900_000;

#[derive(Parser)]
#[command(name = "walsh-local", about = "Run the Walsh canister on the embedded IC host")]
struct Cli {
    /// The canister module.
    #[arg(long)]
    wasm: PathBuf,
    #[arg(long)]
    model: PathBuf,
    /// A tokenizer.json, or a char-level meta.pkl (converted on the way).
    #[arg(long)]
    tokenizer: PathBuf,
    #[arg(long, default_value = "Once upon a time")]
    prompt: String,
    #[arg(long, default_value_t = 40)]
    max_tokens: u32,
    /// 0 = greedy.
    #[arg(long, default_value_t = 0.8, allow_negative_numbers = true)]
    temperature: f32,
    #[arg(long)]
    seed: Option<u64>,
    /// Print one JSON object instead of the text.
    #[arg(long)]
    json: bool,
}

#[derive(Serialize)]
struct Call {
    method: String,
    instructions: u64,
}

#[derive(Serialize)]
struct Report {
    ids: Vec<u32>,
    text: String,
    calls: Vec<Call>,
    decode_instructions_per_token: u64,
}

struct Local {
    host: Host,
    calls: Vec<Call>,
}

impl Local {
    fn call<T: DeserializeOwned + CandidType>(&mut self, method: &str, arg: Vec<u8>, update: bool) -> Result<T> {
        let me = default_controller();
        let out = if update { self.host.update(method, &arg, me)? } else { self.host.query(method, &arg, me)? };
        self.calls.push(Call { method: method.to_string(), instructions: out.instructions });
        match out.response {
            Response::Reply(bytes) => Ok(Decode!(&bytes, T)?),
            Response::Reject { message, .. } => bail!("{method} failed: {message}"),
        }
    }

    fn upload(&mut self, kind: BlobKind, bytes: &[u8]) -> Result<ModelInfo> {
        let api = |r: Result<UploadStatus, Error>| r.map_err(|e| anyhow::anyhow!("{e:?}"));
        api(self.call("upload_start", Encode!(&kind)?, true)?)?;
        for (i, piece) in bytes.chunks(CHUNK).enumerate() {
            let offset = (i * CHUNK) as u64;
            api(self.call("upload_chunk", Encode!(&kind, &offset, &serde_bytes::ByteBuf::from(piece.to_vec()))?, true)?)?;
        }
        let sha = serde_bytes::ByteBuf::from(Sha256::digest(bytes).to_vec());
        let finished: Result<ModelInfo, Error> = self.call("upload_finish", Encode!(&kind, &(bytes.len() as u64), &sha)?, true)?;
        finished.map_err(|e| anyhow::anyhow!("upload_finish: {e:?}"))
    }
}

fn run(cli: Cli) -> Result<()> {
    let wasm = std::fs::read(&cli.wasm).with_context(|| format!("cannot read {} (build it with scripts/build_canister.sh)", cli.wasm.display()))?;
    let model = std::fs::read(&cli.model).with_context(|| format!("cannot read {}", cli.model.display()))?;
    let tokenizer = std::fs::read(&cli.tokenizer).with_context(|| format!("cannot read {}", cli.tokenizer.display()))?;
    let tokenizer = if tokenizer.first() == Some(&0x80) || cli.tokenizer.extension().is_some_and(|e| e == "pkl") {
        host_compressor::meta_pkl::read_char_vocab(&tokenizer)?.to_tokenizer_json().into_bytes()
    } else {
        tokenizer
    };
    let (host, install) = Host::install(&wasm, &Encode!(&None::<Settings>)?, HostConfig::default())?;
    let mut local = Local { host, calls: vec![Call { method: "install".into(), instructions: install.instructions }] };
    local.upload(BlobKind::Model, &model)?;
    local.upload(BlobKind::Tokenizer, &tokenizer)?;

    let request = GenerateRequest {
        prompt: cli.prompt.clone(),
        max_tokens: cli.max_tokens,
        temperature: Some(cli.temperature),
        top_k: None,
        top_p: None,
        seed: cli.seed,
    };
    let mut ids = Vec::new();
    let mut text = String::new();
    let api = |r: Result<SessionChunk, Error>| r.map_err(|e| anyhow::anyhow!("{e:?}"));
    let mut chunk = api(local.call("session_start", Encode!(&request)?, true)?)?;
    let session = chunk.session;
    // Decode cost: calls that only generate (the prompt done), per token.
    let (mut decode_instructions, mut decode_tokens) = (0u64, 0u64);
    loop {
        ids.extend(&chunk.ids);
        text.push_str(&chunk.text);
        if !cli.json {
            print!("{}", chunk.text);
        }
        if chunk.stop.is_some() {
            break;
        }
        chunk = api(local.call("session_continue", Encode!(&session)?, true)?)?;
        if chunk.prompt_remaining == 0 && !chunk.ids.is_empty() {
            decode_instructions += chunk.instructions;
            decode_tokens += chunk.ids.len() as u64;
        }
    }
    if decode_tokens == 0 {
        // Everything fitted in the first call: measure decoding as the difference between a
        // one-token and an n-token generation of the same prompt.
        let one: Result<Generation, Error> = local.call("generate", Encode!(&GenerateRequest { max_tokens: 1, seed: Some(0), ..request.clone() })?, false)?;
        let many: Result<Generation, Error> = local.call("generate", Encode!(&GenerateRequest { seed: Some(0), ..request.clone() })?, false)?;
        if let (Ok(one), Ok(many)) = (one, many) {
            if many.ids.len() > 1 {
                decode_instructions = many.instructions.saturating_sub(one.instructions);
                decode_tokens = many.ids.len() as u64 - 1;
            }
        }
    }
    let decode_instructions_per_token = decode_instructions.checked_div(decode_tokens).unwrap_or(0);
    if cli.json {
        let report = Report { ids, text, calls: local.calls, decode_instructions_per_token };
        println!("{}", serde_json::to_string(&report)?);
    } else {
        println!();
        let total: u64 = local.calls.iter().map(|c| c.instructions).sum();
        eprintln!(
            "[{} tokens through the canister on the embedded IC host; {} calls, {:.2} B instructions; decoding {:.1} M instructions per token]",
            ids.len(),
            local.calls.len(),
            total as f64 / 1e9,
            decode_instructions_per_token as f64 / 1e6
        );
    }
    Ok(())
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
