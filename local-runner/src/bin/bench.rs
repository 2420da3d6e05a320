//! `walsh-bench`: the canister's cost in IC instructions, measured on the embedded IC host (the
//! IC's cost table), for one canister build and one model. `scripts/bench.sh` runs it for the
//! SIMD and the scalar build of the canister on gpt2-bench.
//!
//! Decoding is measured as a difference, so that prompt processing and per-call overheads cancel:
//! two sessions with the same prompt, one generating 1 token and one generating 1 + n; the extra
//! instructions over n are the cost per decoded token at that context length (inside one long
//! call, so the page charges each message pays once cancel too).
//!
//! Under the 2026 accounting (the default; `--accounting ic-2025` for the rules before) it also
//! reports what single messages pay for memory pages: an upload chunk, the model's activation,
//! a `generate` query and a session call.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, anyhow};
use candid::Encode;
use clap::Parser;
use ic_host::host::{Accounting, Host, HostConfig};
use local_runner::{Call, Local, tokenizer_json};
use serde::Serialize;
use walsh_canister::api::*;
use walsh_engine::tokenizer::Tokenizer;

#[derive(Parser)]
#[command(name = "walsh-bench", about = "Instructions per token of the Walsh canister on the embedded IC host")]
struct Cli {
    #[arg(long)]
    wasm: PathBuf,
    #[arg(long)]
    model: PathBuf,
    #[arg(long)]
    tokenizer: PathBuf,
    /// Tokens decoded per measurement.
    #[arg(long, default_value_t = 8)]
    tokens: u32,
    /// How the host charges memory pages: ic-2026 (the IC since mid-2026) or ic-2025.
    #[arg(long, default_value = "ic-2026")]
    accounting: Accounting,
}

/// One message: its instructions, those charged for memory pages, and the 64 KiB pages it
/// accessed and wrote.
#[derive(Serialize)]
struct Message {
    instructions: u64,
    page_instructions: u64,
    pages_accessed: u64,
    pages_written: u64,
}

impl From<&Call> for Message {
    fn from(c: &Call) -> Message {
        Message {
            instructions: c.instructions,
            page_instructions: c.page_instructions,
            pages_accessed: c.pages_accessed,
            pages_written: c.pages_written,
        }
    }
}

#[derive(Serialize)]
struct Messages {
    /// The first `upload_chunk` of the model (1.9 MB).
    upload_chunk: Message,
    /// `upload_finish` of the model: verify, parse, repack.
    activation: Message,
    /// The `generate` query below.
    generate_query: Message,
    /// `session_start` with a prompt of `decode_context` tokens, decoding 1 + `tokens` tokens.
    session_call: Message,
}

#[derive(Serialize)]
struct Figures {
    accounting: &'static str,
    walsh_bytes: u64,
    heap_bytes_after_load: u64,
    heap_bytes_with_tokenizer: u64,
    load_instructions: u64,
    post_upgrade_instructions: u64,
    prefill_instructions_per_token: u64,
    prefill_tokens: usize,
    decode_instructions_per_token: u64,
    decode_context: usize,
    decode_instructions_per_token_ctx250: u64,
    decode_context_long: usize,
    query_max_tokens: usize,
    query_instructions: u64,
    update_tokens_per_2b: f64,
    messages: Messages,
}

/// A prompt of exactly `n` tokens (repeating a one-token word), as text.
fn prompt_of(tokenizer: &Tokenizer, n: usize) -> Result<String> {
    let mut text = String::from("The");
    for word in [" the", " a", " and", "a", "e"] {
        let mut t = text.clone();
        while tokenizer.encode(&t)?.len() < n {
            t.push_str(word);
        }
        if tokenizer.encode(&t)?.len() == n {
            return Ok(t);
        }
        text = String::from("The");
    }
    Err(anyhow!("cannot build a {n}-token prompt with this tokenizer"))
}

/// A session from `prompt` to `max_tokens` tokens: (instructions of all its calls, tokens, index
/// of its first call in `local.calls`).
fn session_total(local: &mut Local, prompt: &str, max_tokens: u32) -> Result<(u64, usize, usize)> {
    let request = GenerateRequest { prompt: prompt.into(), max_tokens, temperature: Some(0.0), top_k: None, top_p: None, seed: Some(0) };
    let api = |r: Result<SessionChunk, Error>| r.map_err(|e| anyhow!("{e:?}"));
    let first = local.calls.len();
    let mut chunk = api(local.call("session_start", Encode!(&request)?, true)?)?;
    let mut ids = chunk.ids.len();
    while chunk.stop.is_none() {
        chunk = api(local.call("session_continue", Encode!(&chunk.session)?, true)?)?;
        ids += chunk.ids.len();
    }
    let total = local.calls[first..].iter().map(|c| c.instructions).sum();
    // Finished sessions stay readable until they expire; free the slot for the next one.
    let cancelled: Result<(), Error> = local.call("session_cancel", Encode!(&chunk.session)?, true)?;
    cancelled.map_err(|e| anyhow!("session_cancel: {e:?}"))?;
    Ok((total, ids, first))
}

/// Instructions per decoded token after a prompt of `context` tokens, and the first call of the
/// longer session.
fn decode_cost(local: &mut Local, tokenizer: &Tokenizer, context: usize, n: u32) -> Result<(u64, Message)> {
    let prompt = prompt_of(tokenizer, context)?;
    let (one, _, _) = session_total(local, &prompt, 1)?;
    let (many, ids, first) = session_total(local, &prompt, 1 + n)?;
    if ids != 1 + n as usize {
        return Err(anyhow!("expected {} tokens, got {ids} (end of text?)", 1 + n));
    }
    Ok((many.saturating_sub(one) / u64::from(n), Message::from(&local.calls[first])))
}

fn stats(local: &mut Local) -> Result<Stats> {
    local.call("stats", Encode!()?, false)
}

fn run(cli: Cli) -> Result<Figures> {
    let wasm = std::fs::read(&cli.wasm).with_context(|| format!("cannot read {}", cli.wasm.display()))?;
    let model = std::fs::read(&cli.model).with_context(|| format!("cannot read {}", cli.model.display()))?;
    let tokenizer_bytes = tokenizer_json(&cli.tokenizer, std::fs::read(&cli.tokenizer)?)?;
    let tokenizer = Tokenizer::from_json(&tokenizer_bytes)?;

    let config = HostConfig { accounting: cli.accounting, ..HostConfig::default() };
    let (host, _) = Host::install(&wasm, &Encode!(&None::<Settings>)?, config)?;
    let mut local = Local { host, calls: Vec::new() };
    local.upload(BlobKind::Model, &model)?;
    let load_instructions = local.calls.last().map_or(0, |c| c.instructions);
    let activation = Message::from(local.calls.last().context("no upload call")?);
    let upload_chunk = Message::from(local.calls.iter().find(|c| c.method == "upload_chunk").context("no upload_chunk call")?);
    let heap_bytes_after_load = stats(&mut local)?.heap_bytes;
    local.upload(BlobKind::Tokenizer, &tokenizer_bytes)?;
    let heap_bytes_with_tokenizer = stats(&mut local)?.heap_bytes;
    let upgrade = local.host.upgrade(&wasm, &Encode!(&None::<Settings>)?)?;
    let post_upgrade_instructions = upgrade.instructions;

    // Prefill: a 64-token prompt and one generated token, minus one decoded token.
    let prefill_tokens = 64;
    let prompt = prompt_of(&tokenizer, prefill_tokens)?;
    let (prefill_total, _, _) = session_total(&mut local, &prompt, 1)?;
    let decode_context = 60;
    let (decode, session_call) = decode_cost(&mut local, &tokenizer, decode_context, cli.tokens)?;
    let prefill = prefill_total.saturating_sub(decode) / prefill_tokens as u64;
    let block = walsh_engine::config::ModelConfig::from_json(&walsh_engine::format::WalshFile::parse(&model)?.header_json)?.block_size;
    let decode_context_long = 250.min(block.saturating_sub(1 + cli.tokens as usize));
    let (decode_long, _) = decode_cost(&mut local, &tokenizer, decode_context_long, cli.tokens)?;

    // One generate query from a 4-token prompt, asking for more than fits.
    let request = GenerateRequest {
        prompt: prompt_of(&tokenizer, 4)?,
        max_tokens: (block - 4) as u32,
        temperature: Some(0.0),
        top_k: None,
        top_p: None,
        seed: Some(0),
    };
    let generation: Result<Generation, Error> = local.call("generate", Encode!(&request)?, false)?;
    let generation = generation.map_err(|e| anyhow!("generate: {e:?}"))?;
    let generate_query = Message::from(local.calls.last().context("no generate call")?);

    Ok(Figures {
        accounting: cli.accounting.name(),
        walsh_bytes: model.len() as u64,
        heap_bytes_after_load,
        heap_bytes_with_tokenizer,
        load_instructions,
        post_upgrade_instructions,
        prefill_instructions_per_token: prefill,
        prefill_tokens,
        decode_instructions_per_token: decode,
        decode_context,
        decode_instructions_per_token_ctx250: decode_long,
        decode_context_long,
        query_max_tokens: generation.ids.len(),
        query_instructions: local.calls.last().map_or(0, |c| c.instructions),
        // A round of 2 B instructions pays the message's page charges once (those of a session
        // call decoding from a cached context), then decodes.
        update_tokens_per_2b: (2e9 - session_call.page_instructions as f64).max(0.0) / decode.max(1) as f64,
        messages: Messages { upload_chunk, activation, generate_query, session_call },
    })
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(figures) => {
            println!("{}", serde_json::to_string(&figures).expect("figures serialize"));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
