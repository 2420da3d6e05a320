//! `walsh generate --canister`: the same generation on a deployed walsh canister, as a real client:
//! update sessions (`session_start`, then `session_continue` until it stops), or one `generate` query.

use std::io::Write;
use std::time::Instant;

use anyhow::{Result, bail};
use host_compressor::ic::api::{Error as CanisterError, GenerateRequest, StopReason};
use host_compressor::ic::client::Walsh;
use serde::Serialize;

use super::generate::Args;

#[derive(Serialize)]
struct Call {
    method: &'static str,
    instructions: u64,
    tokens: usize,
}

#[derive(Serialize)]
struct Report {
    canister: String,
    prompt_ids: Vec<u32>,
    ids: Vec<u32>,
    text: String,
    stop_reason: &'static str,
    calls: Vec<Call>,
    instructions: u64,
    instructions_per_token: u64,
    seconds: f64,
    tokens_per_second: f64,
}

fn canister_error(method: &str, e: CanisterError) -> anyhow::Error {
    anyhow::anyhow!("{method}: {e}")
}

pub fn run(args: Args) -> Result<()> {
    if args.model.is_some() || args.tokenizer.is_some() {
        bail!("--canister generates with the canister's model and tokenizer: give no MODEL or --tokenizer");
    }
    if args.ignore_eos {
        bail!("--ignore-eos is not available on a canister (it always stops at the end-of-text token)");
    }
    let max_tokens = u32::try_from(args.max_tokens).map_err(|_| anyhow::anyhow!("--max-tokens is too large"))?;
    let request = GenerateRequest {
        prompt: args.prompt.clone(),
        max_tokens,
        temperature: Some(args.temperature),
        top_k: args.top_k.map(|k| u32::try_from(k).unwrap_or(u32::MAX)),
        top_p: args.top_p,
        seed: Some(args.seed),
    };
    let mut identity = args.target.identity()?;
    if identity.is_anonymous() && !args.query {
        // Sessions belong to an authenticated caller: without an identity, a key for this run.
        identity = host_compressor::ic::identity::LoadedIdentity::ephemeral()?;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    runtime.block_on(async {
        let walsh = args.target.connect(&identity).await?;
        let started = Instant::now();
        let mut stdout = std::io::stdout().lock();
        let (prompt_ids, ids, text, stop, calls) = if args.query {
            let g = walsh.generate(&request).await?.map_err(|e| canister_error("generate", e))?;
            if !args.json {
                write!(stdout, "{}", g.text)?;
            }
            let calls = vec![Call { method: "generate", instructions: g.instructions, tokens: g.ids.len() }];
            (g.prompt_ids, g.ids, g.text, g.stop, calls)
        } else {
            session(&walsh, &request, args.json, &mut stdout).await?
        };
        let seconds = started.elapsed().as_secs_f64();
        let instructions: u64 = calls.iter().map(|c| c.instructions).sum();
        let per_token = instructions.checked_div(ids.len() as u64).unwrap_or(0);
        let rate = ids.len() as f64 / seconds.max(1e-9);
        if args.json {
            let report = Report {
                canister: walsh.canister.to_text(),
                prompt_ids,
                ids,
                text,
                stop_reason: stop.as_str(),
                calls,
                instructions,
                instructions_per_token: per_token,
                seconds,
                tokens_per_second: rate,
            };
            serde_json::to_writer(&mut stdout, &report)?;
            writeln!(stdout)?;
        } else {
            writeln!(stdout)?;
            stdout.flush()?;
            eprintln!(
                "[{} prompt tokens, {} generated in {seconds:.2} s ({rate:.1} tokens/s) on canister {}; {} calls, {:.3} B instructions ({:.1} M per token); stopped: {}]",
                prompt_ids.len(),
                ids.len(),
                walsh.canister,
                calls.len(),
                instructions as f64 / 1e9,
                per_token as f64 / 1e6,
                stop.as_str()
            );
        }
        Ok(())
    })
}

type Outcome = (Vec<u32>, Vec<u32>, String, StopReason, Vec<Call>);

/// Runs a session to its end, streaming each call's text; then reads the session's prompt ids and
/// closes it (a caller may keep only a few sessions open).
async fn session(walsh: &Walsh, request: &GenerateRequest, json: bool, stdout: &mut impl Write) -> Result<Outcome> {
    let mut chunk = walsh.session_start(request).await?.map_err(|e| canister_error("session_start", e))?;
    let id = chunk.session;
    let mut calls = Vec::new();
    let mut ids = Vec::new();
    let mut text = String::new();
    let mut method = "session_start";
    let stop = loop {
        calls.push(Call { method, instructions: chunk.instructions, tokens: chunk.ids.len() });
        ids.extend_from_slice(&chunk.ids);
        text.push_str(&chunk.text);
        if !json {
            write!(stdout, "{}", chunk.text)?;
            stdout.flush()?;
        }
        if let Some(stop) = chunk.stop {
            break stop;
        }
        method = "session_continue";
        let next = tokio::select! {
            reply = walsh.session_continue(id) => reply,
            _ = tokio::signal::ctrl_c() => {
                let _ = walsh.session_cancel(id).await;
                bail!("interrupted: session {id} cancelled after {} tokens", ids.len());
            }
        };
        chunk = next?.map_err(|e| canister_error("session_continue", e))?;
    };
    let view = walsh.session_get(id).await?.map_err(|e| canister_error("session_get", e))?;
    if view.ids != ids {
        bail!("session {id}: the canister reports {} generated ids, the calls returned {}", view.ids.len(), ids.len());
    }
    // Frees the session's slot; a failure here does not change what was generated.
    let _ = walsh.session_cancel(id).await;
    Ok((view.prompt_ids, ids, text, stop, calls))
}
