//! Random models built with the engine's writer: `walsh demo-model` (so a fresh clone runs end to
//! end with no download), and the test models the reference sets do not cover (a long context, a
//! large file, a vocabulary of a chosen size). Random ternary weights from a seed: gibberish, by design.

use std::borrow::Cow;

use anyhow::Result;
use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};
use walsh_engine::config::ModelConfig;
use walsh_engine::format::{Array, Dtype, HalfKind, Payload, QuantizedMatrix, Record, TernaryTensor, WalshFile};

/// The shape of a random model (the rest is fixed: 8 heads, head mixing, tied embedding, no bias).
/// The demo is one; tests build others with it (a long context, a large file, a chosen vocabulary).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shape {
    pub n_layer: usize,
    pub n_embd: usize,
    pub block_size: usize,
    pub vocab_size: usize,
}

impl Shape {
    /// The demo model's shape: 2 layers, 64 wide, 128 positions, the 96-character vocabulary.
    pub const DEMO: Shape = Shape { n_layer: 2, n_embd: 64, block_size: 128, vocab_size: 96 };

    /// The header, in the key order and spelling the training project writes.
    fn header_json(&self) -> String {
        let Shape { n_layer, n_embd, block_size, vocab_size } = self;
        format!(
            r#"{{"n_layer": {n_layer}, "n_head": 8, "n_embd": {n_embd}, "block_size": {block_size}, "bias": false, "vocab_size": {vocab_size}, "dropout": 0.0, "head_mixing": true, "algebra": "octonion", "hash_embeddings": false, "use_moe": false, "moe_threshold": 0.1, "moe_min_experts": 1, "moe_max_experts": 4, "use_channel_mod": false}}"#
        )
    }
}

struct Random(ChaCha20Rng);

impl Random {
    /// Uniform in [-1, 1).
    fn unit(&mut self) -> f32 {
        (self.0.next_u32() >> 8) as f32 / (1u32 << 23) as f32 - 1.0
    }
    fn ternary(&mut self) -> i8 {
        // 40 % zeros, the rest ±1 evenly, close to trained Walsh models.
        match self.0.next_u32() % 10 {
            0..=3 => 0,
            4..=6 => 1,
            _ => -1,
        }
    }
}

fn half_array(values: impl IntoIterator<Item = f32>, shape: Vec<usize>) -> Array<'static> {
    let data = values.into_iter().flat_map(|v| half::f16::from_f32(v).to_le_bytes()).collect();
    Array { dtype: Dtype::F16, shape, data: Cow::Owned(data) }
}

fn record(name: String, payload: Payload<'static>) -> Record<'static> {
    Record { name: Cow::Owned(name), payload }
}

/// A model of this shape with random weights from `seed` (ternary layers about 40 % zeros, as
/// trained Walsh models are), built with the engine's writer: the demo, and the test models the
/// reference sets do not cover.
pub fn random_model(shape: &Shape, seed: u64) -> Result<WalshFile<'static>> {
    let header = shape.header_json();
    let config = ModelConfig::from_json(&header)?;
    let mut rng = Random(ChaCha20Rng::seed_from_u64(seed));
    let (d, hd, hidden) = (config.n_embd, config.head_dim(), config.hidden_dim());

    let mut records = Vec::new();
    // RoPE exactly as the training code builds it: θ = t / 10000^(2i/hd), 2·block_size rows.
    let mut rope = Vec::new();
    for t in 0..2 * config.block_size {
        for i in 0..hd / 2 {
            let freq = 1.0 / 10000f32.powf((2 * i) as f32 / hd as f32);
            let theta = t as f32 * freq;
            rope.extend_from_slice(&theta.cos().to_le_bytes());
            rope.extend_from_slice(&theta.sin().to_le_bytes());
        }
    }
    let rope = Array { dtype: Dtype::F32, shape: vec![2 * config.block_size, hd / 2, 2], data: Cow::Owned(rope) };
    records.push(record("freqs_cis".into(), Payload::Rope(rope)));
    let embedding: Vec<u8> = (0..config.vocab_size * d).map(|_| (rng.unit() * 127.0).round() as i8 as u8).collect();
    records.push(record(
        "tok_embeddings.weight".into(),
        // A small scale keeps the tied output logits within a few units, so sampling stays varied.
        Payload::Embedding(QuantizedMatrix { scale: 0.25 / 127.0, rows: config.vocab_size, cols: d, data: Cow::Owned(embedding) }),
    ));

    let linear = |records: &mut Vec<Record<'static>>, rng: &mut Random, prefix: String, in_dim: usize, out_dim: usize| {
        let shape = [8, out_dim / 8, in_dim / 8];
        let values: Vec<i8> = (0..in_dim * out_dim / 8).map(|_| rng.ternary()).collect();
        let tensor = TernaryTensor::from_values(shape, &values).expect("values are ternary and match the shape");
        records.push(record(format!("{prefix}.weight"), Payload::Ternary(tensor)));
        // β keeps each output near unit variance: 8 parts × in_o inputs × 60 % non-zero.
        let beta = 1.0 / (0.6 * in_dim as f32).sqrt();
        let betas = (0..out_dim / 8).map(|_| beta * (1.0 + 0.25 * rng.unit())).collect::<Vec<_>>();
        records.push(record(format!("{prefix}.beta"), Payload::Half { kind: HalfKind::Beta, array: half_array(betas, vec![out_dim / 8]) }));
    };
    let norm = |name: String| record(name, Payload::Half { kind: HalfKind::Norm, array: half_array(vec![1.0; d], vec![d]) });
    for l in 0..config.n_layer {
        records.push(norm(format!("layers.{l}.attention_norm.weight")));
        for w in ["wq", "wk", "wv", "wo"] {
            linear(&mut records, &mut rng, format!("layers.{l}.attention.{w}"), d, d);
        }
        let mixer: Vec<f32> = (0..8 * hd * hd).map(|_| rng.unit() / (8.0 * hd as f32).sqrt()).collect();
        records.push(record(
            format!("layers.{l}.attention.head_mixer.W"),
            Payload::Half { kind: HalfKind::MixerWeight, array: half_array(mixer, vec![8, hd, hd]) },
        ));
        records.push(record(
            format!("layers.{l}.attention.head_mixer.beta"),
            Payload::Half { kind: HalfKind::MixerBeta, array: half_array(vec![1.0; hd], vec![hd]) },
        ));
        records.push(norm(format!("layers.{l}.ffn_norm.weight")));
        linear(&mut records, &mut rng, format!("layers.{l}.feed_forward.gate_proj"), d, hidden);
        linear(&mut records, &mut rng, format!("layers.{l}.feed_forward.up_proj"), d, hidden);
        linear(&mut records, &mut rng, format!("layers.{l}.feed_forward.down_proj"), hidden, d);
    }
    records.push(norm("norm.weight".into()));
    Ok(WalshFile { version: 4, header_json: Cow::Owned(header), records })
}
