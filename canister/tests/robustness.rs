//! Issue 17 on the embedded host: the canister stays correct and available under unlucky
//! uploads, hostile callers and full memory (F1–F8), and ill-typed arguments to every method
//! are the IC's reject with nothing changed. Models beyond the reference sets are built with
//! the engine's writer (`support/synthetic.rs`).

mod common;
#[path = "support/synthetic.rs"]
mod synthetic;

use candid::{Decode, Encode, Principal};
use common::{Canister, greedy, tokenizer_json};
use ic_host::host::{Response, default_controller};
use sha2::{Digest, Sha256};
use synthetic::{Shape, char_tokenizer, char_tokenizer_with_id};
use walsh_canister::api::*;

const NO_SETTINGS: Settings =
    Settings { call_budget: None, max_sessions: None, max_sessions_per_caller: None, session_timeout_seconds: None, heap_budget_bytes: None };

fn user(name: &str) -> Principal {
    Principal::self_authenticating(name.as_bytes())
}

/// A canister serving char-tiny, and a greedy answer of it to compare with after each attack.
fn serving_char_tiny() -> Option<(Canister, GenerateRequest, Generation)> {
    let dir = test_support::testdata()?.join("char-tiny");
    let mut c = Canister::install();
    c.upload(BlobKind::Model, &std::fs::read(dir.join("model.walsh")).unwrap(), 1_000_000).unwrap();
    c.upload(BlobKind::Tokenizer, &tokenizer_json(&dir), 1_000_000).unwrap();
    let request = greedy("ROMEO:", 30);
    let answer = generate(&mut c, &request).unwrap();
    Some((c, request, answer))
}

fn generate(c: &mut Canister, request: &GenerateRequest) -> Result<Generation, Error> {
    c.query("generate", Encode!(request).unwrap(), user("reader"))
}

fn model_info(c: &mut Canister) -> Result<ModelInfo, Error> {
    c.query("model_info", Encode!().unwrap(), user("reader"))
}

fn configure(c: &mut Canister, settings: &Settings) -> Result<(), Error> {
    c.update("configure", Encode!(settings).unwrap(), default_controller())
}

fn session_start(c: &mut Canister, request: &GenerateRequest, options: Option<CallOptions>, caller: Principal) -> Result<SessionChunk, Error> {
    c.update("session_start", Encode!(request, &options).unwrap(), caller)
}

fn session_continue(c: &mut Canister, id: u64, caller: Principal) -> Result<SessionChunk, Error> {
    c.update("session_continue", Encode!(&id, &None::<CallOptions>).unwrap(), caller)
}

fn stats(c: &mut Canister) -> Stats {
    c.query("stats", Encode!().unwrap(), user("reader"))
}

#[test]
fn f1_an_incompatible_model_leaves_model_info_and_answers_alone() {
    let Some((mut c, request, answer)) = serving_char_tiny() else { return };
    let before = model_info(&mut c).unwrap();
    let smaller = synthetic::model(&Shape { n_layer: 1, n_embd: 64, block_size: 64, vocab_size: 40 });
    let r = c.upload(BlobKind::Model, &smaller, 1_000_000);
    assert!(matches!(&r, Err(Error::Incompatible(m)) if m.contains("0..40")), "{r:?}");
    assert_eq!(model_info(&mut c).unwrap(), before);
    assert_eq!(generate(&mut c, &request).unwrap().text, answer.text);
}

#[test]
fn f2_anonymous_callers_get_no_sessions_and_finished_sessions_hold_nothing() {
    let Some((mut c, request, answer)) = serving_char_tiny() else { return };
    // Refused by inspect_message before it runs (an ingress message from the anonymous principal).
    let out = c.host.update("session_start", &Encode!(&request, &None::<CallOptions>).unwrap(), Principal::anonymous()).unwrap();
    assert!(matches!(&out.response, Response::Reject { message, .. } if message.contains("inspect_message")), "{:?}", out.response);
    let out =
        c.host.update("upload_chunk", &Encode!(&BlobKind::Model, &0u64, &serde_bytes::ByteBuf::from(vec![1u8])).unwrap(), user("stranger")).unwrap();
    assert!(matches!(&out.response, Response::Reject { message, .. } if message.contains("inspect_message")), "{:?}", out.response);
    // Past inspection (a call from another canister is not inspected), the typed error.
    let out = c.host.execute_update("session_start", &Encode!(&request, &None::<CallOptions>).unwrap(), Principal::anonymous()).unwrap();
    let Response::Reply(bytes) = out.response else { panic!("{:?}", out.response) };
    assert_eq!(Decode!(&bytes, Result<SessionChunk, Error>).unwrap(), Err(Error::AnonymousCaller));
    // Two callers keep finished sessions "busy" with cheap continues; with a limit of 2 a third
    // and a fourth caller still start theirs.
    configure(&mut c, &Settings { max_sessions: Some(2), max_sessions_per_caller: Some(1), ..NO_SETTINGS }).unwrap();
    let mut ids = Vec::new();
    for name in ["a", "b"] {
        let chunk = session_start(&mut c, &request, None, user(name)).unwrap();
        assert_eq!((chunk.stop, &chunk.text), (Some(StopReason::MaxTokens), &answer.text));
        ids.push(chunk.session);
    }
    for _ in 0..3 {
        for (name, &id) in ["a", "b"].iter().zip(&ids) {
            assert_eq!(session_continue(&mut c, id, user(name)).unwrap().stop, Some(StopReason::MaxTokens));
        }
    }
    assert_eq!(stats(&mut c).session_heap_bytes, 0, "finished sessions hold no cache");
    let view: Result<SessionView, Error> = c.query("session_get", Encode!(&ids[0]).unwrap(), user("b"));
    assert_eq!(view, Err(Error::NotYourSession));
    for name in ["c", "d"] {
        assert_eq!(session_start(&mut c, &request, None, user(name)).unwrap().text, answer.text);
    }
    assert!(ids[1].abs_diff(ids[0]) > 1_000_000, "ids are not a counter: {ids:?}");
}

/// A long-context model: small width, 4096 positions, so one layer over a whole-context prompt
/// is far more than a query's 5 B.
fn long_context() -> (Canister, Vec<u8>) {
    let model = synthetic::model(&Shape { n_layer: 2, n_embd: 64, block_size: 4096, vocab_size: 96 });
    let mut c = Canister::install();
    c.upload(BlobKind::Model, &model, 1_900_000).unwrap();
    c.upload(BlobKind::Tokenizer, &char_tokenizer(96), 1_900_000).unwrap();
    (c, model)
}

#[test]
fn f3_a_prompt_as_long_as_the_context_completes_through_sessions() {
    let (mut c, _) = long_context();
    let prompt = "All the world's a stage. ".repeat(200)[..4096].to_string();
    let me = user("a");
    let mut chunk = session_start(&mut c, &greedy(&prompt, 10), None, me).unwrap();
    let mut calls = 1;
    while chunk.stop.is_none() {
        chunk = session_continue(&mut c, chunk.session, me).unwrap();
        calls += 1;
        assert!(calls < 500, "no progress");
    }
    assert_eq!(chunk.stop, Some(StopReason::ContextFull));
    eprintln!("a 4096-token prompt on a 4096-token context: {calls} calls");
}

#[test]
fn f3_a_long_query_prompt_is_a_typed_error_or_a_paused_result() {
    let (mut c, _) = long_context();
    let prompt = "All the world's a stage. ".repeat(100)[..2000].to_string();
    let out = c.host.query("generate", &Encode!(&greedy(&prompt, 5)).unwrap(), user("a")).unwrap();
    let Response::Reply(bytes) = out.response else { panic!("the query trapped: {:?}", out.response) };
    match Decode!(&bytes, Result<Generation, Error>).unwrap() {
        Err(Error::PromptNeedsSession) => {}
        Ok(g) => assert_eq!(g.stop, StopReason::Budget),
        other => panic!("{other:?}"),
    }
}

#[test]
fn f3_a_tokenizer_past_what_a_message_parses_is_refused_at_its_chunk() {
    let Some((mut c, request, answer)) = serving_char_tiny() else { return };
    let me = default_controller();
    let _: Result<UploadStatus, Error> = c.update("upload_start", Encode!(&BlobKind::Tokenizer).unwrap(), me);
    let piece = serde_bytes::ByteBuf::from(vec![b' '; 1_900_000]);
    let mut offset = 0u64;
    let refused = loop {
        let r: Result<UploadStatus, Error> = c.update("upload_chunk", Encode!(&BlobKind::Tokenizer, &offset, &piece).unwrap(), me);
        match r {
            Ok(status) => offset = status.received,
            Err(e) => break e,
        }
    };
    assert_eq!(refused, Error::BlobTooLarge { max: walsh_canister::storage::MAX_TOKENIZER_BYTES });
    assert_eq!(generate(&mut c, &request).unwrap().text, answer.text);
}

/// Per-chunk cost must not grow with what is staged, after an upgrade either (the hash state
/// lives in stable memory): 600 MB staged, an upgrade, then the rest and the finish.
#[test]
fn f3_an_upload_interrupted_by_an_upgrade_after_600_mb_resumes_and_finishes() {
    if test_support::testdata().is_none() {
        return;
    }
    let started = std::time::Instant::now();
    // 3.2 M ids × 192 int8 columns: a 614 MB model whose embedding loads in place.
    let model = synthetic::model(&Shape { n_layer: 1, n_embd: 192, block_size: 64, vocab_size: 3_200_000 });
    assert!(model.len() > 600_000_000);
    let Some((mut c, request, answer)) = serving_char_tiny() else { return };
    let me = default_controller();
    let _: Result<UploadStatus, Error> = c.update("upload_start", Encode!(&BlobKind::Model).unwrap(), me);
    let chunk = 1_900_000;
    let mut costs = Vec::new();
    let send = |c: &mut Canister, offset: usize| {
        let end = (offset + chunk).min(model.len());
        let arg = Encode!(&BlobKind::Model, &(offset as u64), &serde_bytes::ByteBuf::from(model[offset..end].to_vec())).unwrap();
        let out = c.host.update("upload_chunk", &arg, me).unwrap();
        assert!(matches!(out.response, Response::Reply(_)), "chunk at {offset}: {:?}", out.response);
        out.instructions
    };
    let mut offset = 0;
    while offset < 600_000_000 {
        costs.push(send(&mut c, offset));
        offset += chunk;
    }
    let upgrade = c.host.upgrade(common::canister_wasm(), &Encode!().unwrap()).expect("upgrade");
    // The previous model still serves, unchanged.
    assert_eq!(generate(&mut c, &request).unwrap().text, answer.text);
    let status: UploadStatus = c.query("upload_status", Encode!(&BlobKind::Model).unwrap(), me);
    assert_eq!(status.received, offset as u64);
    let mut after = Vec::new();
    while offset < model.len() {
        after.push(send(&mut c, offset));
        offset += chunk;
    }
    let sha = serde_bytes::ByteBuf::from(Sha256::digest(&model).to_vec());
    let out = c.host.update("upload_finish", &Encode!(&BlobKind::Model, &(model.len() as u64), &sha).unwrap(), me).unwrap();
    let Response::Reply(bytes) = out.response else { panic!("upload_finish: {:?}", out.response) };
    let info = Decode!(&bytes, Result<ModelInfo, Error>).unwrap().unwrap();
    assert_eq!((info.vocab_size, info.model_bytes), (3_200_000, model.len() as u64));
    let (first, last) = (costs[1], *costs.last().unwrap());
    let largest_after = *after.iter().max().unwrap();
    eprintln!(
        "600 MB: chunk 2 {first}, chunk {} {last}, after the upgrade at most {largest_after} instructions; upgrade {}, finish {}; {:.0} s in all",
        costs.len(),
        upgrade.instructions,
        out.instructions,
        started.elapsed().as_secs_f64()
    );
    assert!(last < first * 2 && largest_after < first * 2, "per-chunk cost grows with the staged size");
    assert!(out.instructions < 35_000_000_000, "finish: {}", out.instructions);
}

#[test]
fn f4_f6_tokenizers_are_checked_against_the_model_for_real() {
    let mut c = Canister::install();
    // F4: no model yet: the tokenizer stays staged, and finishes once a model is active.
    let tokenizer = char_tokenizer(96);
    assert_eq!(c.upload(BlobKind::Tokenizer, &tokenizer, 1_000_000), Err(Error::NoModel));
    let status: UploadStatus = c.query("upload_status", Encode!(&BlobKind::Tokenizer).unwrap(), user("a"));
    assert_eq!((status.in_progress, status.active_size), (true, None));
    c.upload(BlobKind::Model, &synthetic::model(&Shape { n_layer: 1, n_embd: 64, block_size: 128, vocab_size: 96 }), 1_000_000).unwrap();
    let sha = serde_bytes::ByteBuf::from(Sha256::digest(&tokenizer).to_vec());
    let info: Result<ModelInfo, Error> =
        c.update("upload_finish", Encode!(&BlobKind::Tokenizer, &(tokenizer.len() as u64), &sha).unwrap(), default_controller());
    assert_eq!(info.unwrap().tokenizer.map(|t| t.unknown_ids), Some(0));
    let answer = generate(&mut c, &greedy("To be", 20)).unwrap();
    // F6: a character mapped to an id the model lacks is refused; the tokenizer in service stays.
    let r = c.upload(BlobKind::Tokenizer, &char_tokenizer_with_id(20, 96), 1_000_000);
    assert!(matches!(&r, Err(Error::Incompatible(m)) if m.contains("96")), "{r:?}");
    assert_eq!(generate(&mut c, &greedy("To be", 20)).unwrap().ids, answer.ids);
    // F5: fewer ids than the model: counted, and generated ones show as U+FFFD.
    let info = c.upload(BlobKind::Tokenizer, &char_tokenizer(60), 1_000_000).unwrap();
    assert_eq!(info.tokenizer.map(|t| t.unknown_ids), Some(36));
    let chars = synthetic::chars(60);
    let mut unknown = 0;
    for seed in 0..4 {
        let g = generate(&mut c, &GenerateRequest { temperature: Some(1.5), seed: Some(seed), ..greedy("To be", 40) }).unwrap();
        let expected: String = g.ids.iter().map(|&id| chars.get(id as usize).map_or("\u{FFFD}", |s| s.as_str())).collect();
        assert_eq!(g.text, expected);
        unknown += g.ids.iter().filter(|&&id| id >= 60).count();
    }
    assert!(unknown > 0);
}

#[test]
fn f7_a_failed_start_leaves_no_session_behind() {
    let Some((mut c, request, _)) = serving_char_tiny() else { return };
    configure(&mut c, &Settings { max_sessions_per_caller: Some(1), ..NO_SETTINGS }).unwrap();
    let me = user("a");
    for bad in [greedy("", 5), greedy(&"a".repeat(65), 5), greedy("ROMEO:", 0)] {
        assert!(session_start(&mut c, &bad, None, me).is_err());
    }
    assert_eq!(stats(&mut c).sessions, 0);
    let small = Some(CallOptions { call_budget: Some(1_000_000) });
    assert_eq!(session_start(&mut c, &request, small, me).unwrap().stop, None);
    assert_eq!(session_start(&mut c, &request, None, me), Err(Error::TooManySessions { limit: 1 }));
}

#[test]
fn f8_filling_the_heap_budget_is_a_typed_error_and_the_controller_still_works() {
    let (mut c, _) = long_context();
    let answer = generate(&mut c, &greedy("To be", 20)).unwrap();
    configure(
        &mut c,
        &Settings { max_sessions: Some(10_000), max_sessions_per_caller: Some(10_000), heap_budget_bytes: Some(256 << 20), ..NO_SETTINGS },
    )
    .unwrap();
    let tiny = Some(CallOptions { call_budget: Some(1_000_000) });
    let me = user("a");
    let mut admitted = 0;
    let refusal = loop {
        match session_start(&mut c, &greedy("To be", 4000), tiny.clone(), me) {
            Ok(_) => admitted += 1,
            Err(e) => break e,
        }
        assert!(admitted < 10_000);
    };
    assert!(matches!(refusal, Error::HeapBudgetExceeded { .. }), "{refusal:?}");
    // Let every admitted session grow its cache for real (each call prefills some more).
    let s = stats(&mut c);
    assert!(s.heap_reserved_bytes <= 256 << 20 && s.heap_bytes < 3 << 30, "{admitted} sessions: {s:?}");
    assert!(matches!(generate(&mut c, &greedy("To be", 4000)), Err(Error::HeapBudgetExceeded { .. })));
    assert_eq!(generate(&mut c, &greedy("To be", 20)).unwrap().ids, answer.ids);
    // The controller uploads and configures; the model in service answers as before.
    c.upload(BlobKind::Tokenizer, &char_tokenizer(96), 1_900_000).unwrap();
    assert_eq!(generate(&mut c, &greedy("To be", 20)).unwrap().ids, answer.ids);
    configure(&mut c, &Settings { heap_budget_bytes: Some(1 << 30), ..NO_SETTINGS }).unwrap();
    session_start(&mut c, &greedy("To be", 4000), tiny, me).unwrap();
    eprintln!("{admitted} sessions of 4 000 tokens admitted in 256 MiB; {s:?}");
}

/// Every method, given arguments that are not Candid or not its types, is the IC's reject, and
/// nothing changes (the model, the upload in progress, the settings, the sessions).
#[test]
fn ill_typed_arguments_are_rejected_and_change_nothing() {
    let Some((mut c, request, answer)) = serving_char_tiny() else { return };
    let me = default_controller();
    let _: Result<UploadStatus, Error> = c.update("upload_start", Encode!(&BlobKind::Model).unwrap(), me);
    let _: Result<UploadStatus, Error> =
        c.update("upload_chunk", Encode!(&BlobKind::Model, &0u64, &serde_bytes::ByteBuf::from(vec![7u8; 100])).unwrap(), me);
    let session = session_start(&mut c, &request, Some(CallOptions { call_budget: Some(1_000_000) }), user("a")).unwrap().session;
    let snapshot = |c: &mut Canister| {
        let status: UploadStatus = c.query("upload_status", Encode!(&BlobKind::Model).unwrap(), me);
        let view: Result<SessionView, Error> = c.query("session_get", Encode!(&session).unwrap(), user("a"));
        let s = stats(c);
        (model_info(c), status, view, s.sessions, s.call_budget, s.heap_budget_bytes)
    };
    let before = snapshot(&mut c);
    let updates = ["upload_start", "upload_chunk", "upload_finish", "session_start", "session_continue", "session_cancel", "configure"];
    let queries = ["generate", "upload_status", "session_get", "model_info", "stats", "http_request"];
    // Not Candid; a text and an int where every method's first argument is something else; a
    // truncated message. (Extra arguments after well-typed ones are not ill-typed: Candid ignores them.)
    let truncated = Encode!(&BlobKind::Model, &0u64, &serde_bytes::ByteBuf::from(vec![1u8; 64])).unwrap();
    let bad: [Vec<u8>; 3] = [b"not candid".to_vec(), Encode!(&"a text", &-5i64).unwrap(), truncated[..truncated.len() - 10].to_vec()];
    for arg in &bad {
        for method in updates {
            for caller in [me, user("a")] {
                let out = c.host.update(method, arg, caller).unwrap();
                assert!(matches!(out.response, Response::Reject { .. }), "{method}: {:?}", out.response);
            }
        }
        for method in queries {
            let out = c.host.query(method, arg, user("a")).unwrap();
            if matches!(method, "model_info" | "stats") {
                // Methods without arguments do not decode theirs: any bytes get the answer.
                assert!(matches!(out.response, Response::Reply(_)), "{method}: {:?}", out.response);
            } else {
                assert!(matches!(out.response, Response::Reject { .. }), "{method}: {:?}", out.response);
            }
        }
    }
    assert_eq!(snapshot(&mut c), before);
    assert_eq!(generate(&mut c, &request).unwrap().ids, answer.ids);
}
