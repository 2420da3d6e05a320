//! The forward pass with a KV cache, split into steps (embed → one position of one layer at a time
//! → logits) so that a caller with an instruction budget can stop between any two steps and resume
//! in a later call: a long prompt on a wide model never has to run a whole layer at once.

use thiserror::Error;

use super::assembly::Model;
use crate::kernels;

/// Why a forward pass (or one of its steps) refuses its input.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum InferenceError {
    /// No tokens.
    #[error("no tokens to process")]
    EmptyInput,
    /// A token id outside the vocabulary.
    #[error("token id {token} is outside the vocabulary (size {vocab_size})")]
    TokenOutOfRange {
        /// The token id.
        token: u32,
        /// The model's vocabulary size.
        vocab_size: usize,
    },
    /// The tokens do not fit in the rest of the context.
    #[error("context full: {needed} positions needed, the model's context (block_size) is {capacity}")]
    ContextFull {
        /// Positions the cache would hold after these tokens.
        needed: usize,
        /// The model's context length (block_size).
        capacity: usize,
    },
    /// The activations were begun on another cache state (a pass begun since, or another cache).
    #[error("activations do not belong to this cache state (expected {expected} positions, cache holds {found})")]
    StaleActivations {
        /// Positions the activations expect in the cache (or in the layer's keys).
        expected: usize,
        /// Positions it holds.
        found: usize,
    },
    /// Logits asked for before every layer has run.
    #[error("{done} of {total} layers have run; finish the pass before reading logits")]
    LayersPending {
        /// Layers run.
        done: usize,
        /// Layers of the model.
        total: usize,
    },
}

/// Keys (after RoPE) and values of every processed position, per layer (`[positions][n_embd]`
/// f32 each), and the forward pass's working buffers.
///
/// Grows with use (or as far as [`KvCache::reserve`] says) rather than reserving `block_size` up
/// front, so a short chat costs little memory.
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
    /// Whether no position is committed.
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
    /// Positions of `next_layer` already run (`0..count`; back to 0 when the layer is done).
    next_position: usize,
    /// `[count][n_embd]`
    hidden: Vec<f32>,
}

impl Activations {
    /// The layer the next step runs (`n_layer` once every layer is done).
    pub fn next_layer(&self) -> usize {
        self.next_layer
    }
    /// The position (`0..token_count`, relative to the first token) the next step runs in
    /// [`Activations::next_layer`].
    pub fn next_position(&self) -> usize {
        self.next_position
    }
    /// Tokens this pass processes.
    pub fn token_count(&self) -> usize {
        self.count
    }
}

impl Model {
    /// An empty cache for this model (keys and values grow with use; see [`KvCache::reserve`]).
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
            self.run_position(cache, &mut act)?;
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
            let scale = self.embedding.scale();
            hidden.extend(self.embedding.row(id).map(|q| f32::from(q) * scale));
        }
        // Drop keys/values a pass that was abandoned midway may have appended.
        for layer in cache.keys.iter_mut().chain(cache.values.iter_mut()) {
            layer.truncate(cache.len * cache.width);
        }
        Ok(Activations { start: cache.len, count: tokens.len(), next_layer: 0, next_position: 0, hidden })
    }

    /// Runs the rest of the current layer (all its positions not run yet), appending their keys
    /// and values.
    pub fn run_layer(&self, cache: &mut KvCache, act: &mut Activations) -> Result<(), InferenceError> {
        let layer = act.next_layer;
        while act.next_layer == layer && layer < self.layers.len() {
            self.run_position(cache, act)?;
        }
        Ok(())
    }

    /// Runs one position of the current layer — q, k, v (k and v go into the cache), attention
    /// over the positions up to it, the output projection and the feed-forward block — and
    /// moves on to the next position, or to the next layer after the last one. A position's
    /// attention needs only the keys of the positions before it and its own, so running the
    /// positions one by one gives the same bits as running q, k, v of all of them first.
    pub fn run_position(&self, cache: &mut KvCache, act: &mut Activations) -> Result<(), InferenceError> {
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
        // The keys of this layer must be those of the positions before this one: a pass begun
        // since (which truncates them) makes these activations stale.
        let pos = act.start + act.next_position;
        if keys[l].len() != pos * d {
            return Err(InferenceError::StaleActivations { expected: pos, found: keys[l].len() / d.max(1) });
        }
        let Scratch { normed, q, k, v, scores, attended, mixed, projected, gate, up, .. } = scratch;
        let normed = sized(normed, d);
        let (q, k, v) = (sized(q, d), sized(k, d), sized(v, d));
        let x = &mut act.hidden[act.next_position * d..][..d];

        // q, k, v of this position; k and v go straight into the cache.
        kernels::rms_norm(x, &layer.attention_norm, normed);
        kernels::ternary_linears(&mut [(&layer.wq, q), (&layer.wk, k), (&layer.wv, v)], normed);
        kernels::rope(q, hd, pos, &self.rope);
        kernels::rope(k, hd, pos, &self.rope);
        keys[l].extend_from_slice(k);
        values[l].extend_from_slice(v);

        // Sized for the whole pass, as when the positions ran together (`attend` uses `..=pos`).
        let scores = sized(scores, act.start + act.count);
        let attended = sized(attended, d);
        let mixed = sized(mixed, d);
        let projected = sized(projected, d);
        let gate = sized(gate, hidden_dim);
        let up = sized(up, hidden_dim);
        kernels::attend(q, &keys[l], &values[l], pos, hd, scores, attended);
        let heads_out: &[f32] = match &layer.mixer {
            Some(mixer) => {
                kernels::head_mix(mixer, attended, mixed);
                mixed
            }
            None => attended,
        };
        kernels::ternary_linear(&layer.wo, heads_out, projected);
        kernels::add_in_place(x, projected);

        kernels::rms_norm(x, &layer.ffn_norm, normed);
        kernels::ternary_linears(&mut [(&layer.gate, gate), (&layer.up, up)], normed);
        kernels::swiglu(gate, up);
        kernels::ternary_linear(&layer.down, gate, projected);
        kernels::add_in_place(x, projected);

        act.next_position += 1;
        if act.next_position == act.count {
            act.next_position = 0;
            act.next_layer += 1;
        }
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
        kernels::rms_norm(last, &self.final_norm, normed);
        let logits = sized(logits, self.config.vocab_size);
        kernels::int8_logits(self.output_head(), normed, logits);
        Ok(logits)
    }
}
