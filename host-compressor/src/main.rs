//! `walsh`: the native command-line tool for Walsh models.

mod commands;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "walsh", version, about = "Compress, inspect and run Walsh (.walsh) models")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Convert a PyTorch training checkpoint (.pt) into a .walsh file.
    Compress(commands::compress::Args),
    /// Generate text from a prompt (with a local model, or on a deployed canister).
    Generate(commands::generate::Args),
    /// Upload a model and/or tokenizer to a deployed walsh canister (chunked, resumable).
    Upload(commands::upload::Args),
    /// Show a .walsh file's version, config and records.
    Inspect(commands::inspect::Args),
    /// Write a small random model (and its char tokenizer) for trying things out.
    DemoModel(commands::demo::Args),
    /// Convert a char vocabulary (meta.pkl) into an equivalent tokenizer.json.
    Tokenizer(commands::tokenizer::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Compress(args) => commands::compress::run(args),
        Command::Generate(args) => commands::generate::run(args),
        Command::Upload(args) => commands::upload::run(args),
        Command::Inspect(args) => commands::inspect::run(args),
        Command::DemoModel(args) => commands::demo::run(args),
        Command::Tokenizer(args) => commands::tokenizer::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            // 2 = the input was refused (bad file, bad argument), as clap does for usage errors.
            ExitCode::from(2)
        }
    }
}
