//! The generation loop: prefill the prompt in one pass, then one token per step, with the
//! context limit enforced (no silent garbage past `block_size`).

use thiserror::Error;

use crate::model::{Activations, InferenceError, KvCache, Model};
use crate::sampling::{Sampler, SamplingError, SamplingParams};

/// Why a generation stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StopReason {
    /// `max_tokens` tokens were generated.
    MaxTokens,
    /// The end-of-text token was generated (it is included in the ids).
    EndOfText,
    /// The context (block_size) is full: the last token could not be fed back.
    ContextLimit,
}

impl StopReason {
    /// The reason as the canister's interface spells it (`max_tokens`, `end_of_text`, `context_limit`).
    pub fn as_str(&self) -> &'static str {
        match self {
            StopReason::MaxTokens => "max_tokens",
            StopReason::EndOfText => "end_of_text",
            StopReason::ContextLimit => "context_limit",
        }
    }
}

/// Why a generation cannot start or go on.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum GenerateError {
    /// No prompt tokens.
    #[error("the prompt is empty (after tokenization)")]
    EmptyPrompt,
    /// The prompt does not fit the context.
    #[error("the prompt has {tokens} tokens but the model's context (block_size) is {block_size}")]
    PromptTooLong {
        /// Tokens in the prompt.
        tokens: usize,
        /// The model's context length.
        block_size: usize,
    },
    /// `max_tokens` is 0.
    #[error("max_tokens must be at least 1")]
    ZeroMaxTokens,
    /// Invalid sampling parameters, or nothing to sample.
    #[error(transparent)]
    Sampling(#[from] SamplingError),
    /// The forward pass refused its input (e.g. a token outside the vocabulary).
    #[error(transparent)]
    Inference(#[from] InferenceError),
}

/// How to generate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GenerateOptions {
    /// Most tokens to generate (at least 1).
    pub max_tokens: usize,
    /// Temperature, top-k, top-p.
    pub sampling: SamplingParams,
    /// Seed of the sampler's ChaCha20 stream (the same seed gives the same text everywhere).
    pub seed: u64,
    /// Stop after this token (usually the tokenizer's end-of-text id).
    pub stop_token: Option<u32>,
}

/// A resumable generation: call [`Generator::step`] until it returns `None`.
#[derive(Debug, Clone)]
pub struct Generator {
    cache: KvCache,
    sampler: Sampler,
    /// Tokens to feed on the next step: the prompt first, then the last sampled token.
    pending: Vec<u32>,
    generated: Vec<u32>,
    max_tokens: usize,
    stop_token: Option<u32>,
    stopped: Option<StopReason>,
    /// A forward pass paused between two positions or layers (see [`Generator::advance`]).
    in_flight: Option<Activations>,
}

/// What [`Generator::advance`] achieved before it was told to stop.
#[derive(Debug, Clone)]
pub enum Progress {
    /// A token was generated.
    Token(Step),
    /// The budget ran out in the middle of a forward pass; call again to resume it.
    Paused,
    /// Generation has stopped (see [`Generator::stop_reason`]).
    Done,
}

/// One generated token and the logits it was chosen from.
#[derive(Debug, Clone)]
pub struct Step {
    /// The token id (its logits: [`Generator::last_logits`]).
    pub token: u32,
}

impl Generator {
    /// A generation of up to `options.max_tokens` tokens after `prompt` (token ids), with a
    /// sampler seeded by `options.seed`. Reserves the key/value cache for every position it can
    /// reach. Errors: an empty prompt, one longer than the context or with an id outside the
    /// vocabulary, `max_tokens` 0, invalid sampling parameters.
    pub fn new(model: &Model, prompt: &[u32], options: &GenerateOptions) -> Result<Generator, GenerateError> {
        Self::with_sampler(model, prompt, options, Sampler::new(options.sampling, options.seed)?)
    }

    /// Like [`Generator::new`] with a sampler seeded by the caller (e.g. from `raw_rand`).
    pub fn with_sampler(model: &Model, prompt: &[u32], options: &GenerateOptions, sampler: Sampler) -> Result<Generator, GenerateError> {
        if prompt.is_empty() {
            return Err(GenerateError::EmptyPrompt);
        }
        let block_size = model.config.block_size;
        if prompt.len() > block_size {
            return Err(GenerateError::PromptTooLong { tokens: prompt.len(), block_size });
        }
        if let Some(&token) = prompt.iter().find(|&&t| t as usize >= model.config.vocab_size) {
            return Err(InferenceError::TokenOutOfRange { token, vocab_size: model.config.vocab_size }.into());
        }
        if options.max_tokens == 0 {
            return Err(GenerateError::ZeroMaxTokens);
        }
        // The positions this generation can reach, reserved up front (see `KvCache::reserve`).
        let mut cache = model.new_cache();
        cache.reserve(prompt.len().saturating_add(options.max_tokens));
        Ok(Generator {
            cache,
            sampler,
            pending: prompt.to_vec(),
            generated: Vec::new(),
            max_tokens: options.max_tokens,
            stop_token: options.stop_token,
            stopped: None,
            in_flight: None,
        })
    }

    /// Generates the next token, or returns `None` once generation has stopped.
    pub fn step(&mut self, model: &Model) -> Result<Option<Step>, GenerateError> {
        match self.advance(model, || true)? {
            Progress::Token(step) => Ok(Some(step)),
            Progress::Done => Ok(None),
            Progress::Paused => unreachable!("advance only pauses when asked to"),
        }
    }

    /// Like [`Generator::step`], but asks `may_continue` before each step of the forward pass —
    /// one position of one layer ([`Model::run_position`]) — and pauses (keeping the half-done
    /// pass) when it says no: how a caller with an instruction budget spreads a long prompt over
    /// several calls. No uninterrupted stretch runs more than one position of one layer, so a
    /// prompt of any length on any model pauses in time; resuming gives the same bits as an
    /// uninterrupted run.
    pub fn advance(&mut self, model: &Model, mut may_continue: impl FnMut() -> bool) -> Result<Progress, GenerateError> {
        if self.stopped.is_some() {
            return Ok(Progress::Done);
        }
        let mut act = match self.in_flight.take() {
            Some(act) => act,
            None => {
                if self.generated.len() >= self.max_tokens {
                    self.stopped = Some(StopReason::MaxTokens);
                    return Ok(Progress::Done);
                }
                if self.cache.len() + self.pending.len() > self.cache.capacity() {
                    self.stopped = Some(StopReason::ContextLimit);
                    return Ok(Progress::Done);
                }
                model.begin(&mut self.cache, &self.pending)?
            }
        };
        while act.next_layer() < model.layers.len() {
            if !may_continue() {
                self.in_flight = Some(act);
                return Ok(Progress::Paused);
            }
            model.run_position(&mut self.cache, &mut act)?;
        }
        let logits = model.finish(&mut self.cache, &act)?;
        let token = self.sampler.sample(logits)?;
        self.generated.push(token);
        self.pending.clear();
        self.pending.push(token);
        if Some(token) == self.stop_token {
            self.stopped = Some(StopReason::EndOfText);
        } else if self.generated.len() >= self.max_tokens {
            self.stopped = Some(StopReason::MaxTokens);
        }
        Ok(Progress::Token(Step { token }))
    }

    /// Ends generation early (e.g. an instruction budget that will not allow another token).
    pub fn stop(&mut self, reason: StopReason) {
        self.stopped.get_or_insert(reason);
        self.in_flight = None;
    }

    /// Whether a forward pass is paused half way.
    pub fn is_paused(&self) -> bool {
        self.in_flight.is_some()
    }

    /// Tokens the next forward pass will process (the prompt at first, then one).
    pub fn pending_tokens(&self) -> usize {
        self.pending.len()
    }

    /// The tokens generated so far.
    pub fn generated(&self) -> &[u32] {
        &self.generated
    }

    /// Why generation stopped (`None` while it goes on).
    pub fn stop_reason(&self) -> Option<&StopReason> {
        self.stopped.as_ref()
    }

    /// The logits the last token was sampled from (empty before the first token).
    pub fn last_logits(&self) -> &[f32] {
        self.cache.last_logits()
    }

    /// The key/value cache (its size: [`KvCache::bytes`]).
    pub fn cache(&self) -> &KvCache {
        &self.cache
    }
}
