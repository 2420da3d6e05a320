use std::path::PathBuf;

use anyhow::{Context, Result};
use serde::Serialize;
use walsh_engine::config::ModelConfig;
use walsh_engine::format::{Payload, WalshFile};

#[derive(clap::Args)]
pub struct Args {
    /// The .walsh file.
    file: PathBuf,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Serialize)]
struct RecordInfo {
    name: String,
    kind: char,
    shape: Vec<usize>,
    bytes: usize,
    /// Fraction of zero weights (ternary records only).
    #[serde(skip_serializing_if = "Option::is_none")]
    sparsity: Option<f64>,
}

#[derive(Serialize)]
struct Report {
    file_bytes: usize,
    version: u16,
    config: serde_json::Value,
    /// Why the engine cannot run this file, if it cannot.
    #[serde(skip_serializing_if = "Option::is_none")]
    runnable_error: Option<String>,
    records: Vec<RecordInfo>,
    ternary_weights: usize,
    ternary_nonzero: u64,
    payload_bytes: usize,
}

pub fn run(args: Args) -> Result<()> {
    let bytes = super::read_file(&args.file)?;
    let file = WalshFile::parse(&bytes).with_context(|| format!("{} is not a valid .walsh file", args.file.display()))?;
    let records: Vec<RecordInfo> = file
        .records
        .iter()
        .map(|r| {
            let (bytes, sparsity) = match &r.payload {
                Payload::Ternary(t) => (t.bitmask.len() + t.signs.len(), Some(t.sparsity())),
                Payload::Embedding(e) => (e.data.len() + 4, None),
                Payload::Half { array, .. } | Payload::Rope(array) => (array.data.len(), None),
            };
            RecordInfo { name: r.name.to_string(), kind: r.payload.marker() as char, shape: r.payload.shape(), bytes, sparsity }
        })
        .collect();
    let (mut ternary_weights, mut ternary_nonzero) = (0usize, 0u64);
    for r in &file.records {
        if let Payload::Ternary(t) = &r.payload {
            ternary_weights += t.element_count();
            ternary_nonzero += u64::from(t.nnz);
        }
    }
    let runnable_error = walsh_engine::model::Model::from_file(&file).err().map(|e| e.to_string());
    let report = Report {
        file_bytes: bytes.len(),
        version: file.version,
        config: serde_json::from_str(&file.header_json).unwrap_or(serde_json::Value::String(file.header_json.to_string())),
        runnable_error,
        records,
        ternary_weights,
        ternary_nonzero,
        payload_bytes: file.payload_bytes(),
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    println!("{}: .walsh version {}, {} bytes", args.file.display(), report.version, report.file_bytes);
    println!("config: {}", file.header_json);
    if let Ok(c) = ModelConfig::from_json(&file.header_json) {
        println!(
            "  {} layers, {} heads of {}, width {}, hidden {}, context {}, vocab {}, head mixing {}",
            c.n_layer,
            c.n_head,
            c.head_dim(),
            c.n_embd,
            c.hidden_dim(),
            c.block_size,
            c.vocab_size,
            if c.head_mixing { "on" } else { "off" }
        );
    }
    println!("{:<4} {:<48} {:>18} {:>10} {:>9}", "kind", "name", "shape", "bytes", "sparsity");
    for r in &report.records {
        let shape = format!("{:?}", r.shape);
        let sparsity = r.sparsity.map_or(String::new(), |s| format!("{:.1}%", 100.0 * s));
        println!("{:<4} {:<48} {:>18} {:>10} {:>9}", r.kind, r.name, shape, r.bytes, sparsity);
    }
    println!(
        "{} records; {} ternary weights, {:.1}% zero; {} payload bytes",
        report.records.len(),
        ternary_weights,
        if ternary_weights == 0 { 0.0 } else { 100.0 * (1.0 - ternary_nonzero as f64 / ternary_weights as f64) },
        report.payload_bytes
    );
    match &report.runnable_error {
        None => println!("runnable: yes"),
        Some(e) => println!("runnable: no — {e}"),
    }
    Ok(())
}
