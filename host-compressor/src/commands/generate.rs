use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use serde::Serialize;
use walsh_engine::generate::{GenerateOptions, Generator};
use walsh_engine::sampling::SamplingParams;
use walsh_engine::tokenizer::TextStream;

/// How many generated steps report their top logits in `--json` output.
const REPORTED_STEPS: usize = 5;
const REPORTED_TOP: usize = 10;

#[derive(clap::Args)]
pub struct Args {
    /// The .walsh model (not with --canister: then the canister's model generates).
    pub model: Option<PathBuf>,
    /// A tokenizer.json, or the char vocabulary meta.pkl of the training run.
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
    #[arg(long)]
    pub prompt: String,
    #[arg(long, default_value_t = 50)]
    pub max_tokens: usize,
    /// 0 = greedy.
    #[arg(long, default_value_t = 0.8, allow_negative_numbers = true)]
    pub temperature: f32,
    #[arg(long)]
    pub top_k: Option<usize>,
    #[arg(long, allow_negative_numbers = true)]
    pub top_p: Option<f32>,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Keep going after the end-of-text token instead of stopping there.
    #[arg(long)]
    pub ignore_eos: bool,
    /// Print one JSON object (ids, text, top-10 logits of the first 5 steps) instead of streaming.
    #[arg(long)]
    pub json: bool,
    /// Generate on a deployed walsh canister instead (`--canister ID|NAME [--network …]`), through
    /// update sessions.
    #[command(flatten)]
    pub target: super::remote::Target,
    /// With --canister: one `generate` query (as many tokens as fit in a query) instead of sessions.
    #[arg(long)]
    pub query: bool,
}

#[derive(Serialize)]
struct StepReport {
    top_ids: Vec<u32>,
    top_values: Vec<f32>,
}

#[derive(Serialize)]
struct Report {
    prompt_ids: Vec<u32>,
    ids: Vec<u32>,
    text: String,
    stop_reason: &'static str,
    steps: Vec<StepReport>,
}

/// The `n` largest logits, largest first; equal values in id order.
fn top_n(logits: &[f32], n: usize) -> StepReport {
    let mut order: Vec<u32> = (0..logits.len() as u32).collect();
    order.sort_by(|&a, &b| logits[b as usize].total_cmp(&logits[a as usize]).then(a.cmp(&b)));
    order.truncate(n);
    StepReport { top_values: order.iter().map(|&i| logits[i as usize]).collect(), top_ids: order }
}

pub fn run(args: Args) -> Result<()> {
    if args.target.canister.is_some() {
        return super::generate_remote::run(args);
    }
    if args.query {
        bail!("--query needs --canister (it asks the canister for one generate query)");
    }
    let (Some(model_path), Some(tokenizer_path)) = (&args.model, &args.tokenizer) else {
        bail!("give MODEL and --tokenizer FILE (or --canister ID to generate on a deployed canister)");
    };
    let model = super::load_model(model_path)?;
    let tokenizer = super::load_tokenizer(tokenizer_path)?;
    if tokenizer.vocab_size() > model.config.vocab_size {
        bail!("the tokenizer has {} tokens but the model only {}: wrong tokenizer for this model?", tokenizer.vocab_size(), model.config.vocab_size);
    }
    let prompt_ids = tokenizer.encode(&args.prompt)?;
    // Char vocabularies drop characters they lack (as the reference does); say so.
    let seen = tokenizer.decode(&prompt_ids)?;
    if seen != args.prompt {
        eprintln!("warning: characters the vocabulary lacks were dropped from the prompt; the model sees {seen:?}");
    }
    let options = GenerateOptions {
        max_tokens: args.max_tokens,
        sampling: SamplingParams { temperature: args.temperature, top_k: args.top_k, top_p: args.top_p },
        seed: args.seed,
        stop_token: if args.ignore_eos { None } else { tokenizer.end_of_text() },
    };
    let mut generator = Generator::new(&model, &prompt_ids, &options)?;
    let mut stream = TextStream::new();
    let mut steps = Vec::new();
    let mut stdout = std::io::stdout().lock();
    let started = Instant::now();
    while let Some(step) = generator.step(&model)? {
        if steps.len() < REPORTED_STEPS {
            steps.push(top_n(generator.last_logits(), REPORTED_TOP));
        }
        if !args.json {
            let piece = stream.push(&tokenizer, step.token)?;
            stdout.write_all(piece.as_bytes())?;
            stdout.flush()?;
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let ids = generator.generated().to_vec();
    let stop_reason = generator.stop_reason().map_or("max_tokens", |r| r.as_str());
    if args.json {
        let text = tokenizer.decode(&ids)?;
        let report = Report { prompt_ids, ids, text, stop_reason, steps };
        serde_json::to_writer(&mut stdout, &report).context("writing JSON")?;
        writeln!(stdout)?;
    } else {
        let rest = stream.flush(&tokenizer)?;
        writeln!(stdout, "{rest}")?;
        stdout.flush()?;
        eprintln!(
            "[{} prompt tokens, {} generated in {:.2} s ({:.1} tokens/s), stopped: {}]",
            prompt_ids.len(),
            ids.len(),
            elapsed,
            ids.len() as f64 / elapsed.max(1e-9),
            stop_reason
        );
    }
    Ok(())
}
