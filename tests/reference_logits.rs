//! The engine against the Python reference: full logits of the first 5 greedy steps (every
//! vocabulary entry, not just the top 10) and the 40 greedy ids, for every reference set.

use walsh_engine::generate::{GenerateOptions, Generator};
use walsh_engine::model::Model;
use walsh_engine::sampling::SamplingParams;

/// Largest |ours − reference| over a full logits vector that we accept.
const LOGIT_TOLERANCE: f32 = 1e-3;

fn check_set(set: &str, model_file: &str) {
    let Some(data) = test_support::testdata() else { return };
    let dir = data.join(set);
    let bytes = std::fs::read(dir.join(model_file)).unwrap();
    let model = Model::load(&bytes).unwrap();
    // The canister's loader rearranges the int8 matrix inside the file bytes instead of in a
    // copy; it must compute exactly the same logits.
    let owned = Model::load_owned(bytes).unwrap();
    let reference = test_support::reference(&dir);
    let (shape, all_logits) = test_support::read_npy_f32(&dir.join("reference_walsh_logits_first5.npy"));
    assert_eq!(shape, [reference.prompts.len(), 5, model.config.vocab_size]);
    let vocab = model.config.vocab_size;

    let mut worst = 0.0f32;
    for (p, prompt) in reference.prompts.iter().enumerate() {
        let options = GenerateOptions { max_tokens: 40, sampling: SamplingParams::default(), seed: 0, stop_token: None };
        let mut generator = Generator::new(&model, &prompt.prompt_ids, &options).unwrap();
        let mut twin = Generator::new(&owned, &prompt.prompt_ids, &options).unwrap();
        let mut step_index = 0;
        while generator.step(&model).unwrap().is_some() {
            twin.step(&owned).unwrap();
            assert_eq!(generator.last_logits(), twin.last_logits(), "{set}/{model_file}: load_owned differs from load");
            if step_index < 5 {
                let expected = &all_logits[(p * 5 + step_index) * vocab..][..vocab];
                let diff = generator.last_logits().iter().zip(expected).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
                assert!(diff <= LOGIT_TOLERANCE, "{set}/{model_file} prompt {:?} step {step_index}: max |Δlogit| {diff}", prompt.prompt);
                worst = worst.max(diff);
            }
            step_index += 1;
        }
        assert_eq!(generator.generated(), prompt.walsh.greedy_ids, "{set}/{model_file} prompt {:?}", prompt.prompt);
    }
    eprintln!("{set}/{model_file}: {} prompts, max |Δlogit| over the first 5 steps = {worst:.2e}", reference.prompts.len());
}

#[test]
fn char_tiny() {
    check_set("char-tiny", "model.walsh");
}

#[test]
fn gpt2_small() {
    check_set("gpt2-small", "model.walsh");
}

#[test]
fn gpt2_bench() {
    check_set("gpt2-bench", "model.walsh");
}

#[test]
fn author_256() {
    check_set("author-256", "model.walsh");
}

#[test]
fn author_256_version_2() {
    check_set("author-256", "model-v2.walsh");
}

#[test]
fn author_512() {
    check_set("author-512", "model.walsh");
}

/// Prefill of the whole sequence in one pass and token-by-token decoding must agree.
#[test]
fn prefill_matches_token_by_token() {
    let Some(data) = test_support::testdata() else { return };
    let model = Model::load(&std::fs::read(data.join("char-tiny/model.walsh")).unwrap()).unwrap();
    let tokens: Vec<u32> = (0..20).map(|i| (i * 7 + 3) % 65).collect();
    let mut batch = model.new_cache();
    let at_once = model.forward(&mut batch, &tokens).unwrap();
    let mut single = model.new_cache();
    let mut last = Vec::new();
    for &t in &tokens {
        last = model.forward(&mut single, &[t]).unwrap();
    }
    let diff = at_once.iter().zip(&last).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
    assert!(diff < 1e-4, "prefill vs step-by-step: {diff}");
    assert_eq!(batch.len(), 20);
}
