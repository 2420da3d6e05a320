//! The canister's logic, free of ic-cdk so that it runs and is tested natively: uploads with
//! verification and atomic activation, the heap-resident model, budgeted generation for queries
//! and sessions, and bookkeeping. The endpoints pass in who calls, the time, and a way to read
//! the instruction counter.

use std::collections::{BTreeMap, VecDeque};

use candid::Principal;
use ic_stable_structures::Memory;
use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};
use sha2::{Digest, Sha256};
use walsh_engine::generate::{GenerateOptions, Generator, Progress, StopReason as EngineStop};
use walsh_engine::model::Model;
use walsh_engine::sampling::{Sampler, SamplingParams};
use walsh_engine::tokenizer::{TextStream, Tokenizer};

use crate::api::*;
use crate::storage::{Meta, Storage};

/// Largest upload chunk: under the 2 MiB ingress limit with room for the envelope.
pub const MAX_CHUNK: usize = 1_900_000;
/// Instructions a `generate` query may use, of the IC's 5 B query limit. Safe because the
/// counter is checked before every step (a layer, or the output layer: ~17 M on gpt2-bench) and
/// no step starts unless twice the largest step so far still fits: the 100 M of headroom are
/// for the reply's encoding, a few thousand instructions.
pub const QUERY_BUDGET: u64 = 4_900_000_000;
/// Default and largest per-call budget of a session call, of the 40 B update limit.
pub const DEFAULT_CALL_BUDGET: u64 = 20_000_000_000;
pub const MAX_CALL_BUDGET: u64 = 35_000_000_000;
/// Smallest per-call budget, of the controller's setting or a caller's request.
pub const MIN_CALL_BUDGET: u64 = 1_000_000;
pub const MAX_TOKENS: u32 = 4096;
pub const MAX_PROMPT_BYTES: usize = 100_000;
const RECENT_CALLS: usize = 32;

/// What a call knows about its environment.
pub struct Context<'a> {
    pub caller: Principal,
    pub is_controller: bool,
    pub now_ns: u64,
    /// Instructions used so far by the current message.
    pub instructions: &'a dyn Fn() -> u64,
}

struct Session {
    owner: Principal,
    generator: Generator,
    stream: TextStream,
    prompt_ids: Vec<u32>,
    text: String,
    last_active_ns: u64,
    /// The budget asked for at `session_start`, for calls that ask for none.
    call_budget: Option<u64>,
}

impl Session {
    fn finished(&self) -> bool {
        self.generator.stop_reason().is_some()
    }
}

/// A caller's requested per-call budget, checked.
fn requested_budget(options: Option<&CallOptions>) -> Result<Option<u64>, Error> {
    match options.and_then(|o| o.call_budget) {
        Some(budget) if budget < MIN_CALL_BUDGET => Err(Error::InvalidArgument(format!(
            "call_budget must be at least {MIN_CALL_BUDGET}"
        ))),
        budget => Ok(budget),
    }
}

pub struct Service<M: Memory + Clone> {
    storage: Storage<M>,
    model: Option<Model>,
    /// The model's JSON header, for `model_info`.
    header_json: Option<String>,
    tokenizer: Option<Tokenizer>,
    /// Running sha256 of each upload (model, tokenizer) and how many bytes it covers. Lost on
    /// upgrade; rebuilt from the staged bytes when needed.
    hashers: [Option<(u64, Sha256)>; 2],
    sessions: BTreeMap<u64, Session>,
    next_session: u64,
    recent: VecDeque<u64>,
    seeds: ChaCha20Rng,
}

fn index(kind: BlobKind) -> usize {
    match kind {
        BlobKind::Model => 0,
        BlobKind::Tokenizer => 1,
    }
}

fn stop_reason(reason: Option<&EngineStop>) -> StopReason {
    match reason {
        Some(EngineStop::EndOfText) => StopReason::EndOfText,
        Some(EngineStop::ContextLimit) => StopReason::ContextFull,
        Some(EngineStop::MaxTokens) | None => StopReason::MaxTokens,
    }
}

/// Decides between layers whether another one fits: the largest cost seen between two checks
/// (a layer, or the logits plus sampling plus the next layer), twice, must fit in what is left.
struct Budget<'a> {
    instructions: &'a dyn Fn() -> u64,
    limit: u64,
    last: u64,
    largest_step: u64,
}

impl<'a> Budget<'a> {
    fn new(instructions: &'a dyn Fn() -> u64, limit: u64) -> Budget<'a> {
        let now = instructions();
        Budget {
            instructions,
            limit,
            last: now,
            largest_step: 0,
        }
    }

    fn may_continue(&mut self) -> bool {
        let now = (self.instructions)();
        self.largest_step = self.largest_step.max(now.saturating_sub(self.last));
        self.last = now;
        now.saturating_add(self.largest_step.saturating_mul(2)) < self.limit
    }
}

impl<M: Memory + Clone> Service<M> {
    /// Opens the stable layout and loads the active model and tokenizer, if any (at install,
    /// and in `post_upgrade`).
    pub fn new(memory: M, settings: Option<Settings>) -> Result<Service<M>, Error> {
        let defaults = Meta {
            layout_version: 1,
            call_budget: DEFAULT_CALL_BUDGET,
            max_sessions: 64,
            max_sessions_per_caller: 4,
            session_timeout_seconds: 600,
            ..Meta::default()
        };
        let storage = Storage::init(memory, defaults);
        let mut service = Service {
            storage,
            model: None,
            header_json: None,
            tokenizer: None,
            hashers: [None, None],
            sessions: BTreeMap::new(),
            next_session: 1,
            recent: VecDeque::new(),
            seeds: ChaCha20Rng::seed_from_u64(0),
        };
        if let Some(settings) = settings {
            service.apply_settings(settings)?;
        }
        if let Some(bytes) = service.storage.active_bytes(BlobKind::Model) {
            service.header_json = header_of(&bytes);
            // The model keeps the file bytes and reads its int8 embedding in place.
            service.model =
                Some(Model::load_owned(bytes).map_err(|e| Error::InvalidModel(e.to_string()))?);
        }
        if let Some(bytes) = service.storage.active_bytes(BlobKind::Tokenizer) {
            let tokenizer =
                Tokenizer::from_json(&bytes).map_err(|e| Error::InvalidTokenizer(e.to_string()))?;
            warm_up(&tokenizer);
            service.tokenizer = Some(tokenizer);
        }
        Ok(service)
    }

    /// Seeds the stream that picks seeds for requests without one (from `raw_rand`).
    pub fn reseed(&mut self, seed: [u8; 32]) {
        self.seeds = ChaCha20Rng::from_seed(seed);
    }

    fn apply_settings(&mut self, s: Settings) -> Result<(), Error> {
        if let Some(budget) = s.call_budget {
            if !(MIN_CALL_BUDGET..=MAX_CALL_BUDGET).contains(&budget) {
                return Err(Error::InvalidArgument(format!(
                    "call_budget must be in {MIN_CALL_BUDGET}..={MAX_CALL_BUDGET}"
                )));
            }
        }
        if s.max_sessions == Some(0) || s.max_sessions_per_caller == Some(0) {
            return Err(Error::InvalidArgument(
                "session limits must be at least 1".into(),
            ));
        }
        self.storage.update_meta(|m| {
            m.call_budget = s.call_budget.unwrap_or(m.call_budget);
            m.max_sessions = s.max_sessions.unwrap_or(m.max_sessions);
            m.max_sessions_per_caller = s
                .max_sessions_per_caller
                .unwrap_or(m.max_sessions_per_caller);
            m.session_timeout_seconds = s
                .session_timeout_seconds
                .unwrap_or(m.session_timeout_seconds);
        });
        Ok(())
    }

    pub fn configure(&mut self, ctx: &Context<'_>, settings: Settings) -> Result<(), Error> {
        if !ctx.is_controller {
            return Err(Error::NotAuthorized);
        }
        self.apply_settings(settings)
    }

    // ---- uploads ---------------------------------------------------------------------------

    pub fn upload_status(&self, kind: BlobKind) -> UploadStatus {
        let blob = self.storage.blob(kind);
        UploadStatus {
            kind,
            in_progress: blob.uploading,
            received: if blob.uploading { blob.received } else { 0 },
            active_size: blob.active.map(|_| blob.active_size),
            active_sha256: blob.active.map(|_| blob.active_sha256.clone()),
        }
    }

    pub fn upload_start(
        &mut self,
        ctx: &Context<'_>,
        kind: BlobKind,
    ) -> Result<UploadStatus, Error> {
        if !ctx.is_controller {
            return Err(Error::NotAuthorized);
        }
        self.storage.begin_upload(kind);
        self.hashers[index(kind)] = Some((0, Sha256::new()));
        Ok(self.upload_status(kind))
    }

    /// Writes `bytes` at `offset`. A chunk repeated after a timeout (same bytes, same offset) is
    /// accepted again without effect; the data must otherwise continue where it stops.
    pub fn upload_chunk(
        &mut self,
        ctx: &Context<'_>,
        kind: BlobKind,
        offset: u64,
        bytes: &[u8],
    ) -> Result<UploadStatus, Error> {
        if !ctx.is_controller {
            return Err(Error::NotAuthorized);
        }
        if bytes.len() > MAX_CHUNK {
            return Err(Error::ChunkTooLarge {
                max: MAX_CHUNK as u64,
            });
        }
        let blob = self.storage.blob(kind).clone();
        if !blob.uploading {
            return Err(Error::UploadNotStarted);
        }
        if offset > blob.received {
            return Err(Error::ChunkOutOfOrder {
                expected_offset: blob.received,
            });
        }
        // Bytes already received must match; the rest is appended.
        let overlap = ((blob.received - offset) as usize).min(bytes.len());
        if overlap > 0 && self.storage.read_staging(kind, offset, overlap) != bytes[..overlap] {
            return Err(Error::ChunkMismatch { offset });
        }
        let fresh = &bytes[overlap..];
        if !fresh.is_empty() {
            self.hasher(kind);
            self.storage.append(kind, fresh)?;
            if let Some((covered, hasher)) = &mut self.hashers[index(kind)] {
                hasher.update(fresh);
                *covered += fresh.len() as u64;
            }
        }
        Ok(self.upload_status(kind))
    }

    /// The running hash, rebuilt from stable memory if the heap lost it (an upgrade).
    fn hasher(&mut self, kind: BlobKind) -> Sha256 {
        let received = self.storage.blob(kind).received;
        match &self.hashers[index(kind)] {
            Some((covered, hasher)) if *covered == received => hasher.clone(),
            _ => {
                let mut hasher = Sha256::new();
                hasher.update(self.storage.staging_bytes(kind));
                self.hashers[index(kind)] = Some((received, hasher.clone()));
                hasher
            }
        }
    }

    /// Verifies size and sha256, parses and validates the blob, and only then makes it active.
    /// On any failure the previous blob keeps serving and the upload can be retried.
    pub fn upload_finish(
        &mut self,
        ctx: &Context<'_>,
        kind: BlobKind,
        size: u64,
        sha256: Vec<u8>,
    ) -> Result<ModelInfo, Error> {
        if !ctx.is_controller {
            return Err(Error::NotAuthorized);
        }
        let blob = self.storage.blob(kind).clone();
        if !blob.uploading {
            return Err(Error::UploadNotStarted);
        }
        if blob.received != size {
            return Err(Error::SizeMismatch {
                expected: size,
                received: blob.received,
            });
        }
        let actual = self.hasher(kind).finalize().to_vec();
        if actual != sha256 {
            return Err(Error::HashMismatch {
                expected: sha256,
                actual,
            });
        }
        let bytes = self.storage.staging_bytes(kind);
        match kind {
            BlobKind::Model => {
                let header_json = header_of(&bytes);
                // The model keeps the file bytes and reads its int8 embedding in place.
                let model =
                    Model::load_owned(bytes).map_err(|e| Error::InvalidModel(e.to_string()))?;
                self.header_json = header_json;
                if let Some(tokenizer) = &self.tokenizer {
                    check_compatible(&model, tokenizer)?;
                }
                self.storage.activate(kind, actual);
                self.model = Some(model);
            }
            BlobKind::Tokenizer => {
                let tokenizer = Tokenizer::from_json(&bytes)
                    .map_err(|e| Error::InvalidTokenizer(e.to_string()))?;
                if let Some(model) = &self.model {
                    check_compatible(model, &tokenizer)?;
                }
                warm_up(&tokenizer);
                self.storage.activate(kind, actual);
                self.tokenizer = Some(tokenizer);
            }
        }
        // Sessions were computed with the previous model or tokenizer.
        self.sessions.clear();
        self.hashers[index(kind)] = None;
        self.model_info()
    }

    // ---- information -----------------------------------------------------------------------

    pub fn model_info(&self) -> Result<ModelInfo, Error> {
        let model = self.model.as_ref().ok_or(Error::NoModel)?;
        let c = &model.config;
        let meta = self.storage.meta();
        Ok(ModelInfo {
            config_json: self.header_json.clone().unwrap_or_default(),
            n_layer: c.n_layer as u32,
            n_head: c.n_head as u32,
            n_embd: c.n_embd as u32,
            block_size: c.block_size as u32,
            vocab_size: c.vocab_size as u32,
            head_mixing: c.head_mixing,
            model_bytes: meta.model.active_size,
            model_sha256: meta.model.active_sha256.clone(),
            tokenizer: self.tokenizer.as_ref().map(|t| TokenizerInfo {
                kind: t.kind().to_string(),
                vocab_size: t.vocab_size() as u32,
                bytes: meta.tokenizer.active_size,
                sha256: meta.tokenizer.active_sha256.clone(),
            }),
        })
    }

    pub fn stats(&self, heap_bytes: u64, stable_bytes: u64) -> Stats {
        Stats {
            sessions: self.sessions.len() as u64,
            heap_bytes,
            stable_bytes,
            model_heap_bytes: self.model.as_ref().map_or(0, |m| m.weight_bytes() as u64),
            session_heap_bytes: self.sessions.values().map(|s| s.generator.cache().bytes() as u64).sum(),
            recent_instructions_per_token: self.recent.iter().copied().collect(),
            call_budget: self.storage.meta().call_budget,
        }
    }

    fn record(&mut self, instructions: u64, tokens: usize) {
        if tokens > 0 {
            if self.recent.len() == RECENT_CALLS {
                self.recent.pop_front();
            }
            self.recent.push_back(instructions / tokens as u64);
        }
    }
}

fn header_of(bytes: &[u8]) -> Option<String> {
    walsh_engine::format::WalshFile::parse(bytes)
        .ok()
        .map(|f| f.header_json.to_string())
}

/// The first `encode` initialises regex and Unicode tables (~20 M instructions); doing it once
/// on load keeps that cost out of user calls (queries would pay it every time: they never keep
/// heap changes).
fn warm_up(tokenizer: &Tokenizer) {
    let _ = tokenizer.encode("Warm up the tokenizer, once.");
}

fn check_compatible(model: &Model, tokenizer: &Tokenizer) -> Result<(), Error> {
    if tokenizer.vocab_size() > model.config.vocab_size {
        return Err(Error::Incompatible(format!(
            "the tokenizer has {} tokens but the model only {}",
            tokenizer.vocab_size(),
            model.config.vocab_size
        )));
    }
    Ok(())
}

/// A request checked and turned into the engine's terms.
struct Prepared {
    prompt_ids: Vec<u32>,
    options: GenerateOptions,
}

impl<M: Memory + Clone> Service<M> {
    fn prepare(&mut self, request: &GenerateRequest, now_ns: u64) -> Result<Prepared, Error> {
        let model = self.model.as_ref().ok_or(Error::NoModel)?;
        let tokenizer = self.tokenizer.as_ref().ok_or(Error::NoTokenizer)?;
        if request.prompt.is_empty() {
            return Err(Error::EmptyPrompt);
        }
        if request.prompt.len() > MAX_PROMPT_BYTES {
            return Err(Error::InvalidArgument(format!(
                "the prompt is longer than {MAX_PROMPT_BYTES} bytes"
            )));
        }
        if request.max_tokens == 0 || request.max_tokens > MAX_TOKENS {
            return Err(Error::InvalidArgument(format!(
                "max_tokens must be in 1..={MAX_TOKENS}"
            )));
        }
        let sampling = SamplingParams {
            temperature: request.temperature.unwrap_or(0.0),
            top_k: request.top_k.map(|k| k as usize),
            top_p: request.top_p,
        };
        sampling
            .validate()
            .map_err(|e| Error::InvalidArgument(e.to_string()))?;
        let prompt_ids = tokenizer
            .encode(&request.prompt)
            .map_err(|e| Error::InvalidArgument(e.to_string()))?;
        if prompt_ids.is_empty() {
            return Err(Error::EmptyPrompt);
        }
        let limit = model.config.block_size;
        if prompt_ids.len() > limit {
            return Err(Error::PromptTooLong {
                tokens: prompt_ids.len() as u64,
                limit: limit as u64,
            });
        }
        let seed = match request.seed {
            Some(seed) => seed,
            // Mixed with the time so that queries (whose state changes never persist) differ.
            None => self.seeds.next_u64() ^ now_ns.rotate_left(17),
        };
        let options = GenerateOptions {
            max_tokens: request.max_tokens as usize,
            sampling,
            seed,
            stop_token: tokenizer.end_of_text(),
        };
        Ok(Prepared {
            prompt_ids,
            options,
        })
    }

    fn new_generator(&self, prepared: &Prepared) -> Result<Generator, Error> {
        let model = self.model.as_ref().ok_or(Error::NoModel)?;
        let sampler = Sampler::new(prepared.options.sampling, prepared.options.seed)
            .map_err(|e| Error::InvalidArgument(e.to_string()))?;
        Generator::with_sampler(model, &prepared.prompt_ids, &prepared.options, sampler)
            .map_err(|e| Error::InvalidArgument(e.to_string()))
    }

    /// One-shot generation inside a query's budget: as many tokens as fit, then `Budget`.
    pub fn generate(
        &mut self,
        ctx: &Context<'_>,
        request: GenerateRequest,
    ) -> Result<Generation, Error> {
        let start = (ctx.instructions)();
        let prepared = self.prepare(&request, ctx.now_ns)?;
        let mut generator = self.new_generator(&prepared)?;
        let model = self.model.as_ref().ok_or(Error::NoModel)?;
        let mut budget = Budget::new(ctx.instructions, QUERY_BUDGET);
        let mut stop = None;
        loop {
            match generator
                .advance(model, || budget.may_continue())
                .map_err(|e| Error::InvalidArgument(e.to_string()))?
            {
                Progress::Token(_) => {}
                Progress::Done => break,
                Progress::Paused => {
                    if generator.generated().is_empty() {
                        return Err(Error::PromptNeedsSession);
                    }
                    stop = Some(StopReason::Budget);
                    break;
                }
            }
        }
        let ids = generator.generated().to_vec();
        let tokenizer = self.tokenizer.as_ref().ok_or(Error::NoTokenizer)?;
        let text = tokenizer
            .decode(&ids)
            .map_err(|e| Error::InvalidArgument(e.to_string()))?;
        let instructions = (ctx.instructions)().saturating_sub(start);
        self.record(instructions, ids.len());
        Ok(Generation {
            text,
            ids,
            prompt_ids: prepared.prompt_ids,
            stop: stop.unwrap_or_else(|| stop_reason(generator.stop_reason())),
            instructions,
        })
    }

    // ---- sessions --------------------------------------------------------------------------

    fn expire(&mut self, now_ns: u64) {
        let timeout = self
            .storage
            .meta()
            .session_timeout_seconds
            .saturating_mul(1_000_000_000);
        self.sessions
            .retain(|_, s| now_ns.saturating_sub(s.last_active_ns) <= timeout);
    }

    /// Starts a session and runs it as far as this call's budget allows.
    pub fn session_start(
        &mut self,
        ctx: &Context<'_>,
        request: GenerateRequest,
        options: Option<CallOptions>,
    ) -> Result<SessionChunk, Error> {
        self.expire(ctx.now_ns);
        let call_budget = requested_budget(options.as_ref())?;
        // A finished session only waits to be read: the caller's own make room for the new
        // one, and the limits count running sessions (finished ones go first when all are taken).
        self.sessions
            .retain(|_, s| !(s.owner == ctx.caller && s.finished()));
        let meta = self.storage.meta();
        let (total, per_caller) = (
            meta.max_sessions as usize,
            meta.max_sessions_per_caller as usize,
        );
        if self.sessions.len() >= total {
            self.sessions.retain(|_, s| !s.finished());
        }
        if self.sessions.len() >= total {
            return Err(Error::TooManySessions {
                limit: total as u64,
            });
        }
        if self
            .sessions
            .values()
            .filter(|s| s.owner == ctx.caller)
            .count()
            >= per_caller
        {
            return Err(Error::TooManySessions {
                limit: per_caller as u64,
            });
        }
        let prepared = self.prepare(&request, ctx.now_ns)?;
        let generator = self.new_generator(&prepared)?;
        let id = self.next_session;
        self.next_session += 1;
        self.sessions.insert(
            id,
            Session {
                owner: ctx.caller,
                generator,
                stream: TextStream::new(),
                prompt_ids: prepared.prompt_ids,
                text: String::new(),
                last_active_ns: ctx.now_ns,
                call_budget,
            },
        );
        self.session_continue(ctx, id, None)
    }

    /// Continues a session for one call's budget: the rest of the prompt, then tokens.
    /// The budget is the one `options` asks for, else the session's, else the controller's,
    /// and never more than the controller's.
    pub fn session_continue(
        &mut self,
        ctx: &Context<'_>,
        id: u64,
        options: Option<CallOptions>,
    ) -> Result<SessionChunk, Error> {
        let start = (ctx.instructions)();
        self.expire(ctx.now_ns);
        let requested = requested_budget(options.as_ref())?;
        let limit = self.storage.meta().call_budget;
        let model = self.model.as_ref().ok_or(Error::NoModel)?;
        let tokenizer = self.tokenizer.as_ref().ok_or(Error::NoTokenizer)?;
        let session = self.sessions.get_mut(&id).ok_or(Error::UnknownSession)?;
        if session.owner != ctx.caller {
            return Err(Error::NotYourSession);
        }
        session.last_active_ns = ctx.now_ns;
        let call_budget = requested
            .or(session.call_budget)
            .map_or(limit, |b| b.min(limit));
        let mut budget = Budget::new(ctx.instructions, start.saturating_add(call_budget));
        let mut ids = Vec::new();
        let mut text = String::new();
        loop {
            match session
                .generator
                .advance(model, || budget.may_continue())
                .map_err(|e| Error::InvalidArgument(e.to_string()))?
            {
                Progress::Token(step) => {
                    ids.push(step.token);
                    let piece = session
                        .stream
                        .push(tokenizer, step.token)
                        .map_err(|e| Error::InvalidArgument(e.to_string()))?;
                    text.push_str(&piece);
                }
                Progress::Done => {
                    let rest = session
                        .stream
                        .flush(tokenizer)
                        .map_err(|e| Error::InvalidArgument(e.to_string()))?;
                    text.push_str(&rest);
                    break;
                }
                Progress::Paused => break,
            }
        }
        session.text.push_str(&text);
        let prompt_remaining = if session.generator.generated().is_empty() {
            session.prompt_ids.len() as u64
        } else {
            0
        };
        let stop = session
            .generator
            .stop_reason()
            .map(|r| stop_reason(Some(r)));
        let instructions = (ctx.instructions)().saturating_sub(start);
        self.record(instructions, ids.len());
        Ok(SessionChunk {
            session: id,
            text,
            ids,
            prompt_remaining,
            stop,
            instructions,
        })
    }

    pub fn session_get(&self, ctx: &Context<'_>, id: u64) -> Result<SessionView, Error> {
        let session = self.sessions.get(&id).ok_or(Error::UnknownSession)?;
        if session.owner != ctx.caller {
            return Err(Error::NotYourSession);
        }
        Ok(SessionView {
            session: id,
            prompt_ids: session.prompt_ids.clone(),
            ids: session.generator.generated().to_vec(),
            text: session.text.clone(),
            stop: session
                .generator
                .stop_reason()
                .map(|r| stop_reason(Some(r))),
            heap_bytes: session.generator.cache().bytes() as u64,
        })
    }

    pub fn session_cancel(&mut self, ctx: &Context<'_>, id: u64) -> Result<(), Error> {
        let session = self.sessions.get(&id).ok_or(Error::UnknownSession)?;
        if session.owner != ctx.caller {
            return Err(Error::NotYourSession);
        }
        self.sessions.remove(&id);
        Ok(())
    }
}
