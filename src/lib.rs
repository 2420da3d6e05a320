//! The Walsh engine: reads `.walsh` files and runs Walsh models — transformers whose linear
//! layers are ternary octonion products — natively and on `wasm32-unknown-unknown`.
//!
//! - [`format`]: the byte format (parser, version 4 writer); spec in `docs/FORMAT.md`.
//! - [`config`]: the JSON header.
//! - [`model`]: weights in the kernels' layouts, and the forward pass with a KV cache. The
//!   kernels themselves (`src/kernels/`: plain-Rust twins and wasm SIMD128 versions) are private.
//! - [`tokenizer`], [`sampling`], [`generate`]: text in, text out.
//!
//! ```no_run
//! use walsh_engine::{generate::{GenerateOptions, Generator}, model::Model, sampling::SamplingParams};
//! let model = Model::load(&std::fs::read("model.walsh")?)?;
//! let options = GenerateOptions { max_tokens: 20, sampling: SamplingParams::default(), seed: 0, stop_token: None };
//! let mut generator = Generator::new(&model, &[30, 27, 25], &options)?;
//! while let Some(step) = generator.step(&model)? {
//!     println!("{}", step.token);
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![deny(missing_docs)]

pub mod config;
pub mod format;
pub mod generate;
mod kernels;
pub mod model;
pub mod octonion;
pub mod sampling;
pub mod tokenizer;
