//! Generation rules (context limit, bad inputs), streaming text decoding, and pausing a forward
//! pass at any step (the head mixer's reference test is a unit test of the kernels now).

use walsh_engine::generate::{GenerateError, GenerateOptions, Generator, Progress, StopReason};
use walsh_engine::model::{InferenceError, Model};
use walsh_engine::sampling::SamplingParams;
use walsh_engine::tokenizer::{TextStream, Tokenizer};

fn char_tiny() -> Option<Model> {
    let data = test_support::testdata()?;
    Some(Model::load(&std::fs::read(data.join("char-tiny/model.walsh")).unwrap()).unwrap())
}

fn greedy(max_tokens: usize) -> GenerateOptions {
    GenerateOptions { max_tokens, sampling: SamplingParams::default(), seed: 0, stop_token: None }
}

#[test]
fn context_limit_stops_cleanly() {
    let Some(model) = char_tiny() else { return };
    let block = model.config.block_size; // 64
    // A prompt that fills the context leaves room to sample exactly one token.
    let prompt: Vec<u32> = (0..block as u32).map(|i| i % 65).collect();
    let mut g = Generator::new(&model, &prompt, &greedy(10)).unwrap();
    let mut n = 0;
    while g.step(&model).unwrap().is_some() {
        n += 1;
    }
    assert_eq!(n, 1);
    assert_eq!(g.stop_reason(), Some(&StopReason::ContextLimit));
    // A 60-token prompt: tokens 61..=64 fill the cache, the 5th is sampled from the full one.
    let mut g = Generator::new(&model, &prompt[..60], &greedy(100)).unwrap();
    while g.step(&model).unwrap().is_some() {}
    assert_eq!(g.generated().len(), block - 60 + 1);
    assert_eq!(g.cache().len(), block);
    // Longer prompts are refused up front.
    let long: Vec<u32> = vec![1; block + 1];
    assert_eq!(Generator::new(&model, &long, &greedy(1)).unwrap_err(), GenerateError::PromptTooLong { tokens: block + 1, block_size: block });
    // The cache itself refuses to overflow.
    let mut cache = model.new_cache();
    assert_eq!(model.forward(&mut cache, &long), Err(InferenceError::ContextFull { needed: block + 1, capacity: block }));
}

#[test]
fn bad_generation_inputs_are_errors() {
    let Some(model) = char_tiny() else { return };
    assert_eq!(Generator::new(&model, &[], &greedy(1)).unwrap_err(), GenerateError::EmptyPrompt);
    assert_eq!(Generator::new(&model, &[1], &greedy(0)).unwrap_err(), GenerateError::ZeroMaxTokens);
    assert!(matches!(
        Generator::new(&model, &[1, 65], &greedy(1)).unwrap_err(),
        GenerateError::Inference(InferenceError::TokenOutOfRange { token: 65, vocab_size: 65 })
    ));
    let mut cache = model.new_cache();
    assert_eq!(model.forward(&mut cache, &[]), Err(InferenceError::EmptyInput));
    assert!(cache.is_empty());
}

#[test]
fn stop_token_ends_generation() {
    let Some(model) = char_tiny() else { return };
    // Greedy char-tiny after "ROMEO:" starts with id 0 ('\n').
    let options = GenerateOptions { stop_token: Some(0), ..greedy(40) };
    let mut g = Generator::new(&model, &[30, 27, 25, 17, 27, 10], &options).unwrap();
    while g.step(&model).unwrap().is_some() {}
    assert_eq!(g.generated(), [0]);
    assert_eq!(g.stop_reason(), Some(&StopReason::EndOfText));
}

#[test]
fn abandoned_pass_leaves_the_cache_consistent() {
    let Some(model) = char_tiny() else { return };
    let mut cache = model.new_cache();
    model.forward(&mut cache, &[1, 2, 3]).unwrap();
    // Run one layer of a pass, then drop it.
    let mut act = model.begin(&mut cache, &[4, 5]).unwrap();
    model.run_layer(&mut cache, &mut act).unwrap();
    assert!(matches!(model.finish(&mut cache, &act), Err(InferenceError::LayersPending { done: 1, total: 2 })));
    let resumed = model.forward(&mut cache, &[4, 5]).unwrap();
    let mut fresh = model.new_cache();
    let expected = model.forward(&mut fresh, &[1, 2, 3, 4, 5]).unwrap();
    let diff = resumed.iter().zip(&expected).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
    assert!(diff < 1e-4, "{diff}");
}

#[test]
fn streaming_never_splits_a_character() {
    let Some(data) = test_support::testdata() else { return };
    let tokenizer = Tokenizer::from_json(&std::fs::read(data.join("gpt2-small/tokenizer.json")).unwrap()).unwrap();
    let text = "Caf\u{e9} \u{4e2d}\u{6587} \u{1f642}\u{1f680} na\u{ef}ve \u{2014} ok";
    let ids = tokenizer.encode(text).unwrap();
    // GPT-2 splits these characters across several byte tokens.
    assert!(ids.len() > text.chars().count() / 2);
    assert!(ids.iter().any(|&id| tokenizer.decode(&[id]).unwrap().contains('\u{FFFD}')), "test needs split characters");
    let mut stream = TextStream::new();
    let mut out = String::new();
    for &id in &ids {
        let piece = stream.push(&tokenizer, id).unwrap();
        assert!(!piece.contains('\u{FFFD}'), "piece {piece:?}");
        out.push_str(&piece);
    }
    out.push_str(&stream.flush(&tokenizer).unwrap());
    assert_eq!(out, text);
    assert_eq!(tokenizer.decode(&ids).unwrap(), text);
}

#[test]
fn gpt2_tokenizer_matches_reference_ids() {
    let Some(data) = test_support::testdata() else { return };
    for set in ["gpt2-small", "gpt2-bench"] {
        let dir = data.join(set);
        let tokenizer = Tokenizer::from_json(&std::fs::read(dir.join("tokenizer.json")).unwrap()).unwrap();
        for p in test_support::reference(&dir).prompts {
            assert_eq!(tokenizer.encode(&p.prompt).unwrap(), p.prompt_ids, "{set} {:?}", p.prompt);
            assert_eq!(tokenizer.decode(&p.walsh.greedy_ids).unwrap(), p.walsh.decoded_text);
        }
        assert_eq!(tokenizer.encode("a<|endoftext|>b").unwrap()[1], 50256);
        assert_eq!(tokenizer.end_of_text(), Some(50256));
    }
}

/// With W[k] = 0 except one permutation block, the mixer reduces to a signed head permutation
/// that we can write down by hand: z'_i = β ⊙ SIGN[i][i⊕k] z_{i⊕k}. Two groups (16 heads) must be
/// mixed independently, each with the same weights.
/// Runs `generator` to the end, pausing whenever `may_continue` says no; returns the tokens, the
/// bits of the logits each was chosen from, and the number of pauses.
fn run_paused(model: &Model, mut generator: Generator, mut may_continue: impl FnMut() -> bool) -> (Vec<u32>, Vec<Vec<u32>>, usize) {
    let (mut tokens, mut logits, mut pauses) = (Vec::new(), Vec::new(), 0);
    loop {
        match generator.advance(model, &mut may_continue).unwrap() {
            Progress::Token(step) => {
                tokens.push(step.token);
                logits.push(generator.last_logits().iter().map(|v| v.to_bits()).collect());
            }
            Progress::Paused => pauses += 1,
            Progress::Done => break,
        }
    }
    (tokens, logits, pauses)
}

#[test]
fn pausing_after_every_step_gives_the_same_tokens() {
    let Some(model) = char_tiny() else { return };
    let prompt = [30, 27, 25, 17, 27, 10];
    let (expected, expected_logits, no_pauses) = run_paused(&model, Generator::new(&model, &prompt, &greedy(12)).unwrap(), || true);
    assert_eq!(no_pauses, 0);
    // Allow one step per call: the prompt's pass is 6 positions × 2 layers = 12 steps (11 pauses),
    // each of the 11 later passes 1 position × 2 layers (1 pause each).
    let mut paused = Generator::new(&model, &prompt, &greedy(12)).unwrap();
    let (mut tokens, mut logits, mut pauses) = (Vec::new(), Vec::new(), 0);
    loop {
        let mut allowance = 1;
        match paused.advance(&model, || std::mem::replace(&mut allowance, 0) > 0).unwrap() {
            Progress::Token(step) => {
                tokens.push(step.token);
                logits.push(paused.last_logits().iter().map(|v| v.to_bits()).collect::<Vec<u32>>());
            }
            Progress::Paused => pauses += 1,
            Progress::Done => break,
        }
    }
    assert_eq!((tokens, logits == expected_logits), (expected, true));
    assert_eq!(pauses, 11 + 11);
}

#[test]
fn pausing_at_any_point_gives_bit_identical_logits() {
    let Some(model) = char_tiny() else { return };
    // A prompt filling most of the context, so that pauses fall inside long layers.
    let prompt: Vec<u32> = (0..50).map(|i| (i * 7 + 3) % 65).collect();
    let options =
        GenerateOptions { max_tokens: 10, sampling: SamplingParams { temperature: 0.9, ..SamplingParams::default() }, seed: 4, stop_token: None };
    let (expected, expected_logits, _) = run_paused(&model, Generator::new(&model, &prompt, &options).unwrap(), || true);
    assert_eq!(expected.len(), 10);
    for every in [2, 3, 4, 5, 7, 11, 13, 50, 99, 100, 101] {
        // may_continue says no on every `every`-th question.
        let mut asked = 0;
        let (tokens, logits, pauses) = run_paused(&model, Generator::new(&model, &prompt, &options).unwrap(), || {
            asked += 1;
            asked % every != 0
        });
        assert!(pauses > 0, "every {every}: no pause");
        assert_eq!(tokens, expected, "every {every}");
        assert!(logits == expected_logits, "every {every}: logits differ");
    }
}

#[test]
fn one_uninterrupted_stretch_runs_one_position_of_one_layer() {
    let Some(model) = char_tiny() else { return };
    let n_layer = model.config.n_layer;
    let prompt: Vec<u32> = (0..40).map(|i| (i * 5 + 1) % 65).collect();
    // A budget closure that allows one step per call: the prompt's pass then takes exactly one
    // call per (layer, position), so no call ran more than one position of one layer.
    let mut generator = Generator::new(&model, &prompt, &greedy(1)).unwrap();
    let mut calls = 0;
    loop {
        calls += 1;
        let mut budget = 1;
        match generator.advance(&model, || std::mem::replace(&mut budget, 0) > 0).unwrap() {
            Progress::Paused => assert!(generator.is_paused()),
            Progress::Token(_) => break,
            Progress::Done => panic!("stopped before the first token"),
        }
    }
    assert_eq!(calls, n_layer * prompt.len());

    // The steps themselves: each moves exactly one position on, layer by layer.
    let mut cache = model.new_cache();
    let mut act = model.begin(&mut cache, &prompt).unwrap();
    for layer in 0..n_layer {
        for position in 0..prompt.len() {
            assert_eq!((act.next_layer(), act.next_position()), (layer, position));
            model.run_position(&mut cache, &mut act).unwrap();
        }
    }
    assert_eq!((act.next_layer(), act.next_position()), (n_layer, 0));
    let stepped = model.finish(&mut cache, &act).unwrap().to_vec();
    let whole = model.forward(&mut model.new_cache(), &prompt).unwrap();
    assert!(stepped.iter().zip(&whole).all(|(a, b)| a.to_bits() == b.to_bits()));
}

#[test]
fn activations_of_an_abandoned_pass_are_stale() {
    let Some(model) = char_tiny() else { return };
    let mut cache = model.new_cache();
    let mut old = model.begin(&mut cache, &[1, 2, 3]).unwrap();
    model.run_position(&mut cache, &mut old).unwrap();
    // A new pass truncates the keys the old one appended to layer 0.
    let mut new = model.begin(&mut cache, &[4]).unwrap();
    assert!(matches!(model.run_position(&mut cache, &mut old), Err(InferenceError::StaleActivations { .. })));
    model.run_position(&mut cache, &mut new).unwrap();
}
