//! Choosing the next token from logits: greedy, temperature, top-k and top-p (nucleus), driven
//! by a seeded ChaCha20 stream so the same seed always gives the same text on every platform.

use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};
use thiserror::Error;

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

#[derive(Debug, Clone, PartialEq, Error)]
pub enum SamplingError {
    #[error("temperature must be a finite number >= 0, got {0}")]
    InvalidTemperature(f32),
    #[error("top_k must be at least 1")]
    InvalidTopK,
    #[error("top_p must be in (0, 1], got {0}")]
    InvalidTopP(f32),
    #[error("every logit is NaN or -infinity; nothing can be sampled")]
    NoFiniteLogits,
}

impl SamplingParams {
    pub fn validate(&self) -> Result<(), SamplingError> {
        if !(self.temperature.is_finite() && self.temperature >= 0.0) {
            return Err(SamplingError::InvalidTemperature(self.temperature));
        }
        if self.top_k == Some(0) {
            return Err(SamplingError::InvalidTopK);
        }
        if let Some(p) = self.top_p {
            if !(p > 0.0 && p <= 1.0) {
                return Err(SamplingError::InvalidTopP(p));
            }
        }
        Ok(())
    }
}

/// Scaled logits this far below the largest are not sampled (weight < e^-40 each).
pub const SAMPLING_CUTOFF: f32 = 40.0;

/// Index of the largest logit (the first one on ties); NaN never wins.
pub fn argmax(logits: &[f32]) -> Option<usize> {
    let mut best: Option<(usize, f32)> = None;
    for (i, &v) in logits.iter().enumerate() {
        if v.is_nan() {
            continue;
        }
        if best.is_none_or(|(_, b)| v > b) {
            best = Some((i, v));
        }
    }
    best.map(|(i, _)| i)
}

#[derive(Debug, Clone)]
pub struct Sampler {
    params: SamplingParams,
    rng: ChaCha20Rng,
}

impl Sampler {
    pub fn new(params: SamplingParams, seed: u64) -> Result<Sampler, SamplingError> {
        params.validate()?;
        Ok(Sampler { params, rng: ChaCha20Rng::seed_from_u64(seed) })
    }

    /// Seeds from 32 bytes (the canister passes `raw_rand` output).
    pub fn from_seed_bytes(params: SamplingParams, seed: [u8; 32]) -> Result<Sampler, SamplingError> {
        params.validate()?;
        Ok(Sampler { params, rng: ChaCha20Rng::from_seed(seed) })
    }

    pub fn params(&self) -> SamplingParams {
        self.params
    }

    /// A uniform draw in [0, 1) with 53 random bits.
    fn uniform(&mut self) -> f64 {
        (self.rng.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    pub fn sample(&mut self, logits: &[f32]) -> Result<u32, SamplingError> {
        if self.params.temperature == 0.0 {
            return crate::model::packed::argmax(logits)
                .filter(|&i| logits[i] > f32::NEG_INFINITY)
                .map(|i| i as u32)
                .ok_or(SamplingError::NoFiniteLogits);
        }
        let t = self.params.temperature;
        // One pass scales the logits and finds the largest; only candidates within SAMPLING_CUTOFF of
        // it are kept (the rest carry under e^-40 of the mass each, invisible to a 53-bit draw
        // in practice) — on the IC a full sort of a 50k vocabulary cost more than the model.
        let mut candidates: Vec<(usize, f32)> = Vec::with_capacity(logits.len());
        let mut max = f32::NEG_INFINITY;
        for (i, &v) in logits.iter().enumerate() {
            if v > f32::NEG_INFINITY {
                let scaled = v / t;
                max = if scaled > max { scaled } else { max };
                candidates.push((i, scaled));
            }
        }
        if max == f32::NEG_INFINITY {
            return Err(SamplingError::NoFiniteLogits);
        }
        let floor = max - SAMPLING_CUTOFF;
        candidates.retain(|c| c.1 >= floor);
        // Most likely first, ties by index: only needed (and only paid for) with top-k or top-p.
        let order = |a: &(usize, f32), b: &(usize, f32)| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0));
        if let Some(k) = self.params.top_k {
            if k < candidates.len() {
                candidates.select_nth_unstable_by(k - 1, order);
                let kth = candidates[k - 1].1;
                candidates.retain(|c| c.1 >= kth);
            }
            candidates.sort_unstable_by(order);
        } else if self.params.top_p.is_some() {
            candidates.sort_unstable_by(order);
        }
        let mut probs: Vec<f64> = candidates
            .iter()
            .map(|c| {
                let d = c.1 - max;
                // +inf logits: every infinite one equally likely.
                f64::from(if d.is_nan() { 1.0 } else { crate::model::packed::exp_twin(d) })
            })
            .collect();
        let total: f64 = probs.iter().sum();
        probs.iter_mut().for_each(|p| *p /= total);
        if let Some(top_p) = self.params.top_p {
            let mut cumulative = 0.0;
            let mut keep = probs.len();
            for (i, p) in probs.iter().enumerate() {
                cumulative += p;
                if cumulative >= top_p as f64 {
                    keep = i + 1;
                    break;
                }
            }
            probs.truncate(keep);
        }
        let mass: f64 = probs.iter().sum();
        let mut r = self.uniform() * mass;
        for (c, p) in candidates.iter().zip(&probs) {
            if r < *p {
                return Ok(c.0 as u32);
            }
            r -= p;
        }
        Ok(candidates[probs.len() - 1].0 as u32)
    }
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
