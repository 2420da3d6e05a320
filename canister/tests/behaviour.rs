//! The canister's promises on the embedded host, with the small char-tiny model: upgrades keep
//! the model, only controllers upload, a bad upload changes nothing, uploads resume, sessions
//! belong to their caller, and every bad argument is a typed error (no call traps).

mod common;

use candid::{Decode, Encode, Principal};
use common::{Canister, greedy, tokenizer_json};
use ic_host::host::{Response, default_controller};
use sha2::{Digest, Sha256};
use walsh_canister::api::*;

fn user(name: &str) -> Principal {
    Principal::self_authenticating(name.as_bytes())
}

/// A canister serving char-tiny, plus the reference greedy ids of its first prompt.
fn ready() -> Option<(Canister, String, Vec<u32>)> {
    let data = test_support::testdata()?;
    let dir = data.join("char-tiny");
    let mut c = Canister::install();
    c.upload(BlobKind::Model, &std::fs::read(dir.join("model.walsh")).unwrap(), 5_000).unwrap();
    c.upload(BlobKind::Tokenizer, &tokenizer_json(&dir), 500).unwrap();
    let first = test_support::reference(&dir).prompts.remove(0);
    Some((c, first.prompt, first.walsh.greedy_ids))
}

fn generate(c: &mut Canister, request: &GenerateRequest, caller: Principal) -> Result<Generation, Error> {
    c.query("generate", Encode!(request).unwrap(), caller)
}

#[test]
fn upgrade_keeps_the_model_and_its_answers() {
    let Some((mut c, prompt, reference)) = ready() else { return };
    let before = generate(&mut c, &greedy(&prompt, 40), user("a")).unwrap();
    assert_eq!(before.ids, reference);
    let out = c.host.upgrade(common::canister_wasm(), &Encode!().unwrap()).expect("upgrade");
    assert!(out.instructions < 2_000_000_000, "reloading took {} instructions", out.instructions);
    let after = generate(&mut c, &greedy(&prompt, 40), user("a")).unwrap();
    assert_eq!(after.ids, reference);
    let info: Result<ModelInfo, Error> = c.query("model_info", Encode!().unwrap(), user("a"));
    let info = info.unwrap();
    assert_eq!((info.n_layer, info.n_embd, info.vocab_size), (2, 64, 65));
    assert_eq!(info.model_sha256, Sha256::digest(std::fs::read(test_support::testdata().unwrap().join("char-tiny/model.walsh")).unwrap()).to_vec());
}

#[test]
fn only_controllers_upload() {
    let Some((mut c, _, _)) = ready() else { return };
    let stranger = user("stranger");
    let settings = Settings {
        call_budget: Some(5_000_000_000),
        max_sessions: None,
        max_sessions_per_caller: None,
        session_timeout_seconds: None,
        heap_budget_bytes: None,
    };
    let calls = [
        ("upload_start", Encode!(&BlobKind::Model).unwrap()),
        ("upload_chunk", Encode!(&BlobKind::Model, &0u64, &serde_bytes::ByteBuf::from(vec![1u8])).unwrap()),
        ("upload_finish", Encode!(&BlobKind::Model, &1u64, &serde_bytes::ByteBuf::from(vec![0u8; 32])).unwrap()),
        ("configure", Encode!(&settings).unwrap()),
    ];
    for (method, arg) in calls {
        // An ingress message: refused by inspect_message before it costs the canister cycles.
        let out = c.host.update(method, &arg, stranger).unwrap();
        assert!(matches!(&out.response, Response::Reject { message, .. } if message.contains("inspect_message")), "{method}: {:?}", out.response);
        // Past inspection (a call from another canister is not inspected): the typed error.
        let out = c.host.execute_update(method, &arg, stranger).unwrap();
        let Response::Reply(bytes) = out.response else { panic!("{method}: {:?}", out.response) };
        let error = match method {
            "upload_finish" => Decode!(&bytes, Result<ModelInfo, Error>).unwrap().err(),
            "configure" => Decode!(&bytes, Result<(), Error>).unwrap().err(),
            _ => Decode!(&bytes, Result<UploadStatus, Error>).unwrap().err(),
        };
        assert_eq!(error, Some(Error::NotAuthorized), "{method}");
    }
}

#[test]
fn bad_uploads_change_nothing() {
    let Some((mut c, prompt, reference)) = ready() else { return };
    let me = default_controller();
    let model = std::fs::read(test_support::testdata().unwrap().join("char-tiny/model.walsh")).unwrap();
    // The right bytes with a wrong hash.
    let _: Result<UploadStatus, Error> = c.update("upload_start", Encode!(&BlobKind::Model).unwrap(), me);
    let _: Result<UploadStatus, Error> =
        c.update("upload_chunk", Encode!(&BlobKind::Model, &0u64, &serde_bytes::ByteBuf::from(model.clone())).unwrap(), me);
    let r: Result<ModelInfo, Error> =
        c.update("upload_finish", Encode!(&BlobKind::Model, &(model.len() as u64), &serde_bytes::ByteBuf::from(vec![0u8; 32])).unwrap(), me);
    assert!(matches!(r, Err(Error::HashMismatch { .. })), "{r:?}");
    // A wrong size.
    let r: Result<ModelInfo, Error> =
        c.update("upload_finish", Encode!(&BlobKind::Model, &(model.len() as u64 + 1), &serde_bytes::ByteBuf::from(vec![0u8; 32])).unwrap(), me);
    assert!(matches!(r, Err(Error::SizeMismatch { .. })), "{r:?}");
    // A damaged .walsh with a matching hash.
    let mut damaged = model.clone();
    damaged.truncate(model.len() - 100);
    let r = c.upload(BlobKind::Model, &damaged, 4096);
    assert!(matches!(&r, Err(Error::InvalidModel(m)) if m.contains("truncated")), "{r:?}");
    let r = c.upload(BlobKind::Tokenizer, b"{ not a tokenizer", 4096);
    assert!(matches!(r, Err(Error::InvalidTokenizer(_))), "{r:?}");
    // The old model and tokenizer still answer.
    assert_eq!(generate(&mut c, &greedy(&prompt, 40), user("a")).unwrap().ids, reference);
}

#[test]
fn interrupted_upload_resumes_from_the_reported_offset() {
    let Some((mut c, prompt, reference)) = ready() else { return };
    let me = default_controller();
    let model = std::fs::read(test_support::testdata().unwrap().join("char-tiny/model.walsh")).unwrap();
    let chunk = |c: &mut Canister, offset: usize, len: usize| -> Result<UploadStatus, Error> {
        let end = (offset + len).min(model.len());
        c.update("upload_chunk", Encode!(&BlobKind::Model, &(offset as u64), &serde_bytes::ByteBuf::from(model[offset..end].to_vec())).unwrap(), me)
    };
    let _: Result<UploadStatus, Error> = c.update("upload_start", Encode!(&BlobKind::Model).unwrap(), me);
    chunk(&mut c, 0, 3000).unwrap();
    chunk(&mut c, 3000, 3000).unwrap();
    // The client "times out" and resends the last chunk: accepted, nothing doubled.
    assert_eq!(chunk(&mut c, 3000, 3000).unwrap().received, 6000);
    // A chunk past the data is refused with where to resume.
    assert_eq!(chunk(&mut c, 9000, 1000), Err(Error::ChunkOutOfOrder { expected_offset: 6000 }));
    // A resent chunk with different bytes is refused.
    let r: Result<UploadStatus, Error> =
        c.update("upload_chunk", Encode!(&BlobKind::Model, &0u64, &serde_bytes::ByteBuf::from(vec![0u8; 10])).unwrap(), me);
    assert_eq!(r, Err(Error::ChunkMismatch { offset: 0 }));
    // The client restarts (even after an upgrade cleared the heap) and asks where to resume.
    c.host.upgrade(common::canister_wasm(), &Encode!().unwrap()).unwrap();
    let status: UploadStatus = c.query("upload_status", Encode!(&BlobKind::Model).unwrap(), me);
    assert!(status.in_progress);
    let mut offset = status.received as usize;
    while offset < model.len() {
        offset = chunk(&mut c, offset, 4000).unwrap().received as usize;
    }
    let sha = serde_bytes::ByteBuf::from(Sha256::digest(&model).to_vec());
    let r: Result<ModelInfo, Error> = c.update("upload_finish", Encode!(&BlobKind::Model, &(model.len() as u64), &sha).unwrap(), me);
    r.unwrap();
    assert_eq!(generate(&mut c, &greedy(&prompt, 40), user("a")).unwrap().ids, reference);
}

#[test]
fn sessions_belong_to_their_caller() {
    let Some((mut c, prompt, reference)) = ready() else { return };
    let (alice, bob) = (user("alice"), user("bob"));
    let chunk: Result<SessionChunk, Error> = c.update("session_start", Encode!(&greedy(&prompt, 40)).unwrap(), alice);
    let id = chunk.unwrap().session;
    let r: Result<SessionChunk, Error> = c.update("session_continue", Encode!(&id).unwrap(), bob);
    assert_eq!(r, Err(Error::NotYourSession));
    let r: Result<SessionView, Error> = c.query("session_get", Encode!(&id).unwrap(), bob);
    assert_eq!(r, Err(Error::NotYourSession));
    let r: Result<(), Error> = c.update("session_cancel", Encode!(&id).unwrap(), bob);
    assert_eq!(r, Err(Error::NotYourSession));
    let view: Result<SessionView, Error> = c.query("session_get", Encode!(&id).unwrap(), alice);
    assert_eq!(view.unwrap().ids, reference);
    let r: Result<(), Error> = c.update("session_cancel", Encode!(&id).unwrap(), alice);
    r.unwrap();
    let r: Result<SessionChunk, Error> = c.update("session_continue", Encode!(&id).unwrap(), alice);
    assert_eq!(r, Err(Error::UnknownSession));
    // Per-caller limit (4 by default), of running sessions: a finished one makes room and is
    // dropped when its caller starts the next.
    let finished: Result<SessionChunk, Error> = c.update("session_start", Encode!(&greedy(&prompt, 1)).unwrap(), bob);
    let finished = finished.unwrap();
    assert_eq!(finished.stop, Some(StopReason::MaxTokens));
    let small = Some(CallOptions { call_budget: Some(1_000_000) });
    for _ in 0..4 {
        let r: Result<SessionChunk, Error> = c.update("session_start", Encode!(&greedy(&prompt, 40), &small).unwrap(), bob);
        assert_eq!(r.unwrap().stop, None, "a 1 M budget does not finish 40 tokens");
    }
    let r: Result<SessionChunk, Error> = c.update("session_start", Encode!(&greedy(&prompt, 1)).unwrap(), bob);
    assert_eq!(r, Err(Error::TooManySessions { limit: 4 }));
    let r: Result<SessionView, Error> = c.query("session_get", Encode!(&finished.session).unwrap(), bob);
    assert_eq!(r, Err(Error::UnknownSession));
}

/// Runs a session to its end, continuing with `options` (None: as old clients call, with the
/// session id alone); returns its chunks.
fn run_session(
    c: &mut Canister,
    request: &GenerateRequest,
    start: Option<CallOptions>,
    each: Option<CallOptions>,
    caller: Principal,
) -> Vec<SessionChunk> {
    let first: Result<SessionChunk, Error> = c.update("session_start", Encode!(request, &start).unwrap(), caller);
    let mut chunks = vec![first.unwrap()];
    while chunks.last().unwrap().stop.is_none() {
        let id = chunks[0].session;
        let arg = match &each {
            Some(options) => Encode!(&id, &Some(options.clone())).unwrap(),
            None => Encode!(&id).unwrap(),
        };
        let next: Result<SessionChunk, Error> = c.update("session_continue", arg, caller);
        chunks.push(next.unwrap());
        assert!(chunks.len() < 10_000, "the session makes no progress");
    }
    chunks
}

#[test]
fn a_caller_may_ask_for_a_smaller_call_budget() {
    let Some((mut c, prompt, reference)) = ready() else { return };
    let me = user("a");
    let budget = |b: u64| Some(CallOptions { call_budget: Some(b) });
    let r: Result<SessionChunk, Error> = c.update("session_start", Encode!(&greedy(&prompt, 40), &budget(999_999)).unwrap(), me);
    assert!(matches!(&r, Err(Error::InvalidArgument(m)) if m.contains("call_budget")), "{r:?}");
    // The default: the controller's 20 B, all 40 tokens in one call.
    let whole = run_session(&mut c, &greedy(&prompt, 40), None, None, me);
    assert_eq!(whole.len(), 1);
    let total = whole[0].instructions;
    // Asked at the start, the budget holds for every call that asks for none.
    let small = total / 8;
    let chunks = run_session(&mut c, &greedy(&prompt, 40), budget(small), None, me);
    let ids: Vec<u32> = chunks.iter().flat_map(|k| k.ids.clone()).collect();
    assert_eq!(ids, reference, "the same text, in pieces");
    assert!(chunks.len() >= 8, "{} calls of at most {small}", chunks.len());
    for k in &chunks {
        assert!(k.instructions <= small, "a call used {} of {small}", k.instructions);
    }
    let text: String = chunks.iter().map(|k| k.text.as_str()).collect();
    assert_eq!(text, whole[0].text);
    // A continue call may ask for its own budget.
    let chunks = run_session(&mut c, &greedy(&prompt, 40), budget(small), budget(total / 2), me);
    assert!(chunks.len() >= 3 && chunks.len() < 8, "{} calls", chunks.len());
    // Never more than the controller's setting.
    let r: Result<(), Error> = c.update(
        "configure",
        Encode!(&Settings {
            call_budget: Some(small),
            max_sessions: None,
            max_sessions_per_caller: None,
            session_timeout_seconds: None,
            heap_budget_bytes: None
        })
        .unwrap(),
        default_controller(),
    );
    r.unwrap();
    let chunks = run_session(&mut c, &greedy(&prompt, 40), budget(35_000_000_000), budget(35_000_000_000), me);
    assert!(chunks.len() >= 8, "{} calls", chunks.len());
    assert!(chunks.iter().all(|k| k.instructions <= small));
}

/// What a case expects of the error it gets.
type ExpectError = fn(&Error) -> bool;

#[test]
fn every_bad_argument_is_a_typed_error() {
    // Before any model: NoModel, not a trap.
    let mut empty = Canister::install();
    assert_eq!(generate(&mut empty, &greedy("hi", 5), user("a")), Err(Error::NoModel));
    let Some((mut c, prompt, _)) = ready() else { return };
    let cases: Vec<(GenerateRequest, ExpectError)> = vec![
        (greedy("", 5), |e| *e == Error::EmptyPrompt),
        (greedy("\u{20ac}\u{20ac}", 5), |e| *e == Error::EmptyPrompt), // nothing in the vocabulary
        (greedy(&"a".repeat(65), 5), |e| matches!(e, Error::PromptTooLong { tokens: 65, limit: 64 })),
        (greedy(&prompt, 0), |e| matches!(e, Error::InvalidArgument(_))),
        (greedy(&prompt, 1_000_000), |e| matches!(e, Error::InvalidArgument(_))),
        (
            GenerateRequest { temperature: Some(f32::NAN), ..greedy(&prompt, 5) },
            |e| matches!(e, Error::InvalidArgument(m) if m.contains("temperature")),
        ),
        (GenerateRequest { temperature: Some(-1.0), ..greedy(&prompt, 5) }, |e| matches!(e, Error::InvalidArgument(_))),
        (GenerateRequest { top_k: Some(0), ..greedy(&prompt, 5) }, |e| matches!(e, Error::InvalidArgument(m) if m.contains("top_k"))),
        (GenerateRequest { top_p: Some(0.0), ..greedy(&prompt, 5) }, |e| matches!(e, Error::InvalidArgument(m) if m.contains("top_p"))),
        (GenerateRequest { top_p: Some(1.5), ..greedy(&prompt, 5) }, |e| matches!(e, Error::InvalidArgument(_))),
    ];
    for (request, expected) in cases {
        let r = generate(&mut c, &request, user("a"));
        assert!(matches!(&r, Err(e) if expected(e)), "{request:?}: {r:?}");
        let s: Result<SessionChunk, Error> = c.update("session_start", Encode!(&request).unwrap(), user("a"));
        assert!(matches!(&s, Err(e) if expected(e)), "session {request:?}: {s:?}");
    }
    let r: Result<SessionChunk, Error> = c.update("session_continue", Encode!(&12345u64).unwrap(), user("a"));
    assert_eq!(r, Err(Error::UnknownSession));
    // Undecodable arguments are the one thing ic-cdk rejects itself (before our code runs).
    let out = c.host.update("session_continue", b"not candid", user("a")).unwrap();
    assert!(matches!(out.response, Response::Reject { .. }));
    // A sampled generation with a seed is repeatable.
    let sampled = GenerateRequest { temperature: Some(1.0), top_k: Some(20), top_p: Some(0.9), seed: Some(7), ..greedy(&prompt, 20) };
    let a = generate(&mut c, &sampled, user("a")).unwrap();
    let b = generate(&mut c, &sampled, user("b")).unwrap();
    assert_eq!(a.ids, b.ids);
}
