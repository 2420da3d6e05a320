//! The forward pass with a KV cache, split into steps (embed → layer by layer → logits) so that a
//! caller with an instruction budget can stop between layers and resume in a later call.

use thiserror::Error;

use super::{Model, packed};

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum InferenceError {
    #[error("no tokens to process")]
    EmptyInput,
    #[error("token id {token} is outside the vocabulary (size {vocab_size})")]
    TokenOutOfRange { token: u32, vocab_size: usize },
    #[error("context full: {needed} positions needed, the model's context (block_size) is {capacity}")]
    ContextFull { needed: usize, capacity: usize },
    #[error("activations do not belong to this cache state (started at {expected}, cache holds {found})")]
    StaleActivations { expected: usize, found: usize },
    #[error("{done} of {total} layers have run; finish the pass before reading logits")]
    LayersPending { done: usize, total: usize },
}

/// Keys (after RoPE) and values of every processed position, per layer.
///
/// Grows with use rather than reserving `block_size` up front, so a short chat costs little memory.
#[derive(Debug, Clone, Default)]
pub struct KvCache {
    width: usize,
    capacity: usize,
    len: usize,
    keys: Vec<Vec<f32>>,
    values: Vec<Vec<f32>>,
    /// Working buffers of the forward pass, kept between tokens: a fresh zeroed buffer per call
    /// costs a `memory.fill` per byte on the IC (the logits alone are 4 bytes per vocabulary entry).
    scratch: Scratch,
}

#[derive(Debug, Clone, Default)]
struct Scratch {
    normed: Vec<f32>,
    q: Vec<f32>,
    k: Vec<f32>,
    v: Vec<f32>,
    scores: Vec<f32>,
    attended: Vec<f32>,
    mixed: Vec<f32>,
    projected: Vec<f32>,
    gate: Vec<f32>,
    up: Vec<f32>,
    logits: Vec<f32>,
}

impl Scratch {
    fn bytes(&self) -> usize {
        [&self.normed, &self.q, &self.k, &self.v, &self.scores, &self.attended, &self.mixed, &self.projected]
            .into_iter()
            .chain([&self.gate, &self.up, &self.logits])
            .map(|b| b.capacity() * 4)
            .sum()
    }
}

/// `buffer` resized to `n` (new entries zero; old contents are overwritten by the kernels).
fn sized(buffer: &mut Vec<f32>, n: usize) -> &mut [f32] {
    buffer.resize(n, 0.0);
    buffer
}

impl KvCache {
    /// Positions whose keys and values are committed.
    pub fn len(&self) -> usize {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    /// The model's context length.
    pub fn capacity(&self) -> usize {
        self.capacity
    }
    /// Makes room for `positions` positions in all (at most the context length) at once, so
    /// that appending never moves the keys and values: a grown `Vec` copies what it held, and
    /// on the IC (since 2026) every 64 KiB page a message reads or writes costs instructions.
    pub fn reserve(&mut self, positions: usize) {
        let total = positions.min(self.capacity) * self.width;
        for layer in self.keys.iter_mut().chain(self.values.iter_mut()) {
            layer.reserve_exact(total.saturating_sub(layer.len()));
        }
    }
    /// Forgets every position (a new conversation).
    pub fn clear(&mut self) {
        self.len = 0;
        self.keys.iter_mut().chain(self.values.iter_mut()).for_each(Vec::clear);
    }
    /// The logits of the last finished pass (empty before the first).
    pub fn last_logits(&self) -> &[f32] {
        &self.scratch.logits
    }
    /// Heap bytes currently used by keys and values.
    pub fn kv_bytes(&self) -> usize {
        self.keys.iter().chain(&self.values).map(|v| v.capacity() * 4).sum()
    }
    /// Heap bytes of the whole cache: keys, values and the forward pass's working buffers.
    pub fn bytes(&self) -> usize {
        self.kv_bytes() + self.scratch.bytes()
    }
}

/// The hidden states of the positions being processed, between layers.
#[derive(Debug, Clone)]
pub struct Activations {
    /// Absolute position of the first token.
    start: usize,
    count: usize,
    next_layer: usize,
    /// `[count][n_embd]`
    hidden: Vec<f32>,
}

impl Activations {
    pub fn next_layer(&self) -> usize {
        self.next_layer
    }
    pub fn token_count(&self) -> usize {
        self.count
    }
}

impl Model {
    pub fn new_cache(&self) -> KvCache {
        KvCache {
            width: self.config.n_embd,
            capacity: self.config.block_size,
            len: 0,
            keys: vec![Vec::new(); self.config.n_layer],
            values: vec![Vec::new(); self.config.n_layer],
            scratch: Scratch::default(),
        }
    }

    /// Runs `tokens` at the next positions of `cache` and returns the logits of the last one.
    pub fn forward(&self, cache: &mut KvCache, tokens: &[u32]) -> Result<Vec<f32>, InferenceError> {
        let mut act = self.begin(cache, tokens)?;
        while act.next_layer < self.layers.len() {
            self.run_layer(cache, &mut act)?;
        }
        self.finish(cache, &act).map(<[f32]>::to_vec)
    }

    /// Checks the tokens and embeds them. Any half-finished earlier pass is discarded.
    pub fn begin(&self, cache: &mut KvCache, tokens: &[u32]) -> Result<Activations, InferenceError> {
        if tokens.is_empty() {
            return Err(InferenceError::EmptyInput);
        }
        let needed = cache.len.saturating_add(tokens.len());
        if needed > cache.capacity {
            return Err(InferenceError::ContextFull { needed, capacity: cache.capacity });
        }
        let d = self.config.n_embd;
        let mut hidden = Vec::with_capacity(tokens.len() * d);
        for &token in tokens {
            let id = token as usize;
            if id >= self.config.vocab_size {
                return Err(InferenceError::TokenOutOfRange { token, vocab_size: self.config.vocab_size });
            }
            let scale = self.embedding.scale;
            hidden.extend(self.embedding.row(id).map(|q| f32::from(q) * scale));
        }
        // Drop keys/values a pass that was abandoned midway may have appended.
        for layer in cache.keys.iter_mut().chain(cache.values.iter_mut()) {
            layer.truncate(cache.len * cache.width);
        }
        Ok(Activations { start: cache.len, count: tokens.len(), next_layer: 0, hidden })
    }

    /// Runs the next layer over all positions of `act`, appending their keys and values.
    pub fn run_layer(&self, cache: &mut KvCache, act: &mut Activations) -> Result<(), InferenceError> {
        if act.start != cache.len {
            return Err(InferenceError::StaleActivations { expected: act.start, found: cache.len });
        }
        let Some(layer) = self.layers.get(act.next_layer) else {
            return Ok(());
        };
        let l = act.next_layer;
        let d = self.config.n_embd;
        let hd = self.config.head_dim();
        let hidden_dim = self.config.hidden_dim();
        let KvCache { keys, values, scratch, .. } = cache;
        let Scratch { normed, q, k, v, scores, attended, mixed, projected, gate, up, .. } = scratch;
        let normed = sized(normed, d);
        let q = sized(q, act.count * d);
        let (k, v) = (sized(k, d), sized(v, d));

        // q, k, v for every new position; k and v go straight into the cache.
        for (t, x) in act.hidden.chunks_exact(d).enumerate() {
            let pos = act.start + t;
            packed::rms_norm(x, &layer.attention_norm, normed);
            let qt = &mut q[t * d..(t + 1) * d];
            packed::ternary_linears(&mut [(&layer.wq, qt), (&layer.wk, k), (&layer.wv, v)], normed);
            packed::rope(qt, hd, pos, &self.rope);
            packed::rope(k, hd, pos, &self.rope);
            keys[l].extend_from_slice(k);
            values[l].extend_from_slice(v);
        }

        let scores = sized(scores, act.start + act.count);
        let attended = sized(attended, d);
        let mixed = sized(mixed, d);
        let projected = sized(projected, d);
        let gate = sized(gate, hidden_dim);
        let up = sized(up, hidden_dim);
        for (t, x) in act.hidden.chunks_exact_mut(d).enumerate() {
            let last = act.start + t;
            let qt = &q[t * d..(t + 1) * d];
            packed::attend(qt, &keys[l], &values[l], last, hd, scores, attended);
            let heads_out: &[f32] = match &layer.mixer {
                Some(mixer) => {
                    packed::head_mix(mixer, attended, mixed);
                    mixed
                }
                None => attended,
            };
            packed::ternary_linear(&layer.wo, heads_out, projected);
            packed::add_in_place(x, projected);

            packed::rms_norm(x, &layer.ffn_norm, normed);
            packed::ternary_linears(&mut [(&layer.gate, gate), (&layer.up, up)], normed);
            packed::swiglu(gate, up);
            packed::ternary_linear(&layer.down, gate, projected);
            packed::add_in_place(x, projected);
        }
        act.next_layer += 1;
        Ok(())
    }

    /// Commits the positions to the cache and returns the logits of the last position (a buffer
    /// of the cache, overwritten by the next pass).
    pub fn finish<'c>(&self, cache: &'c mut KvCache, act: &Activations) -> Result<&'c [f32], InferenceError> {
        if act.start != cache.len {
            return Err(InferenceError::StaleActivations { expected: act.start, found: cache.len });
        }
        if act.next_layer < self.layers.len() {
            return Err(InferenceError::LayersPending { done: act.next_layer, total: self.layers.len() });
        }
        cache.len += act.count;
        let d = self.config.n_embd;
        let last = &act.hidden[(act.count - 1) * d..];
        let Scratch { normed, logits, .. } = &mut cache.scratch;
        let normed = sized(normed, d);
        packed::rms_norm(last, &self.final_norm, normed);
        let logits = sized(logits, self.config.vocab_size);
        packed::int8_logits(self.output_head(), normed, logits);
        Ok(logits)
    }
}
