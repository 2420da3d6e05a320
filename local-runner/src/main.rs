//! `walsh-local`: the canister end to end on the embedded IC host. Installs the canister wasm,
//! uploads a model and its tokenizer through the upload API (chunked, sha256-checked), generates
//! through update sessions, and prints the text (or one JSON object with the calls' instructions).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use candid::Encode;
use clap::Parser;
use ic_host::host::{Host, HostConfig};
use local_runner::{Call, Local, tokenizer_json};
use serde::Serialize;
use walsh_canister::api::*;

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
    /// Sample only among the k most likely tokens.
    #[arg(long)]
    top_k: Option<u32>,
    /// Sample only among the most likely tokens that hold this share of the probability.
    #[arg(long)]
    top_p: Option<f32>,
    #[arg(long)]
    seed: Option<u64>,
    /// Print one JSON object instead of the text.
    #[arg(long)]
    json: bool,
}

#[derive(Serialize)]
struct Report {
    ids: Vec<u32>,
    text: String,
    calls: Vec<Call>,
    decode_instructions_per_token: u64,
}

fn run(cli: Cli) -> Result<()> {
    let wasm = std::fs::read(&cli.wasm).with_context(|| format!("cannot read {} (build it with scripts/build_canister.sh)", cli.wasm.display()))?;
    let model = std::fs::read(&cli.model).with_context(|| format!("cannot read {}", cli.model.display()))?;
    let tokenizer = std::fs::read(&cli.tokenizer).with_context(|| format!("cannot read {}", cli.tokenizer.display()))?;
    let tokenizer = tokenizer_json(&cli.tokenizer, tokenizer)?;
    let (host, install) = Host::install(&wasm, &Encode!(&None::<Settings>)?, HostConfig::default())?;
    let mut local = Local { host, calls: vec![Call::new("install", &install)] };
    local.upload(BlobKind::Model, &model)?;
    local.upload(BlobKind::Tokenizer, &tokenizer)?;

    let request = GenerateRequest {
        prompt: cli.prompt.clone(),
        max_tokens: cli.max_tokens,
        temperature: Some(cli.temperature),
        top_k: cli.top_k,
        top_p: cli.top_p,
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
        let one: Result<Generation, Error> =
            local.call("generate", Encode!(&GenerateRequest { max_tokens: 1, seed: Some(0), ..request.clone() })?, false)?;
        let many: Result<Generation, Error> = local.call("generate", Encode!(&GenerateRequest { seed: Some(0), ..request.clone() })?, false)?;
        if let (Ok(one), Ok(many)) = (one, many)
            && many.ids.len() > 1
        {
            decode_instructions = many.instructions.saturating_sub(one.instructions);
            decode_tokens = many.ids.len() as u64 - 1;
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
