//! Through the canister on the embedded IC host: upload a reference model and its tokenizer,
//! then generate 40 greedy tokens for every reference prompt, with the `generate` query and with
//! sessions; both must give the reference ids exactly.

mod common;

use candid::Encode;
use common::{Canister, greedy, tokenizer_json};
use walsh_canister::api::*;
use walsh_engine::generate::{GenerateOptions, Generator};
use walsh_engine::model::Model;
use walsh_engine::sampling::SamplingParams;
use walsh_engine::tokenizer::Tokenizer;

fn check(set: &str) {
    let Some(data) = test_support::testdata() else {
        return;
    };
    let dir = data.join(set);
    let mut c = Canister::install();
    let model = std::fs::read(dir.join("model.walsh")).unwrap();
    c.upload(BlobKind::Model, &model, 1_000_000).expect("model upload");
    let info = c.upload(BlobKind::Tokenizer, &tokenizer_json(&dir), 1_000_000).expect("tokenizer upload");
    assert!(info.tokenizer.is_some());
    let user = candid::Principal::self_authenticating(b"parity user");
    for p in test_support::reference(&dir).prompts {
        let generation: Result<Generation, Error> = c.query("generate", Encode!(&greedy(&p.prompt, 40)).unwrap(), user);
        // The whole 40-token answer fits one query (the SIMD kernels keep a token of these
        // models far under the query budget) and equals the reference.
        let generation = generation.unwrap_or_else(|e| panic!("{set} {:?}: {e:?}", p.prompt));
        assert_eq!(generation.prompt_ids, p.prompt_ids, "{set} {:?}", p.prompt);
        assert_eq!(generation.stop, StopReason::MaxTokens, "{set} {:?}", p.prompt);
        assert_eq!(generation.ids, p.walsh.greedy_ids, "{set} {:?}: generate query", p.prompt);

        // The cache of a running session (a finished one frees it at once): one started with the
        // smallest budget, which has not got through its prompt, then cancelled.
        let paused: Result<SessionChunk, Error> =
            c.update("session_start", Encode!(&greedy(&p.prompt, 40), &Some(CallOptions { call_budget: Some(1_000_000) })).unwrap(), user);
        let paused = paused.unwrap();
        assert_eq!(paused.stop, None);
        let view: Result<SessionView, Error> = c.query("session_get", Encode!(&paused.session).unwrap(), user);
        let running_heap = view.unwrap().heap_bytes;
        let stats: Stats = c.query("stats", Encode!().unwrap(), user);
        assert!(stats.session_heap_bytes >= running_heap);
        let cancelled: Result<(), Error> = c.update("session_cancel", Encode!(&paused.session).unwrap(), user);
        cancelled.unwrap();

        let mut chunk: SessionChunk =
            c.update::<Result<SessionChunk, Error>>("session_start", Encode!(&greedy(&p.prompt, 40)).unwrap(), user).unwrap();
        let session = chunk.session;
        let mut ids = chunk.ids.clone();
        let mut text = chunk.text.clone();
        while chunk.stop.is_none() {
            chunk = c.update::<Result<SessionChunk, Error>>("session_continue", Encode!(&session).unwrap(), user).unwrap();
            ids.extend(&chunk.ids);
            text.push_str(&chunk.text);
        }
        assert_eq!(ids, p.walsh.greedy_ids, "{set} {:?}: session", p.prompt);
        assert_eq!(text, p.walsh.decoded_text, "{set} {:?}: session text", p.prompt);
        let view: Result<SessionView, Error> = c.query("session_get", Encode!(&session).unwrap(), user);
        let view = view.unwrap();
        assert_eq!(view.ids, p.walsh.greedy_ids);
        // Keys and values (f32) of every position the session has run, in every layer (the
        // last generated token is sampled but not yet run), plus the forward pass's buffers:
        // logits and a few vectors of the model's widths.
        let positions = (p.prompt_ids.len() + view.ids.len() - 1) as u64;
        let kv_floor = 2 * u64::from(info.n_layer) * u64::from(info.n_embd) * 4 * positions;
        let buffers = 4 * (u64::from(info.vocab_size) + 16 * u64::from(info.n_embd) + positions);
        // The engine reserves the cache for every position the session can reach when it starts
        // (the logits come with the first token, which the paused session has not reached).
        assert!(
            running_heap >= kv_floor && running_heap <= 2 * kv_floor + 2 * buffers,
            "{set}: session heap {running_heap} for a {kv_floor}-byte cache"
        );
        assert_eq!(view.heap_bytes, 0, "{set}: a finished session frees its cache");
        let stats: Stats = c.query("stats", Encode!().unwrap(), user);
        assert_eq!(stats.session_heap_bytes, 0);
    }

    // Sampled text: the canister (SIMD kernels) and the native engine (their plain-Rust twins)
    // draw the same tokens from the same seed.
    let native = Model::load(&model).unwrap();
    let tokenizer = Tokenizer::from_json(&tokenizer_json(&dir)).unwrap();
    let first = &test_support::reference(&dir).prompts[0];
    for (temperature, top_k, top_p) in [(0.9, None, None), (1.0, Some(40), Some(0.9)), (0.7, None, Some(0.5))] {
        let request = GenerateRequest { temperature: Some(temperature), top_k, top_p, seed: Some(11), ..greedy(&first.prompt, 24) };
        let generation: Result<Generation, Error> = c.query("generate", Encode!(&request).unwrap(), user);
        let generation = generation.unwrap();
        let options = GenerateOptions {
            max_tokens: 24,
            sampling: SamplingParams { temperature, top_k: top_k.map(|k| k as usize), top_p },
            seed: 11,
            stop_token: tokenizer.end_of_text(),
        };
        let mut expected = Generator::new(&native, &first.prompt_ids, &options).unwrap();
        while expected.step(&native).unwrap().is_some() {}
        assert_eq!(generation.ids, expected.generated(), "{set}: sampled at {temperature}, top_k {top_k:?}, top_p {top_p:?}");
    }
}

#[test]
fn char_tiny() {
    check("char-tiny");
}

#[test]
fn gpt2_small() {
    check("gpt2-small");
}

#[test]
fn author_512() {
    check("author-512");
}
