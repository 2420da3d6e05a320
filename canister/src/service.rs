//! The canister's logic, free of ic-cdk so that it runs and is tested natively: uploads with
//! verification and atomic activation, the heap-resident model, budgeted generation for queries
//! and sessions, and bookkeeping. The endpoints pass in who calls, the time, and a way to read
//! the instruction counter.

use std::collections::{BTreeMap, VecDeque};

use candid::Principal;
use ic_stable_structures::Memory;
use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};
use walsh_engine::generate::{GenerateOptions, Generator, Progress, StopReason as EngineStop};
use walsh_engine::model::Model;
use walsh_engine::sampling::{Sampler, SamplingParams};
use walsh_engine::tokenizer::{TextStream, Tokenizer};

use crate::api::*;
use crate::storage::{LAYOUT_VERSION, Meta, Storage};

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
/// The heap budget a controller may set: at least room for a small model, at most the 4 GiB
/// of a wasm32 heap.
pub const MIN_HEAP_BUDGET: u64 = 64 << 20;
pub const MAX_HEAP_BUDGET: u64 = 4 << 30;
const RECENT_CALLS: usize = 32;
/// The heap budget when the controller sets none: the IC's default `wasm_memory_limit` is
/// 3 GiB, and the last GiB is the room an upload's activation needs (see `Settings`).
pub const DEFAULT_HEAP_BUDGET: u64 = 2 << 30;
/// Heap the runtime, the page and the call's own buffers take beside what is accounted.
const RUNTIME_HEAP: u64 = 32 << 20;
/// A parsed tokenizer.json takes several times its size in maps (an estimate, generous).
const TOKENIZER_HEAP_PER_BYTE: u64 = 8;

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
    /// The running generation; dropped when it finishes, which frees its cache at once.
    generator: Option<Generator>,
    stream: TextStream,
    prompt_ids: Vec<u32>,
    /// Every id generated so far, and the text they decoded to.
    ids: Vec<u32>,
    text: String,
    stop: Option<StopReason>,
    /// Heap admitted for the generation at its full context (0 once finished).
    reserved_bytes: u64,
    last_active_ns: u64,
    /// The budget asked for at `session_start`, for calls that ask for none.
    call_budget: Option<u64>,
}

impl Session {
    fn finished(&self) -> bool {
        self.generator.is_none()
    }
}

/// A caller's requested per-call budget, checked.
fn requested_budget(options: Option<&CallOptions>) -> Result<Option<u64>, Error> {
    match options.and_then(|o| o.call_budget) {
        Some(budget) if budget < MIN_CALL_BUDGET => Err(Error::InvalidArgument(format!("call_budget must be at least {MIN_CALL_BUDGET}"))),
        budget => Ok(budget),
    }
}

pub struct Service<M: Memory + Clone> {
    storage: Storage<M>,
    model: Option<Model>,
    /// The model's JSON header, for `model_info`.
    header_json: Option<String>,
    tokenizer: Option<Tokenizer>,
    /// Which ids of the model the tokenizer decodes, for `generate` and sessions.
    vocabulary: Option<Vocabulary>,
    sessions: BTreeMap<u64, Session>,
    recent: VecDeque<u64>,
    seeds: ChaCha20Rng,
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
        Budget { instructions, limit, last: now, largest_step: 0 }
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
            layout_version: LAYOUT_VERSION,
            call_budget: DEFAULT_CALL_BUDGET,
            max_sessions: 64,
            max_sessions_per_caller: 4,
            session_timeout_seconds: 600,
            ..Meta::default()
        };
        let storage = Storage::init(memory, defaults);
        let found = storage.meta().layout_version;
        if found != LAYOUT_VERSION {
            return Err(Error::Internal(format!("stable memory has layout version {found}, this code reads {LAYOUT_VERSION}")));
        }
        let mut service = Service {
            storage,
            model: None,
            header_json: None,
            tokenizer: None,
            vocabulary: None,
            sessions: BTreeMap::new(),
            recent: VecDeque::new(),
            seeds: ChaCha20Rng::seed_from_u64(0),
        };
        if let Some(settings) = settings {
            service.apply_settings(settings)?;
        }
        if let Some(bytes) = service.storage.active_bytes(BlobKind::Model) {
            service.header_json = header_of(&bytes);
            // The model keeps the file bytes and reads its int8 embedding in place.
            service.model = Some(Model::load_owned(bytes).map_err(|e| Error::InvalidModel(e.to_string()))?);
        }
        if let Some(bytes) = service.storage.active_bytes(BlobKind::Tokenizer) {
            let tokenizer = Tokenizer::from_json(&bytes).map_err(|e| Error::InvalidTokenizer(e.to_string()))?;
            warm_up(&tokenizer);
            service.tokenizer = Some(tokenizer);
        }
        if let (Some(model), Some(tokenizer)) = (&service.model, &service.tokenizer) {
            service.vocabulary = Some(Vocabulary::check(model, tokenizer)?);
        }
        Ok(service)
    }

    /// Seeds the stream that picks seeds for requests without one (from `raw_rand`).
    pub fn reseed(&mut self, seed: [u8; 32]) {
        self.seeds = ChaCha20Rng::from_seed(seed);
    }

    fn apply_settings(&mut self, s: Settings) -> Result<(), Error> {
        if let Some(budget) = s.call_budget
            && !(MIN_CALL_BUDGET..=MAX_CALL_BUDGET).contains(&budget)
        {
            return Err(Error::InvalidArgument(format!("call_budget must be in {MIN_CALL_BUDGET}..={MAX_CALL_BUDGET}")));
        }
        if s.max_sessions == Some(0) || s.max_sessions_per_caller == Some(0) {
            return Err(Error::InvalidArgument("session limits must be at least 1".into()));
        }
        if s.heap_budget_bytes.is_some_and(|b| !(MIN_HEAP_BUDGET..=MAX_HEAP_BUDGET).contains(&b)) {
            return Err(Error::InvalidArgument(format!("heap_budget_bytes must be in {MIN_HEAP_BUDGET}..={MAX_HEAP_BUDGET}")));
        }
        self.storage.update_meta(|m| {
            m.call_budget = s.call_budget.unwrap_or(m.call_budget);
            m.max_sessions = s.max_sessions.unwrap_or(m.max_sessions);
            m.max_sessions_per_caller = s.max_sessions_per_caller.unwrap_or(m.max_sessions_per_caller);
            m.session_timeout_seconds = s.session_timeout_seconds.unwrap_or(m.session_timeout_seconds);
            m.heap_budget_bytes = s.heap_budget_bytes.or(m.heap_budget_bytes);
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

    pub fn upload_start(&mut self, ctx: &Context<'_>, kind: BlobKind) -> Result<UploadStatus, Error> {
        if !ctx.is_controller {
            return Err(Error::NotAuthorized);
        }
        self.storage.begin_upload(kind);
        Ok(self.upload_status(kind))
    }

    /// Writes `bytes` at `offset`. A chunk repeated after a timeout (same bytes, same offset) is
    /// accepted again without effect; the data must otherwise continue where it stops.
    pub fn upload_chunk(&mut self, ctx: &Context<'_>, kind: BlobKind, offset: u64, bytes: &[u8]) -> Result<UploadStatus, Error> {
        if !ctx.is_controller {
            return Err(Error::NotAuthorized);
        }
        if bytes.len() > MAX_CHUNK {
            return Err(Error::ChunkTooLarge { max: MAX_CHUNK as u64 });
        }
        let blob = self.storage.blob(kind).clone();
        if !blob.uploading {
            return Err(Error::UploadNotStarted);
        }
        if offset > blob.received {
            return Err(Error::ChunkOutOfOrder { expected_offset: blob.received });
        }
        // Bytes already received must match; the rest is appended (with the hash, in stable
        // memory: no later call, after an upgrade either, hashes the staged bytes again).
        let overlap = ((blob.received - offset) as usize).min(bytes.len());
        if overlap > 0 && self.storage.read_staging(kind, offset, overlap) != bytes[..overlap] {
            return Err(Error::ChunkMismatch { offset });
        }
        let fresh = &bytes[overlap..];
        if !fresh.is_empty() {
            self.storage.append(kind, fresh)?;
        }
        Ok(self.upload_status(kind))
    }

    /// Verifies size and sha256, parses and validates the blob, and only then makes it active.
    /// On any failure the previous blob keeps serving and the upload can be retried.
    pub fn upload_finish(&mut self, ctx: &Context<'_>, kind: BlobKind, size: u64, sha256: Vec<u8>) -> Result<ModelInfo, Error> {
        if !ctx.is_controller {
            return Err(Error::NotAuthorized);
        }
        let blob = self.storage.blob(kind).clone();
        if !blob.uploading {
            return Err(Error::UploadNotStarted);
        }
        if blob.received != size {
            return Err(Error::SizeMismatch { expected: size, received: blob.received });
        }
        // Metadata from before the hash was kept has none: that upload must start again.
        let actual = blob.hash.as_ref().ok_or(Error::UploadNotStarted)?.finish();
        if actual != sha256 {
            return Err(Error::HashMismatch { expected: sha256, actual });
        }
        let bytes = self.storage.staging_bytes(kind);
        // Nothing of the service changes until every check has passed.
        match kind {
            BlobKind::Model => {
                let header_json = header_of(&bytes);
                // The model keeps the file bytes and reads its int8 embedding in place.
                let model = Model::load_owned(bytes).map_err(|e| Error::InvalidModel(e.to_string()))?;
                let vocabulary = self.tokenizer.as_ref().map(|t| Vocabulary::check(&model, t)).transpose()?;
                self.storage.activate(kind, actual);
                self.header_json = header_json;
                self.model = Some(model);
                self.vocabulary = vocabulary;
            }
            BlobKind::Tokenizer => {
                let tokenizer = Tokenizer::from_json(&bytes).map_err(|e| Error::InvalidTokenizer(e.to_string()))?;
                // A tokenizer is checked against the model it serves: without one it stays staged
                // (finish it again once a model is active) and nothing changes.
                let model = self.model.as_ref().ok_or(Error::NoModel)?;
                let vocabulary = Some(Vocabulary::check(model, &tokenizer)?);
                warm_up(&tokenizer);
                self.storage.activate(kind, actual);
                self.tokenizer = Some(tokenizer);
                self.vocabulary = vocabulary;
            }
        }
        // Sessions were computed with the previous model or tokenizer.
        self.sessions.clear();
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
                unknown_ids: self.vocabulary.as_ref().map_or(0, |v| v.unknown),
            }),
        })
    }

    pub fn stats(&self, heap_bytes: u64, stable_bytes: u64) -> Stats {
        Stats {
            sessions: self.sessions.len() as u64,
            heap_bytes,
            stable_bytes,
            model_heap_bytes: self.model.as_ref().map_or(0, |m| m.weight_bytes() as u64),
            session_heap_bytes: self.sessions.values().filter_map(|s| s.generator.as_ref()).map(|g| g.cache().bytes() as u64).sum(),
            recent_instructions_per_token: self.recent.iter().copied().collect(),
            call_budget: self.storage.meta().call_budget,
            heap_budget_bytes: self.heap_budget(),
            heap_reserved_bytes: self.heap_reserved(),
        }
    }

    // ---- heap admission ----------------------------------------------------------------------

    fn heap_budget(&self) -> u64 {
        self.storage.meta().heap_budget_bytes.unwrap_or(DEFAULT_HEAP_BUDGET)
    }

    /// Heap held by what stays: the model (its file, which it reads in place, and what it
    /// unpacked), the tokenizer, the runtime, and every running session at its full context.
    fn heap_reserved(&self) -> u64 {
        let meta = self.storage.meta();
        let model = self.model.as_ref().map_or(0, |m| m.weight_bytes() as u64 + meta.model.active_size);
        let tokenizer = self.tokenizer.as_ref().map_or(0, |_| meta.tokenizer.active_size.saturating_mul(TOKENIZER_HEAP_PER_BYTE));
        let sessions: u64 = self.sessions.values().map(|s| s.reserved_bytes).sum();
        RUNTIME_HEAP.saturating_add(model).saturating_add(tokenizer).saturating_add(sessions)
    }

    /// Admits a generation that may grow to `needed` bytes, or says how much room there is.
    fn admit(&self, needed: u64) -> Result<(), Error> {
        let available = self.heap_budget().saturating_sub(self.heap_reserved());
        if needed > available {
            return Err(Error::HeapBudgetExceeded { needed, available });
        }
        Ok(())
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
    walsh_engine::format::WalshFile::parse(bytes).ok().map(|f| f.header_json.to_string())
}

/// The first `encode` initialises regex and Unicode tables (~20 M instructions); doing it once
/// on load keeps that cost out of user calls (queries would pay it every time: they never keep
/// heap changes).
fn warm_up(tokenizer: &Tokenizer) {
    let _ = tokenizer.encode("Warm up the tokenizer, once.");
}

/// The model's ids as the tokenizer knows them, checked when either is activated: every id the
/// tokenizer can produce exists in the model, and the model's ids it has no token for (a
/// vocabulary padded to a round size, as GPT-2's 50 257 to 50 304) are counted and decoded as
/// U+FFFD, never dropped.
struct Vocabulary {
    /// Model ids the tokenizer has no token for.
    unknown: u32,
}

impl Vocabulary {
    fn check(model: &Model, tokenizer: &Tokenizer) -> Result<Vocabulary, Error> {
        let model_vocab = model.config.vocab_size;
        let (largest, distinct) = match tokenizer {
            Tokenizer::Hf(t) => {
                let vocab = t.get_vocab(true);
                let largest = vocab.iter().max_by_key(|&(_, &id)| id).map(|(token, &id)| (token.clone(), id));
                let distinct = vocab.values().collect::<std::collections::BTreeSet<_>>().len();
                (largest, distinct)
            }
            Tokenizer::Char(v) => {
                let n = v.chars().len();
                (n.checked_sub(1).map(|last| (v.chars()[last].to_string(), last as u32)), n)
            }
        };
        if let Some((token, id)) = largest.filter(|&(_, id)| id as usize >= model_vocab) {
            return Err(Error::Incompatible(format!("the tokenizer maps {token:?} to id {id}, but the model's ids are 0..{model_vocab}")));
        }
        let unknown = u32::try_from(model_vocab.saturating_sub(distinct)).unwrap_or(u32::MAX);
        Ok(Vocabulary { unknown })
    }
}

/// Whether the tokenizer has a token for `id`.
fn decodes(tokenizer: &Tokenizer, id: u32) -> bool {
    match tokenizer {
        Tokenizer::Hf(t) => t.id_to_token(id).is_some(),
        Tokenizer::Char(v) => (id as usize) < v.chars().len(),
    }
}

/// One more id of a stream: its text, or U+FFFD (after what the stream held back) for an id the
/// tokenizer has no token for.
fn push_id(stream: &mut TextStream, tokenizer: &Tokenizer, id: u32) -> Result<String, Error> {
    if decodes(tokenizer, id) {
        stream.push(tokenizer, id).map_err(internal)
    } else {
        let mut text = stream.flush(tokenizer).map_err(internal)?;
        text.push('\u{FFFD}');
        Ok(text)
    }
}

fn internal(e: impl std::fmt::Display) -> Error {
    Error::Internal(e.to_string())
}

/// A request checked and turned into the engine's terms.
struct Prepared {
    prompt_ids: Vec<u32>,
    options: GenerateOptions,
    /// The heap the generation can grow to (see `generation_heap`).
    heap_bytes: u64,
}

impl<M: Memory + Clone> Service<M> {
    fn prepare(&mut self, request: &GenerateRequest, now_ns: u64) -> Result<Prepared, Error> {
        let model = self.model.as_ref().ok_or(Error::NoModel)?;
        let tokenizer = self.tokenizer.as_ref().ok_or(Error::NoTokenizer)?;
        if request.prompt.is_empty() {
            return Err(Error::EmptyPrompt);
        }
        if request.prompt.len() > MAX_PROMPT_BYTES {
            return Err(Error::InvalidArgument(format!("the prompt is longer than {MAX_PROMPT_BYTES} bytes")));
        }
        if request.max_tokens == 0 || request.max_tokens > MAX_TOKENS {
            return Err(Error::InvalidArgument(format!("max_tokens must be in 1..={MAX_TOKENS}")));
        }
        let sampling =
            SamplingParams { temperature: request.temperature.unwrap_or(0.0), top_k: request.top_k.map(|k| k as usize), top_p: request.top_p };
        sampling.validate().map_err(|e| Error::InvalidArgument(e.to_string()))?;
        // Any text encodes (a character the vocabulary lacks is dropped or becomes an unknown
        // token): a failure here is the tokenizer's, not the caller's.
        let prompt_ids = tokenizer.encode(&request.prompt).map_err(internal)?;
        if prompt_ids.is_empty() {
            return Err(Error::EmptyPrompt);
        }
        let limit = model.config.block_size;
        if prompt_ids.len() > limit {
            return Err(Error::PromptTooLong { tokens: prompt_ids.len() as u64, limit: limit as u64 });
        }
        let seed = match request.seed {
            Some(seed) => seed,
            // Mixed with the time so that queries (whose state changes never persist) differ.
            None => self.seeds.next_u64() ^ now_ns.rotate_left(17),
        };
        let options = GenerateOptions { max_tokens: request.max_tokens as usize, sampling, seed, stop_token: tokenizer.end_of_text() };
        let heap_bytes = generation_heap(model, prompt_ids.len(), options.max_tokens);
        Ok(Prepared { prompt_ids, options, heap_bytes })
    }

    fn new_generator(&self, prepared: &Prepared) -> Result<Generator, Error> {
        let model = self.model.as_ref().ok_or(Error::NoModel)?;
        // The request was validated and its ids come from a tokenizer checked against the model:
        // the engine refusing them is a bug.
        let sampler = Sampler::new(prepared.options.sampling, prepared.options.seed).map_err(internal)?;
        Generator::with_sampler(model, &prepared.prompt_ids, &prepared.options, sampler).map_err(internal)
    }

    /// One-shot generation inside a query's budget: as many tokens as fit, then `Budget`.
    pub fn generate(&mut self, ctx: &Context<'_>, request: GenerateRequest) -> Result<Generation, Error> {
        let start = (ctx.instructions)();
        let prepared = self.prepare(&request, ctx.now_ns)?;
        self.admit(prepared.heap_bytes)?;
        let mut generator = self.new_generator(&prepared)?;
        let model = self.model.as_ref().ok_or(Error::NoModel)?;
        let mut budget = Budget::new(ctx.instructions, QUERY_BUDGET);
        let mut stop = None;
        loop {
            match generator.advance(model, || budget.may_continue()).map_err(internal)? {
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
        let mut stream = TextStream::new();
        let mut text = String::new();
        for &id in &ids {
            text.push_str(&push_id(&mut stream, tokenizer, id)?);
        }
        text.push_str(&stream.flush(tokenizer).map_err(internal)?);
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
        let timeout = self.storage.meta().session_timeout_seconds.saturating_mul(1_000_000_000);
        self.sessions.retain(|_, s| now_ns.saturating_sub(s.last_active_ns) <= timeout);
    }

    /// A fresh session id: random (from the `raw_rand`-seeded stream), so that ids say nothing
    /// about other sessions, and unused.
    fn new_session_id(&mut self) -> u64 {
        loop {
            let id = self.seeds.next_u64();
            if id != 0 && !self.sessions.contains_key(&id) {
                return id;
            }
        }
    }

    /// Starts a session and runs it as far as this call's budget allows. The session exists only
    /// if this call succeeds (its id is in the answer).
    pub fn session_start(&mut self, ctx: &Context<'_>, request: GenerateRequest, options: Option<CallOptions>) -> Result<SessionChunk, Error> {
        if ctx.caller == Principal::anonymous() {
            return Err(Error::AnonymousCaller);
        }
        self.expire(ctx.now_ns);
        let call_budget = requested_budget(options.as_ref())?;
        // A finished session only waits to be read: the caller's own make room for the new one,
        // and the limits count running sessions only.
        self.sessions.retain(|_, s| !(s.owner == ctx.caller && s.finished()));
        let meta = self.storage.meta();
        let (total, per_caller) = (meta.max_sessions as usize, meta.max_sessions_per_caller as usize);
        self.drop_oldest_finished(total);
        let running = self.sessions.values().filter(|s| !s.finished());
        if running.clone().count() >= total {
            return Err(Error::TooManySessions { limit: total as u64 });
        }
        if running.filter(|s| s.owner == ctx.caller).count() >= per_caller {
            return Err(Error::TooManySessions { limit: per_caller as u64 });
        }
        let prepared = self.prepare(&request, ctx.now_ns)?;
        self.admit(prepared.heap_bytes)?;
        let generator = self.new_generator(&prepared)?;
        let mut session = Session {
            owner: ctx.caller,
            generator: Some(generator),
            stream: TextStream::new(),
            prompt_ids: prepared.prompt_ids,
            ids: Vec::new(),
            text: String::new(),
            stop: None,
            reserved_bytes: prepared.heap_bytes,
            last_active_ns: ctx.now_ns,
            call_budget,
        };
        let id = self.new_session_id();
        let chunk = self.run(ctx, id, &mut session, None)?;
        self.sessions.insert(id, session);
        Ok(chunk)
    }

    /// Keeps at most `limit` finished sessions (the most recently active), so that sessions that
    /// only wait to be read never pile up.
    fn drop_oldest_finished(&mut self, limit: usize) {
        let mut finished: Vec<(u64, u64)> = self.sessions.iter().filter(|(_, s)| s.finished()).map(|(&id, s)| (s.last_active_ns, id)).collect();
        if finished.len() > limit {
            finished.sort_unstable();
            for (_, id) in &finished[..finished.len() - limit] {
                self.sessions.remove(id);
            }
        }
    }

    /// The caller's session, or why not.
    fn own_session(&self, ctx: &Context<'_>, id: u64) -> Result<&Session, Error> {
        if ctx.caller == Principal::anonymous() {
            return Err(Error::AnonymousCaller);
        }
        let session = self.sessions.get(&id).ok_or(Error::UnknownSession)?;
        if session.owner != ctx.caller {
            return Err(Error::NotYourSession);
        }
        Ok(session)
    }

    /// Continues a session for one call's budget: the rest of the prompt, then tokens.
    /// The budget is the one `options` asks for, else the session's, else the controller's,
    /// and never more than the controller's.
    pub fn session_continue(&mut self, ctx: &Context<'_>, id: u64, options: Option<CallOptions>) -> Result<SessionChunk, Error> {
        self.expire(ctx.now_ns);
        requested_budget(options.as_ref())?;
        self.own_session(ctx, id)?;
        let mut session = self.sessions.remove(&id).ok_or(Error::UnknownSession)?;
        let result = self.run(ctx, id, &mut session, options);
        self.sessions.insert(id, session);
        result
    }

    /// Runs `session` for one call's budget.
    fn run(&mut self, ctx: &Context<'_>, id: u64, session: &mut Session, options: Option<CallOptions>) -> Result<SessionChunk, Error> {
        let start = (ctx.instructions)();
        let requested = requested_budget(options.as_ref())?;
        let limit = self.storage.meta().call_budget;
        let model = self.model.as_ref().ok_or(Error::NoModel)?;
        let tokenizer = self.tokenizer.as_ref().ok_or(Error::NoTokenizer)?;
        // A finished session's reads (cheap continues included) do not keep it alive.
        let Some(generator) = session.generator.as_mut() else {
            return Ok(SessionChunk { session: id, text: String::new(), ids: Vec::new(), prompt_remaining: 0, stop: session.stop, instructions: 0 });
        };
        session.last_active_ns = ctx.now_ns;
        let call_budget = requested.or(session.call_budget).map_or(limit, |b| b.min(limit));
        let mut budget = Budget::new(ctx.instructions, start.saturating_add(call_budget));
        let mut ids = Vec::new();
        let mut text = String::new();
        loop {
            match generator.advance(model, || budget.may_continue()).map_err(internal)? {
                Progress::Token(step) => {
                    ids.push(step.token);
                    text.push_str(&push_id(&mut session.stream, tokenizer, step.token)?);
                }
                Progress::Done => {
                    text.push_str(&session.stream.flush(tokenizer).map_err(internal)?);
                    break;
                }
                Progress::Paused => break,
            }
        }
        session.ids.extend_from_slice(&ids);
        session.text.push_str(&text);
        let prompt_remaining = if session.ids.is_empty() { session.prompt_ids.len() as u64 } else { 0 };
        if let Some(reason) = generator.stop_reason() {
            // Finished: the cache goes at once and the session stops counting against limits.
            session.stop = Some(stop_reason(Some(reason)));
            session.generator = None;
            session.reserved_bytes = 0;
        }
        let instructions = (ctx.instructions)().saturating_sub(start);
        self.record(instructions, ids.len());
        Ok(SessionChunk { session: id, text, ids, prompt_remaining, stop: session.stop, instructions })
    }

    pub fn session_get(&self, ctx: &Context<'_>, id: u64) -> Result<SessionView, Error> {
        let session = self.own_session(ctx, id)?;
        Ok(SessionView {
            session: id,
            prompt_ids: session.prompt_ids.clone(),
            ids: session.ids.clone(),
            text: session.text.clone(),
            stop: session.stop,
            heap_bytes: session.generator.as_ref().map_or(0, |g| g.cache().bytes() as u64),
        })
    }

    pub fn session_cancel(&mut self, ctx: &Context<'_>, id: u64) -> Result<(), Error> {
        self.own_session(ctx, id)?;
        self.sessions.remove(&id);
        Ok(())
    }
}

/// The heap a generation can grow to: keys and values for every position it can reach (the
/// engine reserves them at the start), the forward pass's buffers for the prompt, the logits.
fn generation_heap(model: &Model, prompt_tokens: usize, max_tokens: usize) -> u64 {
    let c = &model.config;
    let reach = prompt_tokens.saturating_add(max_tokens).min(c.block_size) as u64;
    let (layers, width, prompt) = (c.n_layer as u64, c.n_embd as u64, prompt_tokens as u64);
    let kv = 2 * layers * reach * width;
    let buffers = 6 * prompt * width + reach + 2 * c.hidden_dim() as u64 + 8 * width + c.vocab_size as u64;
    4 * (kv + buffers)
}
