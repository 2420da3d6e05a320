use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use serde::Serialize;

use walsh_engine::format::WalshFile;

use host_compressor::checkpoint::Checkpoint;
use host_compressor::compress::{TensorReport, compress};

/// Checkpoints smaller than this finish before a progress bar would be useful.
const PROGRESS_MIN_BYTES: usize = 4 << 20;

#[derive(clap::Args)]
pub struct Args {
    /// The PyTorch checkpoint (ckpt.pt) written by the Walsh training script.
    checkpoint: PathBuf,
    /// Where to write the .walsh file.
    #[arg(short, long)]
    output: PathBuf,
    /// Print nothing but errors.
    #[arg(long)]
    quiet: bool,
    /// Print one JSON object describing the result instead of the log.
    #[arg(long, conflicts_with = "quiet")]
    json: bool,
}

#[derive(Serialize)]
struct Report<'a> {
    input: &'a Path,
    output: &'a Path,
    input_bytes: usize,
    output_bytes: usize,
    stripped_compile_prefix: bool,
    header: serde_json::Value,
    tensors: &'a [TensorReport],
    seconds: f64,
}

/// Writes next to the destination, then renames, so a failure never leaves a partial file.
/// Returns the number of bytes written.
fn write_atomically(path: &Path, file: &WalshFile<'_>) -> Result<u64> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().context("the output path has no file name")?.to_string_lossy();
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let result = std::fs::File::create(&tmp)
        .and_then(|f| {
            let mut out = std::io::BufWriter::with_capacity(1 << 20, f);
            file.write_to(&mut out)?;
            let f = out.into_inner().map_err(|e| e.into_error())?;
            f.sync_all()?;
            f.metadata().map(|m| m.len())
        })
        .and_then(|len| std::fs::rename(&tmp, path).map(|_| len));
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.with_context(|| format!("writing {}", path.display()))
}

fn shape(s: &[usize]) -> String {
    format!("[{}]", s.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", "))
}

pub fn run(args: Args) -> Result<()> {
    let started = Instant::now();
    let input_bytes = std::fs::metadata(&args.checkpoint).with_context(|| format!("cannot read {}", args.checkpoint.display()))?.len() as usize;
    let checkpoint = Checkpoint::open(&args.checkpoint)
        .with_context(|| format!("cannot read {}", args.checkpoint.display()))?
        .with_context(|| format!("{} is not a usable checkpoint", args.checkpoint.display()))?;
    let log = !args.quiet && !args.json;
    if log {
        println!("Loading checkpoint: {}", args.checkpoint.display());
        println!("Compressing to: {}", args.output.display());
        if checkpoint.stripped_prefix {
            println!("  [INFO] Stripped the torch.compile prefix '_orig_mod.' from tensor names");
        }
    }
    let total = checkpoint.tensors.iter().fold(0usize, |sum, (_, t)| sum.saturating_add(t.byte_len()));
    let bar = (log && input_bytes >= PROGRESS_MIN_BYTES && std::io::stdout().is_terminal()).then(|| {
        let bar = indicatif::ProgressBar::new(total as u64);
        bar.set_style(indicatif::ProgressStyle::with_template("  {bar:40} {bytes}/{total_bytes} {msg}").expect("valid template"));
        bar
    });
    let result = compress(&checkpoint, |done| {
        if let Some(bar) = &bar {
            bar.inc(done as u64);
        }
    });
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    let stripped_prefix = checkpoint.stripped_prefix;
    let compressed = result.with_context(|| format!("cannot compress {}", args.checkpoint.display()))?;
    drop(checkpoint);
    compressed.check_runnable().with_context(|| format!("cannot compress {}", args.checkpoint.display()))?;
    let output_bytes = write_atomically(&args.output, &compressed.file)? as usize;
    let seconds = started.elapsed().as_secs_f64();

    if args.json {
        let report = Report {
            input: &args.checkpoint,
            output: &args.output,
            input_bytes,
            output_bytes,
            stripped_compile_prefix: stripped_prefix,
            header: serde_json::from_str(&compressed.file.header_json)?,
            tensors: &compressed.tensors,
            seconds,
        };
        println!("{}", serde_json::to_string(&report)?);
    } else if log {
        for t in &compressed.tensors {
            match (t.sparsity, t.nonzero, t.note) {
                (Some(s), Some(nz), _) => println!("  [{}] {}: {} ({:.1}% sparse, {} non-zero)", t.kind, t.name, shape(&t.shape), 100.0 * s, nz),
                (_, _, Some(note)) => println!("  [{}] {}: {} ({note})", t.kind, t.name, shape(&t.shape)),
                _ => println!("  [{}] {}: {}", t.kind, t.name, shape(&t.shape)),
            }
        }
        let count = |kind: &str| compressed.tensors.iter().filter(|t| t.kind == kind).count();
        println!();
        println!("Compression complete in {seconds:.2} s");
        println!("  Embeddings: {}", count("EMBED"));
        println!("  Ternary weights: {}", count("BITMASK"));
        println!("  Norm layers: {}", count("NORM"));
        println!(
            "  Output size: {:.2} MB ({} bytes, {:.1}% of the checkpoint)",
            output_bytes as f64 / 1e6,
            output_bytes,
            100.0 * output_bytes as f64 / input_bytes as f64
        );
    }
    Ok(())
}
