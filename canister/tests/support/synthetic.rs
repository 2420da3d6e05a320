//! Models built with the engine's writer for the cases the reference sets do not cover: a long
//! context, a large file, a vocabulary of a chosen size. Random ternary weights from a fixed seed
//! (their text is gibberish; tests compare them with the engine run natively, not with words).

#![allow(dead_code)]

use std::borrow::Cow;

use walsh_engine::config::ModelConfig;
use walsh_engine::format::{Array, Dtype, HalfKind, Payload, QuantizedMatrix, Record, TernaryTensor, WalshFile};
use walsh_engine::tokenizer::CharVocab;

pub struct Shape {
    pub n_layer: usize,
    pub n_embd: usize,
    pub block_size: usize,
    pub vocab_size: usize,
}

/// A small xorshift stream: deterministic and fast enough for a 600 MB embedding.
struct Stream(u64);

impl Stream {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    /// Uniform in [-1, 1).
    fn unit(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }
    fn ternary(&mut self) -> i8 {
        (self.next() % 3) as i8 - 1
    }
}

fn half(values: impl IntoIterator<Item = f32>, shape: Vec<usize>) -> Array<'static> {
    let data = values.into_iter().flat_map(|v| half::f16::from_f32(v).to_le_bytes()).collect();
    Array { dtype: Dtype::F16, shape, data: Cow::Owned(data) }
}

fn record(name: String, payload: Payload<'static>) -> Record<'static> {
    Record { name: Cow::Owned(name), payload }
}

/// The `.walsh` bytes of a random model of this shape (8 heads, head mixing, tied embedding).
pub fn model(shape: &Shape) -> Vec<u8> {
    let header = format!(
        r#"{{"n_layer": {}, "n_head": 8, "n_embd": {}, "block_size": {}, "bias": false, "vocab_size": {}, "dropout": 0.0, "head_mixing": true, "algebra": "octonion", "hash_embeddings": false, "use_moe": false, "moe_threshold": 0.1, "moe_min_experts": 1, "moe_max_experts": 4, "use_channel_mod": false}}"#,
        shape.n_layer, shape.n_embd, shape.block_size, shape.vocab_size
    );
    let config = ModelConfig::from_json(&header).expect("a valid header");
    let (d, hd, hidden) = (config.n_embd, config.head_dim(), config.hidden_dim());
    let mut rng = Stream(0x9E37_79B9_7F4A_7C15);
    let mut records = Vec::new();
    // RoPE as the training code builds it: θ = t / 10000^(2i/hd), 2·block_size rows.
    let mut rope = Vec::with_capacity(2 * config.block_size * hd * 4);
    for t in 0..2 * config.block_size {
        for i in 0..hd / 2 {
            let theta = t as f32 / 10000f32.powf((2 * i) as f32 / hd as f32);
            rope.extend_from_slice(&theta.cos().to_le_bytes());
            rope.extend_from_slice(&theta.sin().to_le_bytes());
        }
    }
    records.push(record(
        "freqs_cis".into(),
        Payload::Rope(Array { dtype: Dtype::F32, shape: vec![2 * config.block_size, hd / 2, 2], data: Cow::Owned(rope) }),
    ));
    let embedding: Vec<u8> = (0..config.vocab_size * d).map(|_| (rng.next() >> 56) as u8).collect();
    records.push(record(
        "tok_embeddings.weight".into(),
        Payload::Embedding(QuantizedMatrix { scale: 0.25 / 127.0, rows: config.vocab_size, cols: d, data: Cow::Owned(embedding) }),
    ));
    let linear = |records: &mut Vec<Record<'static>>, rng: &mut Stream, prefix: String, in_dim: usize, out_dim: usize| {
        let values: Vec<i8> = (0..in_dim * out_dim / 8).map(|_| rng.ternary()).collect();
        let tensor = TernaryTensor::from_values([8, out_dim / 8, in_dim / 8], &values).expect("ternary values of the shape");
        records.push(record(format!("{prefix}.weight"), Payload::Ternary(tensor)));
        let beta = 1.0 / (0.6 * in_dim as f32).sqrt();
        records
            .push(record(format!("{prefix}.beta"), Payload::Half { kind: HalfKind::Beta, array: half(vec![beta; out_dim / 8], vec![out_dim / 8]) }));
    };
    let norm = |name: String| record(name, Payload::Half { kind: HalfKind::Norm, array: half(vec![1.0; d], vec![d]) });
    for l in 0..config.n_layer {
        records.push(norm(format!("layers.{l}.attention_norm.weight")));
        for w in ["wq", "wk", "wv", "wo"] {
            linear(&mut records, &mut rng, format!("layers.{l}.attention.{w}"), d, d);
        }
        let mixer: Vec<f32> = (0..8 * hd * hd).map(|_| rng.unit() / (8.0 * hd as f32).sqrt()).collect();
        records.push(record(
            format!("layers.{l}.attention.head_mixer.W"),
            Payload::Half { kind: HalfKind::MixerWeight, array: half(mixer, vec![8, hd, hd]) },
        ));
        records.push(record(
            format!("layers.{l}.attention.head_mixer.beta"),
            Payload::Half { kind: HalfKind::MixerBeta, array: half(vec![1.0; hd], vec![hd]) },
        ));
        records.push(norm(format!("layers.{l}.ffn_norm.weight")));
        linear(&mut records, &mut rng, format!("layers.{l}.feed_forward.gate_proj"), d, hidden);
        linear(&mut records, &mut rng, format!("layers.{l}.feed_forward.up_proj"), d, hidden);
        linear(&mut records, &mut rng, format!("layers.{l}.feed_forward.down_proj"), hidden, d);
    }
    records.push(norm("norm.weight".into()));
    WalshFile { version: 4, header_json: Cow::Owned(header), records }.to_bytes().expect("a writable model")
}

/// Newline, then printable ASCII from the space on: `n` characters (at most 96).
pub fn chars(n: usize) -> Vec<String> {
    std::iter::once('\n').chain(' '..='~').take(n).map(String::from).collect()
}

/// A character tokenizer.json with ids 0..n.
pub fn char_tokenizer(n: usize) -> Vec<u8> {
    CharVocab::new(&chars(n)).unwrap().to_tokenizer_json().into_bytes()
}

/// A character tokenizer.json of `n` characters whose last one has id `id` instead of n - 1.
pub fn char_tokenizer_with_id(n: usize, id: u32) -> Vec<u8> {
    let mut json: serde_json::Value = serde_json::from_slice(&char_tokenizer(n)).unwrap();
    let last = chars(n).pop().unwrap();
    json["model"]["vocab"][last.as_str()] = serde_json::Value::from(id);
    json.to_string().into_bytes()
}
