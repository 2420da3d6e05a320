use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use futures_util::StreamExt;
use futures_util::stream::FuturesOrdered;
use host_compressor::ic::api::{BlobKind, Error as CanisterError, ModelInfo};
use host_compressor::ic::client::Walsh;
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::remote::Target;

/// Bytes per `upload_chunk`: the canister's largest chunk (1.9 MB), well under the 2 MiB ingress
/// limit with the envelope.
pub const CHUNK: usize = 1_900_000;

#[derive(clap::Args)]
pub struct Args {
    /// The .walsh model to upload (optional when only a tokenizer is uploaded).
    model: Option<PathBuf>,
    /// A tokenizer.json, or the char vocabulary meta.pkl of the training run (converted on the way).
    #[arg(long)]
    tokenizer: Option<PathBuf>,
    #[command(flatten)]
    target: Target,
    /// Chunks in flight at once. The canister takes chunks only where its data ends, so a chunk
    /// that overtakes its predecessor is refused and sent again once that one has landed.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=16))]
    parallel: u32,
    /// Start over even if the canister holds part of this upload.
    #[arg(long)]
    restart: bool,
    /// Print one JSON object (what was sent, resumed, timed) instead of summary lines.
    #[arg(long)]
    json: bool,
}

#[derive(Serialize, Default, Clone)]
struct BlobReport {
    kind: &'static str,
    file: String,
    bytes: u64,
    sha256: String,
    /// Already active on the canister: nothing was sent.
    already_active: bool,
    /// The offset an interrupted upload was resumed from (0: from the start).
    resumed_from: u64,
    /// Bytes sent in upload_chunk calls (more than bytes - resumed_from only when chunks were refused
    /// for overtaking their predecessor and sent again, or an upload was restarted).
    sent_bytes: u64,
    chunk_calls: u64,
    /// Chunks refused as out of order (sent again).
    out_of_order: u64,
    restarted: bool,
    /// Transfer time (upload_chunk calls) and activation time (upload_finish).
    transfer_seconds: f64,
    finish_seconds: f64,
}

#[derive(Serialize)]
struct Report {
    canister: String,
    network: String,
    identity: String,
    blobs: Vec<BlobReport>,
    /// What the canister serves now (model_info).
    active: Option<serde_json::Value>,
}

struct Blob {
    kind: BlobKind,
    file: PathBuf,
    bytes: Vec<u8>,
    sha256: Vec<u8>,
}

fn read_blob(kind: BlobKind, path: &Path) -> Result<Blob> {
    let raw = super::read_file(path)?;
    let bytes = match kind {
        // A char vocabulary goes up as the equivalent tokenizer.json (the canister reads that format).
        BlobKind::Tokenizer if raw.first() == Some(&0x80) || path.extension().is_some_and(|e| e == "pkl") => {
            let vocab = host_compressor::meta_pkl::read_char_vocab(&raw).with_context(|| format!("reading {}", path.display()))?;
            vocab.to_tokenizer_json().into_bytes()
        }
        _ => raw,
    };
    if bytes.is_empty() {
        bail!("{} is empty", path.display());
    }
    let sha256 = Sha256::digest(&bytes).to_vec();
    Ok(Blob { kind, file: path.to_path_buf(), bytes, sha256 })
}

/// Progress on stderr: a bar on a terminal, otherwise a line per confirmed chunk.
struct Progress {
    bar: Option<indicatif::ProgressBar>,
    label: String,
    total: u64,
    started: Instant,
}

impl Progress {
    fn new(label: String, total: u64, done: u64) -> Progress {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = indicatif::ProgressBar::new(total);
            bar.set_style(
                indicatif::ProgressStyle::with_template("{msg:10} {bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}").expect("valid template"),
            );
            bar.set_message(label.clone());
            bar.set_position(done);
            bar.reset_eta();
            bar
        });
        Progress { bar, label, total, started: Instant::now() }
    }

    fn set(&self, done: u64) {
        match &self.bar {
            Some(bar) => bar.set_position(done),
            None => {
                let secs = self.started.elapsed().as_secs_f64().max(1e-6);
                eprintln!(
                    "{}: {done} / {} bytes ({:.0}%, {:.1} MB/s)",
                    self.label,
                    self.total,
                    100.0 * done as f64 / self.total as f64,
                    done as f64 / secs / 1e6
                );
            }
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

pub fn run(args: Args) -> Result<()> {
    if args.model.is_none() && args.tokenizer.is_none() {
        bail!("nothing to upload: give a MODEL.walsh and/or --tokenizer FILE");
    }
    // Read (and convert) everything before touching the network.
    let model = args.model.as_deref().map(|p| read_blob(BlobKind::Model, p)).transpose()?;
    let tokenizer = args.tokenizer.as_deref().map(|p| read_blob(BlobKind::Tokenizer, p)).transpose()?;
    let identity = args.target.identity()?;
    if identity.is_anonymous() {
        bail!(
            "uploads need a controller's identity, and {} is anonymous: pass --identity NAME|FILE.pem (an icp-cli or dfx identity, or a PEM key)",
            identity.label
        );
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    runtime.block_on(async move {
        let walsh = args.target.connect(&identity).await?;
        check_controller(&walsh, &identity).await?;
        let mut reports = Vec::new();
        let parallel = args.parallel as usize;
        let mut model_info = None;
        let mut pending_model = None;
        if let Some(blob) = &model {
            let mut report = stage(&walsh, blob, parallel, args.restart).await?;
            if !report.already_active {
                match finish(&walsh, blob, &mut report, parallel).await? {
                    Ok(info) => model_info = Some(info),
                    // The active tokenizer does not fit the new model: the new tokenizer goes first.
                    Err(CanisterError::Incompatible(_)) if tokenizer.is_some() => pending_model = Some(blob),
                    Err(e) => bail!("{}: {e}", blob.file.display()),
                }
            }
            reports.push(report);
        }
        if let Some(blob) = &tokenizer {
            let mut report = stage(&walsh, blob, parallel, args.restart).await?;
            if !report.already_active {
                match finish(&walsh, blob, &mut report, parallel).await? {
                    Ok(info) => model_info = Some(info),
                    Err(e) => bail!("{}: {e}", blob.file.display()),
                }
            }
            reports.push(report);
        }
        if let Some(blob) = pending_model {
            match finish(&walsh, blob, &mut reports[0], parallel).await? {
                Ok(info) => model_info = Some(info),
                Err(e) => bail!("{}: {e}", blob.file.display()),
            }
        }
        if model_info.is_none() {
            model_info = walsh.model_info().await?.ok();
        }
        if args.json {
            let active = model_info.as_ref().map(info_json);
            let report = Report { canister: walsh.canister.to_text(), network: walsh.network.url.clone(), identity: identity.principal.to_text(), blobs: reports, active };
            println!("{}", serde_json::to_string(&report)?);
        } else {
            for r in &reports {
                if r.already_active {
                    println!("{}: {} is already active on {} ({} bytes, sha256 {}): nothing sent", r.kind, r.file, walsh.canister, r.bytes, &r.sha256[..16]);
                } else {
                    let rate = r.sent_bytes as f64 / r.transfer_seconds.max(1e-6) / 1e6;
                    let resumed = if r.resumed_from > 0 { format!(", resumed at byte {}", r.resumed_from) } else { String::new() };
                    println!(
                        "{}: {} active on {} ({} bytes, sha256 {}); sent {} bytes in {} calls in {:.2} s ({rate:.1} MB/s){resumed}, activated in {:.2} s",
                        r.kind, r.file, walsh.canister, r.bytes, &r.sha256[..16], r.sent_bytes, r.chunk_calls, r.transfer_seconds, r.finish_seconds
                    );
                }
            }
        }
        Ok(())
    })
}

fn info_json(info: &ModelInfo) -> serde_json::Value {
    serde_json::json!({
        "n_layer": info.n_layer, "n_head": info.n_head, "n_embd": info.n_embd, "block_size": info.block_size, "vocab_size": info.vocab_size,
        "model_bytes": info.model_bytes, "model_sha256": hex::encode(&info.model_sha256),
        "tokenizer": info.tokenizer.as_ref().map(|t| serde_json::json!({"kind": t.kind, "vocab_size": t.vocab_size, "bytes": t.bytes, "sha256": hex::encode(&t.sha256)})),
    })
}

/// Refuses early, with the reason, an identity that is not one of the canister's controllers (read
/// from the certified state; the canister checks again on every upload call).
async fn check_controller(walsh: &Walsh, identity: &host_compressor::ic::identity::LoadedIdentity) -> Result<()> {
    // Also tells "no such canister" and "not a walsh canister" apart before anything is sent.
    walsh.upload_status(BlobKind::Model).await?;
    if let Ok(controllers) = walsh.agent.read_state_canister_controllers(walsh.canister).await
        && !controllers.contains(&identity.principal)
    {
        bail!("{} ({}) is not a controller of canister {}: only its controllers may upload", identity.label, identity.principal, walsh.canister);
    }
    Ok(())
}

fn not_controller(walsh: &Walsh) -> anyhow::Error {
    anyhow::anyhow!("the caller is not a controller of canister {}: only its controllers may upload", walsh.canister)
}

/// Puts `blob` into the canister's staging area, resuming an interrupted upload of it.
async fn stage(walsh: &Walsh, blob: &Blob, parallel: usize, restart: bool) -> Result<BlobReport> {
    let len = blob.bytes.len() as u64;
    let mut report = BlobReport {
        kind: blob.kind.name(),
        file: blob.file.display().to_string(),
        bytes: len,
        sha256: hex::encode(&blob.sha256),
        ..BlobReport::default()
    };
    let status = walsh.upload_status(blob.kind).await?;
    if !restart
        && !status.in_progress
        && status.active_size == Some(len)
        && status.active_sha256.as_ref().map(|s| s.as_slice()) == Some(blob.sha256.as_slice())
    {
        report.already_active = true;
        return Ok(report);
    }
    let start = if !restart && status.in_progress && status.received <= len {
        if status.received > 0 {
            eprintln!("{}: resuming at byte {} of {} (the canister has the bytes before it)", blob.kind.name(), status.received, len);
        }
        status.received
    } else {
        begin(walsh, blob.kind).await?;
        0
    };
    report.resumed_from = start;
    send(walsh, blob, start, parallel, &mut report).await?;
    Ok(report)
}

async fn begin(walsh: &Walsh, kind: BlobKind) -> Result<()> {
    match walsh.upload_start(kind).await? {
        Ok(_) => Ok(()),
        Err(CanisterError::NotAuthorized) => Err(not_controller(walsh)),
        Err(e) => bail!("upload_start: {e}"),
    }
}

/// Sends `blob` from `start` on, `parallel` chunks in flight.
async fn send(walsh: &Walsh, blob: &Blob, start: u64, parallel: usize, report: &mut BlobReport) -> Result<()> {
    let bytes = &blob.bytes;
    let len = bytes.len() as u64;
    let progress = Progress::new(blob.kind.name().to_string(), len, start);
    let started = Instant::now();
    let mut next = start;
    while next < len {
        let mut in_flight = FuturesOrdered::new();
        let mut furthest = next;
        let mut overtaken = false;
        loop {
            while !overtaken && in_flight.len() < parallel && next < len {
                let (offset, end) = (next, (next + CHUNK as u64).min(len));
                let piece = &bytes[offset as usize..end as usize];
                in_flight.push_back(async move { walsh.upload_chunk(blob.kind, offset, piece).await });
                report.sent_bytes += end - offset;
                report.chunk_calls += 1;
                next = end;
            }
            let Some(reply) = in_flight.next().await else { break };
            match reply? {
                Ok(status) => {
                    furthest = furthest.max(status.received);
                    progress.set(furthest);
                }
                // It overtook a chunk still in flight (or lost to it): stop sending, let the others
                // land, then continue where the data ends.
                Err(CanisterError::ChunkOutOfOrder { expected_offset }) => {
                    overtaken = true;
                    report.out_of_order += 1;
                    furthest = furthest.max(expected_offset);
                }
                Err(CanisterError::NotAuthorized) => return Err(not_controller(walsh)),
                Err(CanisterError::UploadNotStarted) => bail!("{}: the upload was finished or restarted by someone else meanwhile", blob.kind.name()),
                Err(e) => bail!("{}: {e}", blob.file.display()),
            }
        }
        if !overtaken && furthest < len {
            bail!("the canister reports {furthest} of {len} bytes after all chunks were sent");
        }
        next = furthest;
    }
    progress.finish();
    report.transfer_seconds += started.elapsed().as_secs_f64();
    Ok(())
}

/// `upload_finish`: verifies size and sha256 and activates. If a resumed upload turns out to hold
/// another file's bytes (the hash differs), starts over once.
async fn finish(walsh: &Walsh, blob: &Blob, report: &mut BlobReport, parallel: usize) -> Result<std::result::Result<ModelInfo, CanisterError>> {
    let len = blob.bytes.len() as u64;
    loop {
        let started = Instant::now();
        let reply = walsh.upload_finish(blob.kind, len, &blob.sha256).await?;
        report.finish_seconds += started.elapsed().as_secs_f64();
        match reply {
            Err(CanisterError::HashMismatch { .. }) if report.resumed_from > 0 && !report.restarted => {
                eprintln!("{}: the bytes staged before byte {} were not this file's; starting over", blob.kind.name(), report.resumed_from);
                report.restarted = true;
                begin(walsh, blob.kind).await?;
                send(walsh, blob, 0, parallel, report).await?;
            }
            Err(CanisterError::NotAuthorized) => return Err(not_controller(walsh)),
            other => return Ok(other),
        }
    }
}
