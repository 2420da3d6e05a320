//! The service natively (no wasm): one test per failure of issue 17, plus the upload and
//! upgrade paths. Models are built with the engine's writer (`support/synthetic.rs`); an
//! "upgrade" is a new `Service` on the same stable memory, as `post_upgrade` does.

#[path = "support/synthetic.rs"]
mod synthetic;

use std::cell::Cell;

use candid::Principal;
use ic_stable_structures::{DefaultMemoryImpl, Memory};
use sha2::{Digest, Sha256};
use synthetic::{Shape, char_tokenizer, char_tokenizer_with_id};
use walsh_canister::api::*;
use walsh_canister::service::{Context, Service};
use walsh_canister::storage::{MAX_TOKENIZER_BYTES, Meta, Storage};

const NO_SETTINGS: Settings =
    Settings { call_budget: None, max_sessions: None, max_sessions_per_caller: None, session_timeout_seconds: None, heap_budget_bytes: None };

fn user(name: &str) -> Principal {
    Principal::self_authenticating(name.as_bytes())
}

/// A call's environment: `caller`, at time `now_ns`, with an instruction counter that counts
/// 200 000 per reading, so that every step between two budget checks "costs" that much and a
/// call budget of n × 200 000 runs a few steps, then pauses.
struct Env {
    count: Cell<u64>,
}

impl Env {
    fn new() -> Env {
        Env { count: Cell::new(0) }
    }
    fn call<R>(&self, caller: Principal, f: impl FnOnce(&Context<'_>) -> R) -> R {
        self.count.set(0);
        let counter = || {
            self.count.set(self.count.get() + 200_000);
            self.count.get()
        };
        let ctx = Context { caller, is_controller: caller == controller(), now_ns: 1_000_000_000, instructions: &counter };
        f(&ctx)
    }
}

fn controller() -> Principal {
    Principal::from_slice(&[0xC0, 1])
}

fn small_shape() -> Shape {
    Shape { n_layer: 2, n_embd: 64, block_size: 128, vocab_size: 96 }
}

fn upload(s: &mut Service<DefaultMemoryImpl>, env: &Env, kind: BlobKind, bytes: &[u8], chunk: usize) -> Result<ModelInfo, Error> {
    env.call(controller(), |ctx| s.upload_start(ctx, kind))?;
    for (i, piece) in bytes.chunks(chunk).enumerate() {
        env.call(controller(), |ctx| s.upload_chunk(ctx, kind, (i * chunk) as u64, piece))?;
    }
    env.call(controller(), |ctx| s.upload_finish(ctx, kind, bytes.len() as u64, Sha256::digest(bytes).to_vec()))
}

/// A service serving a small random model (vocabulary 96) and its full character tokenizer.
fn serving() -> (Service<DefaultMemoryImpl>, Env, DefaultMemoryImpl) {
    let memory = DefaultMemoryImpl::default();
    let mut s = Service::new(memory.clone(), None).unwrap();
    let env = Env::new();
    upload(&mut s, &env, BlobKind::Model, &synthetic::model(&small_shape()), 100_000).unwrap();
    upload(&mut s, &env, BlobKind::Tokenizer, &char_tokenizer(96), 100_000).unwrap();
    (s, env, memory)
}

fn greedy(prompt: &str, max_tokens: u32) -> GenerateRequest {
    GenerateRequest { prompt: prompt.into(), max_tokens, temperature: Some(0.0), top_k: None, top_p: None, seed: Some(0) }
}

fn generate(s: &mut Service<DefaultMemoryImpl>, env: &Env, request: &GenerateRequest) -> Result<Generation, Error> {
    env.call(user("reader"), |ctx| s.generate(ctx, request.clone()))
}

fn configure(s: &mut Service<DefaultMemoryImpl>, env: &Env, settings: Settings) -> Result<(), Error> {
    env.call(controller(), |ctx| s.configure(ctx, settings))
}

/// F1: a model the tokenizer does not fit is refused and `model_info` still describes the
/// model in service.
#[test]
fn f1_an_incompatible_model_changes_nothing() {
    let (mut s, env, _) = serving();
    let before = s.model_info().unwrap();
    let text = generate(&mut s, &env, &greedy("To be", 20)).unwrap();
    let smaller = synthetic::model(&Shape { vocab_size: 64, ..small_shape() });
    let r = upload(&mut s, &env, BlobKind::Model, &smaller, 100_000);
    assert!(matches!(&r, Err(Error::Incompatible(m)) if m.contains("0..64")), "{r:?}");
    assert_eq!(s.model_info().unwrap(), before);
    assert_eq!(generate(&mut s, &env, &greedy("To be", 20)).unwrap(), text);
}

/// F2: sessions need an authenticated caller; their ids say nothing of other sessions; a
/// finished session stops counting at once, however often it is read or continued.
#[test]
fn f2_sessions_are_for_authenticated_callers_and_finished_ones_do_not_count() {
    let (mut s, env, _) = serving();
    let anonymous = Principal::anonymous();
    let r = env.call(anonymous, |ctx| s.session_start(ctx, greedy("To be", 5), None));
    assert_eq!(r, Err(Error::AnonymousCaller));
    assert_eq!(env.call(anonymous, |ctx| s.session_get(ctx, 1)), Err(Error::AnonymousCaller));
    assert_eq!(env.call(anonymous, |ctx| s.session_cancel(ctx, 1)), Err(Error::AnonymousCaller));
    configure(&mut s, &env, Settings { max_sessions: Some(2), max_sessions_per_caller: Some(1), ..NO_SETTINGS }).unwrap();
    // Two callers hold a finished session each and keep "using" it with cheap continues.
    let mut ids = Vec::new();
    for name in ["a", "b"] {
        let chunk = env.call(user(name), |ctx| s.session_start(ctx, greedy("To be", 1), None)).unwrap();
        assert_eq!(chunk.stop, Some(StopReason::MaxTokens));
        ids.push(chunk.session);
    }
    for _ in 0..3 {
        for (name, &id) in ["a", "b"].iter().zip(&ids) {
            let chunk = env.call(user(name), |ctx| s.session_continue(ctx, id, None)).unwrap();
            assert_eq!(chunk.stop, Some(StopReason::MaxTokens));
        }
    }
    // The finished sessions can still be read by their owners, and only by them.
    let view = env.call(user("a"), |ctx| s.session_get(ctx, ids[0])).unwrap();
    assert_eq!((view.ids.len(), view.heap_bytes), (1, 0), "a finished session holds no cache");
    assert_eq!(env.call(user("b"), |ctx| s.session_get(ctx, ids[0])), Err(Error::NotYourSession));
    // A third caller still gets a session (the limit is 2), twice over even.
    let c = env.call(user("c"), |ctx| s.session_start(ctx, greedy("To be", 3), None)).unwrap();
    let d = env.call(user("d"), |ctx| s.session_start(ctx, greedy("To be", 3), None)).unwrap();
    assert!(c.stop.is_some() && d.stop.is_some());
    // Finished sessions waiting to be read are kept up to the session limit (the oldest go when
    // a session starts), plus the new one.
    assert_eq!(s.stats(0, 0).sessions, 3);
    // Ids are not a counter.
    let all = [ids[0], ids[1], c.session, d.session];
    assert!(all.windows(2).all(|w| w[1].abs_diff(w[0]) > 1_000_000), "{all:?}");
}

/// F3: the upload's hash survives an upgrade in stable memory: chunks and the finish after it
/// never hash the staged bytes again; tokenizers are capped at what one message can parse.
#[test]
fn f3_an_upload_resumes_after_an_upgrade_and_tokenizers_are_capped() {
    let (mut s, env, memory) = serving();
    let model = synthetic::model(&Shape { n_layer: 3, ..small_shape() });
    env.call(controller(), |ctx| s.upload_start(ctx, BlobKind::Model)).unwrap();
    let half = model.len() / 2 + 13;
    env.call(controller(), |ctx| s.upload_chunk(ctx, BlobKind::Model, 0, &model[..half])).unwrap();
    drop(s);
    let mut s = Service::new(memory.clone(), None).unwrap();
    let status = s.upload_status(BlobKind::Model);
    assert_eq!((status.in_progress, status.received), (true, half as u64));
    // A repeated chunk across the old end, then the rest.
    env.call(controller(), |ctx| s.upload_chunk(ctx, BlobKind::Model, 100, &model[100..half + 1000])).unwrap();
    env.call(controller(), |ctx| s.upload_chunk(ctx, BlobKind::Model, (half + 1000) as u64, &model[half + 1000..])).unwrap();
    let info = env.call(controller(), |ctx| s.upload_finish(ctx, BlobKind::Model, model.len() as u64, Sha256::digest(&model).to_vec())).unwrap();
    assert_eq!((info.n_layer, info.model_sha256.clone()), (3, Sha256::digest(&model).to_vec()));
    // The stored state is what sha2 computes of the bytes; a wrong digest is still refused.
    env.call(controller(), |ctx| s.upload_start(ctx, BlobKind::Model)).unwrap();
    env.call(controller(), |ctx| s.upload_chunk(ctx, BlobKind::Model, 0, &model)).unwrap();
    let r = env.call(controller(), |ctx| s.upload_finish(ctx, BlobKind::Model, model.len() as u64, vec![0; 32]));
    assert!(matches!(&r, Err(Error::HashMismatch { actual, .. }) if *actual == Sha256::digest(&model).to_vec()), "{r:?}");
    // A tokenizer larger than one message can parse is refused at the chunk that passes the cap.
    env.call(controller(), |ctx| s.upload_start(ctx, BlobKind::Tokenizer)).unwrap();
    let piece = vec![b' '; 1_900_000];
    let mut offset = 0u64;
    let refused = loop {
        match env.call(controller(), |ctx| s.upload_chunk(ctx, BlobKind::Tokenizer, offset, &piece)) {
            Ok(status) => offset = status.received,
            Err(e) => break e,
        }
    };
    assert_eq!(refused, Error::BlobTooLarge { max: MAX_TOKENIZER_BYTES });
    assert!(offset <= MAX_TOKENIZER_BYTES && offset + piece.len() as u64 > MAX_TOKENIZER_BYTES);
}

/// F3: prefill is spread over calls (needs the engine to pause inside a layer when one layer's
/// prompt pass exceeds a budget; here a layer is one counter step, so this checks the service).
#[test]
fn f3_a_prompt_as_long_as_the_context_completes_through_sessions() {
    let (mut s, env, _) = serving();
    upload(&mut s, &env, BlobKind::Model, &synthetic::model(&Shape { n_layer: 8, ..small_shape() }), 1_000_000).unwrap();
    let prompt: String = "abcdefgh".repeat(16);
    let mut chunk = env.call(user("a"), |ctx| s.session_start(ctx, greedy(&prompt, 4), Some(CallOptions { call_budget: Some(1_200_000) }))).unwrap();
    let id = chunk.session;
    let mut calls = 1;
    let mut ids = chunk.ids.clone();
    while chunk.stop.is_none() {
        chunk = env.call(user("a"), |ctx| s.session_continue(ctx, id, None)).unwrap();
        ids.extend(&chunk.ids);
        calls += 1;
        assert!(calls < 1000);
    }
    assert_eq!(chunk.stop, Some(StopReason::ContextFull));
    assert!(calls >= 2, "{calls}");
    assert_eq!(ids.len(), 1, "the prompt fills the context: only the token after it");
}

/// F4: a tokenizer cannot be checked without a model: it stays staged, nothing changes, and it
/// activates when finished again after the model.
#[test]
fn f4_a_tokenizer_before_a_model_stays_staged() {
    let memory = DefaultMemoryImpl::default();
    let mut s = Service::new(memory, None).unwrap();
    let env = Env::new();
    let tokenizer = char_tokenizer(96);
    assert_eq!(upload(&mut s, &env, BlobKind::Tokenizer, &tokenizer, 1000), Err(Error::NoModel));
    let status = s.upload_status(BlobKind::Tokenizer);
    assert_eq!((status.in_progress, status.received, status.active_size), (true, tokenizer.len() as u64, None));
    upload(&mut s, &env, BlobKind::Model, &synthetic::model(&small_shape()), 100_000).unwrap();
    assert_eq!(generate(&mut s, &env, &greedy("To be", 5)), Err(Error::NoTokenizer));
    let info =
        env.call(controller(), |ctx| s.upload_finish(ctx, BlobKind::Tokenizer, tokenizer.len() as u64, Sha256::digest(&tokenizer).to_vec())).unwrap();
    assert_eq!(info.tokenizer.map(|t| (t.vocab_size, t.unknown_ids)), Some((96, 0)));
    assert_eq!(generate(&mut s, &env, &greedy("To be", 5)).unwrap().ids.len(), 5);
}

/// F5: a tokenizer with fewer ids than the model (a padded vocabulary) is accepted with the
/// missing ids counted; generated, they are in `ids` and show as U+FFFD in the text.
#[test]
fn f5_ids_the_tokenizer_lacks_show_as_replacement_characters() {
    let (mut s, env, _) = serving();
    let info = upload(&mut s, &env, BlobKind::Tokenizer, &char_tokenizer(80), 100_000).unwrap();
    assert_eq!(info.tokenizer.map(|t| (t.vocab_size, t.unknown_ids)), Some((80, 16)));
    let known = synthetic::chars(80);
    let mut unknown_seen = 0;
    for seed in 0..8 {
        let request = GenerateRequest { temperature: Some(1.5), seed: Some(seed), ..greedy("To be", 60) };
        let g = generate(&mut s, &env, &request).unwrap();
        let expected: String = g.ids.iter().map(|&id| known.get(id as usize).map_or("\u{FFFD}", |c| c.as_str())).collect();
        assert_eq!(g.text, expected, "seed {seed}");
        unknown_seen += g.ids.iter().filter(|&&id| id >= 80).count();
        // Sessions decode the same way.
        let chunk = env.call(user("a"), |ctx| s.session_start(ctx, request.clone(), None)).unwrap();
        assert_eq!((chunk.ids.clone(), chunk.text), (g.ids.clone(), expected));
    }
    assert!(unknown_seen > 0, "no sample produced an id the tokenizer lacks");
}

/// F6: a tokenizer that maps a character to an id the model lacks is refused.
#[test]
fn f6_a_tokenizer_id_beyond_the_model_is_refused() {
    let (mut s, env, _) = serving();
    let before = s.model_info().unwrap();
    let r = upload(&mut s, &env, BlobKind::Tokenizer, &char_tokenizer_with_id(10, 500), 100_000);
    assert!(matches!(&r, Err(Error::Incompatible(m)) if m.contains("500")), "{r:?}");
    assert_eq!(s.model_info().unwrap(), before);
    assert_eq!(generate(&mut s, &env, &greedy("\"", 3)).unwrap().prompt_ids, vec![3]);
}

/// F7: a session whose first call fails does not exist: it uses up no quota.
#[test]
fn f7_a_failed_start_leaves_no_session() {
    let (mut s, env, _) = serving();
    configure(&mut s, &env, Settings { max_sessions_per_caller: Some(1), heap_budget_bytes: Some(64 << 20), ..NO_SETTINGS }).unwrap();
    let failing = [greedy("", 5), greedy(&"a".repeat(129), 5), greedy("To be", 0), GenerateRequest { top_p: Some(2.0), ..greedy("To be", 5) }];
    for request in failing {
        assert!(env.call(user("a"), |ctx| s.session_start(ctx, request, None)).is_err());
    }
    // Too large for the heap budget (a failure after the request was accepted).
    let big = synthetic::model(&Shape { block_size: 4096, ..small_shape() });
    upload(&mut s, &env, BlobKind::Model, &big, 1_000_000).unwrap();
    configure(&mut s, &env, Settings { heap_budget_bytes: Some(64 << 20), ..NO_SETTINGS }).unwrap();
    assert_eq!(s.stats(0, 0).sessions, 0);
    let chunk = env.call(user("a"), |ctx| s.session_start(ctx, greedy("To be", 5), None)).unwrap();
    assert_eq!(s.stats(0, 0).sessions, 1);
    assert_eq!(chunk.ids.len(), 5);
}

/// F8: sessions are admitted by the heap they can grow to; past the budget they get a typed
/// error while the controller can still upload and configure, and raising the budget admits.
#[test]
fn f8_sessions_past_the_heap_budget_get_a_typed_error() {
    let (mut s, env, _) = serving();
    let long = synthetic::model(&Shape { block_size: 4096, ..small_shape() });
    upload(&mut s, &env, BlobKind::Model, &long, 1_000_000).unwrap();
    configure(
        &mut s,
        &env,
        Settings { max_sessions: Some(1000), max_sessions_per_caller: Some(1000), heap_budget_bytes: Some(64 << 20), ..NO_SETTINGS },
    )
    .unwrap();
    let request = greedy("To be", 4000);
    let tiny = Some(CallOptions { call_budget: Some(1_000_000) });
    let mut admitted = 0;
    let refusal = loop {
        match env.call(user("a"), |ctx| s.session_start(ctx, request.clone(), tiny.clone())) {
            Ok(chunk) => {
                assert_eq!(chunk.stop, None);
                admitted += 1;
            }
            Err(e) => break e,
        }
        assert!(admitted < 1000);
    };
    let stats = s.stats(0, 0);
    assert!(matches!(refusal, Error::HeapBudgetExceeded { needed, available } if needed > available), "{refusal:?}");
    assert!(admitted > 0 && stats.heap_reserved_bytes <= 64 << 20, "{admitted} sessions, {stats:?}");
    // Queries of the same size are refused too (their heap is as real while they run).
    assert!(matches!(generate(&mut s, &env, &request), Err(Error::HeapBudgetExceeded { .. })));
    assert_eq!(generate(&mut s, &env, &greedy("To be", 5)).map(|g| g.ids.len()), Ok(5));
    // The controller still uploads and configures; a larger budget admits again.
    upload(&mut s, &env, BlobKind::Tokenizer, &char_tokenizer(96), 100_000).unwrap();
    configure(&mut s, &env, Settings { heap_budget_bytes: Some(1 << 30), ..NO_SETTINGS }).unwrap();
    env.call(user("a"), |ctx| s.session_start(ctx, request.clone(), tiny.clone())).unwrap();
}

/// The admitted estimate covers what a session really holds at its full context.
#[test]
fn the_admitted_heap_covers_the_cache() {
    let (mut s, env, _) = serving();
    let base = s.stats(0, 0).heap_reserved_bytes;
    let chunk =
        env.call(user("a"), |ctx| s.session_start(ctx, greedy(&"abcd".repeat(20), 48), Some(CallOptions { call_budget: Some(1_200_000) }))).unwrap();
    assert_eq!(chunk.stop, None);
    let mut held = 0;
    loop {
        let chunk = env.call(user("a"), |ctx| s.session_continue(ctx, chunk.session, Some(CallOptions { call_budget: Some(3_000_000) }))).unwrap();
        if chunk.stop.is_some() {
            break;
        }
        let view = env.call(user("a"), |ctx| s.session_get(ctx, chunk.session)).unwrap();
        held = held.max(view.heap_bytes);
        let reserved = s.stats(0, 0).heap_reserved_bytes - base;
        assert!(view.heap_bytes <= reserved, "{} held, {reserved} admitted", view.heap_bytes);
    }
    assert!(held > 0);
    assert_eq!(s.stats(0, 0).heap_reserved_bytes, base, "finished: nothing reserved");
}

/// Stable memory of another layout version is refused, not misread.
#[test]
fn an_unknown_layout_version_is_refused() {
    let memory = DefaultMemoryImpl::default();
    let mut storage = Storage::init(memory.clone(), Meta { layout_version: 1, ..Meta::default() });
    storage.update_meta(|m| m.layout_version = 2);
    drop(storage);
    assert!(memory.size() > 0);
    assert!(matches!(Service::new(memory, None), Err(Error::Internal(m)) if m.contains("layout version 2")));
}

/// An upgrade keeps the model and its answers; the heap budget setting survives it.
#[test]
fn an_upgrade_keeps_model_answers_and_settings() {
    let (mut s, env, memory) = serving();
    configure(&mut s, &env, Settings { heap_budget_bytes: Some(100 << 20), ..NO_SETTINGS }).unwrap();
    let before = generate(&mut s, &env, &greedy("To be", 30)).unwrap();
    drop(s);
    let mut s = Service::new(memory, None).unwrap();
    assert_eq!(generate(&mut s, &env, &greedy("To be", 30)).unwrap().text, before.text);
    assert_eq!(s.stats(0, 0).heap_budget_bytes, 100 << 20);
    assert!(matches!(configure(&mut s, &env, Settings { heap_budget_bytes: Some(1), ..NO_SETTINGS }), Err(Error::InvalidArgument(_))));
}
