use std::path::PathBuf;

use anyhow::{Context, Result};

#[derive(clap::Args)]
pub struct Args {
    /// The char vocabulary (meta.pkl) of a training run.
    meta: PathBuf,
    /// Where to write the equivalent tokenizer.json.
    #[arg(short, long)]
    output: PathBuf,
}

pub fn run(args: Args) -> Result<()> {
    let bytes = super::read_file(&args.meta)?;
    let vocab = host_compressor::meta_pkl::read_char_vocab(&bytes).with_context(|| format!("reading {}", args.meta.display()))?;
    std::fs::write(&args.output, vocab.to_tokenizer_json()).with_context(|| format!("writing {}", args.output.display()))?;
    println!("wrote {} ({} characters)", args.output.display(), vocab.chars().len());
    Ok(())
}
