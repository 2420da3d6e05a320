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
        // Until the SIMD kernels land (issue 6), a long prompt on a wide model may not fit the
        // query's budget at all; the canister says so instead of trapping.
        let generation = match generation {
            Err(Error::PromptNeedsSession) if set != "char-tiny" => {
                eprintln!(
                    "{set} {:?}: the prompt does not fit a generate query yet",
                    p.prompt
                );
                None
            }
            other => Some(other.unwrap_or_else(|e| panic!("{set} {:?}: {e:?}", p.prompt))),
        };
        if let Some(generation) = generation {
            assert_eq!(generation.prompt_ids, p.prompt_ids, "{set} {:?}", p.prompt);
            // The query returns what fits in its instruction budget; every id must match.
            assert!(
                p.walsh.greedy_ids.starts_with(&generation.ids) && !generation.ids.is_empty(),
                "{set} {:?}: generate query gave {:?}",
                p.prompt,
                generation.ids
            );
            match generation.stop {
                StopReason::MaxTokens => assert_eq!(generation.ids.len(), 40),
                StopReason::Budget => assert!(generation.ids.len() < 40),
                other => panic!("{set}: unexpected stop {other:?}"),
            }
            if generation.ids.len() < 40 {
                eprintln!(
                    "{set} {:?}: the generate query fit {} of 40 tokens ({} instructions per token)",
                    p.prompt,
                    generation.ids.len(),
                    generation.instructions / generation.ids.len() as u64
                );
            }
        }

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
        assert_eq!(view.unwrap().ids, p.walsh.greedy_ids);
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
