//! Through the canister on the embedded IC host: upload a reference model and its tokenizer,
//! then generate 40 greedy tokens for every reference prompt, with the `generate` query and with
//! sessions; both must give the reference ids exactly.

mod common;

use candid::Encode;
use common::{Canister, greedy, tokenizer_json};
use walsh_canister::api::*;

fn check(set: &str) {
    let Some(data) = test_support::testdata() else {
        return;
    };
    let dir = data.join(set);
    let mut c = Canister::install();
    let model = std::fs::read(dir.join("model.walsh")).unwrap();
    c.upload(BlobKind::Model, &model, 1_000_000)
        .expect("model upload");
    let info = c
        .upload(BlobKind::Tokenizer, &tokenizer_json(&dir), 1_000_000)
        .expect("tokenizer upload");
    assert!(info.tokenizer.is_some());
    let user = candid::Principal::self_authenticating(b"parity user");
    for p in test_support::reference(&dir).prompts {
        let generation: Result<Generation, Error> =
            c.query("generate", Encode!(&greedy(&p.prompt, 40)).unwrap(), user);
        // The whole 40-token answer fits one query (the SIMD kernels keep a token of these
        // models far under the query budget) and equals the reference.
        let generation = generation.unwrap_or_else(|e| panic!("{set} {:?}: {e:?}", p.prompt));
        assert_eq!(generation.prompt_ids, p.prompt_ids, "{set} {:?}", p.prompt);
        assert_eq!(generation.stop, StopReason::MaxTokens, "{set} {:?}", p.prompt);
        assert_eq!(generation.ids, p.walsh.greedy_ids, "{set} {:?}: generate query", p.prompt);

        let mut chunk: SessionChunk = c
            .update::<Result<SessionChunk, Error>>(
                "session_start",
                Encode!(&greedy(&p.prompt, 40)).unwrap(),
                user,
            )
            .unwrap();
        let session = chunk.session;
        let mut ids = chunk.ids.clone();
        let mut text = chunk.text.clone();
        while chunk.stop.is_none() {
            chunk = c
                .update::<Result<SessionChunk, Error>>(
                    "session_continue",
                    Encode!(&session).unwrap(),
                    user,
                )
                .unwrap();
            ids.extend(&chunk.ids);
            text.push_str(&chunk.text);
        }
        assert_eq!(ids, p.walsh.greedy_ids, "{set} {:?}: session", p.prompt);
        assert_eq!(
            text, p.walsh.decoded_text,
            "{set} {:?}: session text",
            p.prompt
        );
        let view: Result<SessionView, Error> =
            c.query("session_get", Encode!(&session).unwrap(), user);
        let view = view.unwrap();
        assert_eq!(view.ids, p.walsh.greedy_ids);
        // Keys and values (f32) of every position the session has run, in every layer (the
        // last generated token is sampled but not yet run), plus the forward pass's buffers:
        // logits and a few vectors of the model's widths.
        let positions = (p.prompt_ids.len() + view.ids.len() - 1) as u64;
        let kv_floor = 2 * u64::from(info.n_layer) * u64::from(info.n_embd) * 4 * positions;
        let buffers = 4 * (u64::from(info.vocab_size) + 16 * u64::from(info.n_embd) + positions);
        assert!(
            view.heap_bytes >= kv_floor + 4 * u64::from(info.vocab_size) && view.heap_bytes <= 2 * kv_floor + 2 * buffers,
            "{set}: session heap {} for a {kv_floor}-byte cache",
            view.heap_bytes
        );
        let stats: Stats = c.query("stats", Encode!().unwrap(), user);
        assert!(stats.session_heap_bytes >= view.heap_bytes);
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
