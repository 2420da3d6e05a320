//! Choosing the next token from logits: greedy, temperature, top-k and top-p (nucleus), driven
//! by a seeded ChaCha20 stream so the same seed always gives the same text on every platform.

use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};
use thiserror::Error;

/// How the next token is chosen from the logits.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SamplingParams {
    /// 0 = greedy (argmax); otherwise logits are divided by it.
    pub temperature: f32,
    /// Keep only the k most likely tokens (ties at the k-th value are kept).
    pub top_k: Option<usize>,
    /// Keep the smallest set of most likely tokens whose probability reaches p.
    pub top_p: Option<f32>,
}

impl Default for SamplingParams {
    fn default() -> Self {
        SamplingParams { temperature: 0.0, top_k: None, top_p: None }
    }
}

/// Invalid sampling parameters, or logits with nothing to sample.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum SamplingError {
    /// A negative, NaN or infinite temperature (the value).
    #[error("temperature must be a finite number >= 0, got {0}")]
    InvalidTemperature(f32),
    /// `top_k` is 0.
    #[error("top_k must be at least 1")]
    InvalidTopK,
    /// `top_p` outside (0, 1] (the value).
    #[error("top_p must be in (0, 1], got {0}")]
    InvalidTopP(f32),
    /// Every logit is NaN or −∞.
    #[error("every logit is NaN or -infinity; nothing can be sampled")]
    NoFiniteLogits,
}

impl SamplingParams {
    /// Checks the parameters (temperature finite and ≥ 0, top-k ≥ 1, top-p in (0, 1]).
    pub fn validate(&self) -> Result<(), SamplingError> {
        if !(self.temperature.is_finite() && self.temperature >= 0.0) {
            return Err(SamplingError::InvalidTemperature(self.temperature));
        }
        if self.top_k == Some(0) {
            return Err(SamplingError::InvalidTopK);
        }
        if let Some(p) = self.top_p
            && !(p > 0.0 && p <= 1.0)
        {
            return Err(SamplingError::InvalidTopP(p));
        }
        Ok(())
    }
}

/// Scaled logits this far below the largest are not sampled (weight < e^-40 each).
pub const SAMPLING_CUTOFF: f32 = crate::kernels::SAMPLING_CUTOFF;

/// Index of the largest logit (the first one on ties); NaN never wins; `None` if every logit is
/// NaN or there are none.
pub fn argmax(logits: &[f32]) -> Option<usize> {
    crate::kernels::argmax(logits)
}

/// Draws tokens with [`SamplingParams`] from a seeded ChaCha20 stream.
#[derive(Debug, Clone)]
pub struct Sampler {
    params: SamplingParams,
    rng: ChaCha20Rng,
}

impl Sampler {
    /// A sampler seeded from `seed`; errors if the parameters are invalid.
    pub fn new(params: SamplingParams, seed: u64) -> Result<Sampler, SamplingError> {
        params.validate()?;
        Ok(Sampler { params, rng: ChaCha20Rng::seed_from_u64(seed) })
    }

    /// Seeds from 32 bytes (the canister passes `raw_rand` output).
    pub fn from_seed_bytes(params: SamplingParams, seed: [u8; 32]) -> Result<Sampler, SamplingError> {
        params.validate()?;
        Ok(Sampler { params, rng: ChaCha20Rng::from_seed(seed) })
    }

    /// The parameters it samples with.
    pub fn params(&self) -> SamplingParams {
        self.params
    }

    /// A uniform draw in [0, 1) with 53 random bits.
    fn uniform(&mut self) -> f64 {
        (self.rng.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// The next token from one position's logits (`[vocab_size]`): the argmax at temperature 0,
    /// otherwise a draw from `softmax(logits / t)` restricted by top-k and top-p. Errors if
    /// every logit is NaN or −∞.
    pub fn sample(&mut self, logits: &[f32]) -> Result<u32, SamplingError> {
        if self.params.temperature == 0.0 {
            return crate::kernels::argmax(logits).filter(|&i| logits[i] > f32::NEG_INFINITY).map(|i| i as u32).ok_or(SamplingError::NoFiniteLogits);
        }
        let t = self.params.temperature;
        let max = crate::kernels::max_scaled(logits, t).ok_or(SamplingError::NoFiniteLogits)?;
        WEIGHTS.with_borrow_mut(|weights| {
            // One pass gives every token its unnormalized probability exp(v/t − max) (0 beyond
            // SAMPLING_CUTOFF, carrying under e^-40 of the mass each): on the IC a sort or a
            // scalar exp per entry of a 50k vocabulary cost more than the model.
            weights.resize(logits.len(), 0.0);
            crate::kernels::sampling_weights(logits, t, max, weights);
            keep_most_likely(weights, self.params.top_k, self.params.top_p);
            Ok(self.draw(weights))
        })
    }

    /// Draws one index with probability proportional to its weight (walking in index order).
    fn draw(&mut self, weights: &[f32]) -> u32 {
        let total: f64 = weights.iter().map(|&w| f64::from(w)).sum();
        let mut r = self.uniform() * total;
        let mut last = 0;
        for (i, &w) in weights.iter().enumerate().filter(|&(_, &w)| w > 0.0) {
            let w = f64::from(w);
            if r < w {
                return i as u32;
            }
            r -= w;
            last = i;
        }
        // Rounding left r at or above the last weight: the last candidate.
        last as u32
    }
}

/// Top-k and/or top-p: sets the weight of every token they drop to 0. "Most likely" orders by
/// weight, then by index; top-k keeps every token at least as likely as the k-th, top-p the
/// smallest most-likely prefix whose weight reaches p of the total (the prefix's sum is formed
/// bucket by bucket, so a tie with the goal may resolve one token either way).
///
/// Nothing is sorted but the tokens of one bucket: non-negative floats order like their bit
/// patterns, so a histogram over the leading bits of the weights ([`BUCKET_SHIFT`]) finds the
/// bucket where the limit falls in one pass — a full sort of a 50k vocabulary per token cost
/// ~20 M instructions on the IC.
pub fn keep_most_likely(weights: &mut [f32], top_k: Option<usize>, top_p: Option<f32>) {
    if let Some(k) = top_k {
        keep_top_k(weights, k);
    }
    if let Some(p) = top_p {
        keep_top_p(weights, p);
    }
}

/// Histogram buckets of weights: the bits of a positive f32 above this shift (1/32 of an octave
/// per bucket; 2^13 buckets cover every non-negative float). Bucket 0 holds only the zeros: a
/// sampled weight is at least e^-40.
const BUCKET_SHIFT: u32 = 18;
const BUCKETS: usize = 1 << (31 - BUCKET_SHIFT);

fn bucket(weight: f32) -> usize {
    // Weights are ≥ 0 and never NaN: the sign bit is clear.
    (weight.to_bits() >> BUCKET_SHIFT) as usize & (BUCKETS - 1)
}

/// Most likely first: larger weight, then smaller index.
fn rank(a: &(usize, f32), b: &(usize, f32)) -> std::cmp::Ordering {
    b.1.total_cmp(&a.1).then(a.0.cmp(&b.0))
}

/// Keeps the tokens at least as likely as the k-th most likely (ties kept).
fn keep_top_k(weights: &mut [f32], k: usize) {
    let mut counts = vec![0usize; BUCKETS];
    for &w in weights.iter() {
        counts[bucket(w)] += 1;
    }
    // Walk down from the most likely bucket to the one holding the k-th token.
    let (mut above, mut b) = (0, BUCKETS - 1);
    while b > 0 && above + counts[b] < k {
        above += counts[b];
        b -= 1;
    }
    if b == 0 {
        return; // k or fewer candidates: all kept
    }
    let mut boundary: Vec<f32> = weights.iter().copied().filter(|&w| bucket(w) == b).collect();
    boundary.sort_unstable_by(|x, y| y.total_cmp(x));
    let kth = boundary[k - above - 1];
    weights.iter_mut().filter(|w| **w < kth).for_each(|w| *w = 0.0);
}

/// Keeps the smallest most-likely prefix whose weight reaches `p` of the total.
fn keep_top_p(weights: &mut [f32], p: f32) {
    let mut mass = vec![0f64; BUCKETS];
    let mut total = 0.0;
    for &w in weights.iter() {
        mass[bucket(w)] += f64::from(w);
        total += f64::from(w);
    }
    let goal = f64::from(p) * total;
    // Walk down to the bucket where the running mass reaches the goal; all above it are kept.
    let mut above = 0.0;
    let mut b = BUCKETS - 1;
    while above + mass[b] < goal {
        above += mass[b];
        if b == 1 {
            return; // rounding kept the goal out of reach: keep everything
        }
        b -= 1;
    }
    let mut boundary: Vec<(usize, f32)> = weights.iter().copied().enumerate().filter(|&(_, w)| bucket(w) == b).collect();
    boundary.sort_unstable_by(rank);
    let mut cumulative = above;
    let last = boundary
        .iter()
        .position(|c| {
            cumulative += f64::from(c.1);
            cumulative >= goal
        })
        .unwrap_or(boundary.len().saturating_sub(1));
    let Some(&cut) = boundary.get(last) else { return };
    for (i, w) in weights.iter_mut().enumerate() {
        let wb = bucket(*w);
        if wb < b || (wb == b && rank(&(i, *w), &cut).is_gt()) {
            *w = 0.0;
        }
    }
}

thread_local! {
    /// Per-token sampling weights, one per vocabulary entry, reused between tokens (a session
    /// does not keep its own).
    static WEIGHTS: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(temperature: f32, top_k: Option<usize>, top_p: Option<f32>) -> SamplingParams {
        SamplingParams { temperature, top_k, top_p }
    }

    #[test]
    fn rejects_invalid_params() {
        for bad in [f32::NAN, -0.5, f32::INFINITY] {
            assert!(matches!(Sampler::new(params(bad, None, None), 0), Err(SamplingError::InvalidTemperature(_))));
        }
        assert_eq!(Sampler::new(params(1.0, Some(0), None), 0).unwrap_err(), SamplingError::InvalidTopK);
        for bad in [0.0, -0.1, 1.01, f32::NAN] {
            assert!(matches!(Sampler::new(params(1.0, None, Some(bad)), 0), Err(SamplingError::InvalidTopP(_))));
        }
    }

    #[test]
    fn greedy_takes_first_maximum_and_skips_nan() {
        let mut s = Sampler::new(params(0.0, None, None), 0).unwrap();
        assert_eq!(s.sample(&[1.0, f32::NAN, 3.0, 3.0]).unwrap(), 2);
        assert_eq!(s.sample(&[f32::NAN, f32::NEG_INFINITY]), Err(SamplingError::NoFiniteLogits));
    }

    #[test]
    fn top_k_one_and_tiny_top_p_are_greedy() {
        let logits = [0.5, 2.0, 1.9, -1.0];
        let mut k1 = Sampler::new(params(1.5, Some(1), None), 7).unwrap();
        let mut p = Sampler::new(params(1.5, None, Some(1e-6)), 7).unwrap();
        for _ in 0..50 {
            assert_eq!(k1.sample(&logits).unwrap(), 1);
            assert_eq!(p.sample(&logits).unwrap(), 1);
        }
    }

    #[test]
    fn same_seed_same_draws_and_frequencies_follow_softmax() {
        let logits = [0.0f32, 1.0, 2.0];
        let draw = |seed| {
            let mut s = Sampler::new(params(1.0, None, None), seed).unwrap();
            (0..20_000).map(|_| s.sample(&logits).unwrap()).collect::<Vec<_>>()
        };
        let a = draw(42);
        assert_eq!(a, draw(42));
        assert_ne!(a, draw(43));
        // Independent computation of softmax([0,1,2]).
        let z: f64 = [0.0f64, 1.0, 2.0].iter().map(|v| v.exp()).sum();
        for id in 0..3u32 {
            let expected = (id as f64).exp() / z;
            let seen = a.iter().filter(|&&x| x == id).count() as f64 / a.len() as f64;
            assert!((seen - expected).abs() < 0.015, "id {id}: {seen} vs {expected}");
        }
    }

    /// `keep_most_likely` against a full sort of every candidate (the kept set, in rank order).
    #[test]
    fn most_likely_matches_a_full_sort() {
        use rand_core::RngCore;
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(4);
        for (n, spread) in [(5000, 12.0f32), (5000, 0.5), (300, 40.0), (3, 1.0)] {
            let mut weights: Vec<f32> = (0..n).map(|_| (-(rng.next_u32() as f32 / u32::MAX as f32) * spread).exp()).collect();
            weights[n / 2] = 0.0;
            weights[0] = weights[n - 1]; // a tie
            for top_k in [None, Some(1), Some(2), Some(7), Some(n + 1)] {
                for top_p in [None, Some(0.05f32), Some(0.5), Some(0.95), Some(1.0)] {
                    let mut kept = weights.clone();
                    keep_most_likely(&mut kept, top_k, top_p);
                    let mut got: Vec<(usize, f32)> = kept.into_iter().enumerate().filter(|&(_, w)| w > 0.0).collect();
                    got.sort_by(rank);
                    let mut all: Vec<(usize, f32)> = weights.iter().copied().enumerate().filter(|&(_, w)| w > 0.0).collect();
                    all.sort_by(rank);
                    if let Some(k) = top_k.filter(|&k| k < all.len()) {
                        let kth = all[k - 1].1;
                        all.retain(|c| c.1 >= kth);
                    }
                    if let Some(p) = top_p {
                        // The smallest prefix reaching p of the mass (within summation rounding).
                        let total: f64 = all.iter().map(|c| f64::from(c.1)).sum();
                        let goal = f64::from(p) * total;
                        let mass = |len: usize| all[..len].iter().map(|c| f64::from(c.1)).sum::<f64>();
                        assert!(!got.is_empty() && got.len() <= all.len(), "n {n} k {top_k:?} p {top_p:?}");
                        assert!(mass(got.len()) >= goal * (1.0 - 1e-12), "n {n} k {top_k:?} p {top_p:?}: too few");
                        assert!(mass(got.len() - 1) < goal * (1.0 + 1e-12), "n {n} k {top_k:?} p {top_p:?}: too many");
                        all.truncate(got.len());
                    }
                    assert_eq!(got, all, "n {n} k {top_k:?} p {top_p:?}");
                }
            }
        }
    }

    /// Extreme but valid parameters and logits never panic and always give a token that can be
    /// sampled (not NaN, not −∞), or the typed error when there is none.
    #[test]
    fn extreme_inputs_sample_a_valid_token() {
        let specials = [f32::NAN, f32::INFINITY, f32::NEG_INFINITY, f32::MAX, -f32::MAX, 0.0, -0.0, 1e-30];
        let mut cases: Vec<Vec<f32>> = vec![specials.to_vec(), vec![f32::NEG_INFINITY; 5], vec![f32::NAN; 3], vec![7.0]];
        cases.push((0..300).map(|i| specials[i % specials.len()] * (i as f32)).collect());
        cases.push((0..300).map(|i| (i as f32).sin() * 1e4).collect());
        for logits in &cases {
            for temperature in [1e-45f32, 1e-30, 0.3, 1.0, 1e30, f32::MAX] {
                for top_k in [None, Some(1), Some(2), Some(usize::MAX)] {
                    for top_p in [None, Some(f32::MIN_POSITIVE), Some(0.5), Some(1.0)] {
                        let mut sampler = Sampler::new(params(temperature, top_k, top_p), 3).unwrap();
                        match sampler.sample(logits) {
                            Ok(id) => {
                                let v = logits[id as usize];
                                assert!(!v.is_nan() && v > f32::NEG_INFINITY, "{logits:?} t {temperature}: {id}");
                            }
                            Err(e) => {
                                assert_eq!(e, SamplingError::NoFiniteLogits);
                                assert!(logits.iter().all(|v| v.is_nan() || *v == f32::NEG_INFINITY));
                            }
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn top_k_keeps_ties_and_excludes_the_rest() {
        let mut s = Sampler::new(params(1.0, Some(2), None), 1).unwrap();
        let logits = [5.0, 1.0, 5.0, 5.0, 0.0];
        for _ in 0..200 {
            let id = s.sample(&logits).unwrap();
            assert!([0, 2, 3].contains(&id), "{id}");
        }
    }
}
