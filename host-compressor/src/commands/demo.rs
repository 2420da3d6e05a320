//! A small random model that exists so a fresh clone can run end to end with no download.
//! Its weights are random ternary values from a fixed seed: it produces gibberish, by design.

use std::path::PathBuf;

use anyhow::{Context, Result};
use host_compressor::random_model::{Shape, random_model};
use walsh_engine::format::WalshFile;
use walsh_engine::tokenizer::CharVocab;

const SEED: u64 = 0x5741_4c53_4845_4d4f;

#[derive(clap::Args)]
pub struct Args {
    /// Where to write the model; the tokenizer goes beside it as <name>.tokenizer.json.
    #[arg(short, long, default_value = "demo.walsh")]
    output: PathBuf,
}

/// Newline plus the 95 printable ASCII characters.
fn vocabulary() -> Vec<String> {
    std::iter::once('\n').chain(' '..='~').map(String::from).collect()
}

/// Builds the demo file in memory.
pub fn build() -> Result<(WalshFile<'static>, CharVocab)> {
    let vocab = CharVocab::new(&vocabulary())?;
    let file = random_model(&Shape::DEMO, SEED)?;
    assert_eq!(vocab.chars().len(), Shape::DEMO.vocab_size);
    Ok((file, vocab))
}

pub fn run(args: Args) -> Result<()> {
    let (file, vocab) = build()?;
    let bytes = file.to_bytes()?;
    // Our own output must load; anything else is a bug worth stopping for.
    walsh_engine::model::Model::load(&bytes).context("the demo model failed to load (bug)")?;
    let tokenizer_path = args.output.with_extension("tokenizer.json");
    std::fs::write(&args.output, &bytes).with_context(|| format!("writing {}", args.output.display()))?;
    std::fs::write(&tokenizer_path, vocab.to_tokenizer_json()).with_context(|| format!("writing {}", tokenizer_path.display()))?;
    println!("wrote {} ({} bytes): a random 2-layer demo model; its output is gibberish", args.output.display(), bytes.len());
    println!("wrote {} (char vocabulary: newline and printable ASCII)", tokenizer_path.display());
    Ok(())
}
