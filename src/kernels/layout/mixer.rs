//! The octonion head mixer: [`HeadMixer`] as the file stores it, [`PackedMixer`] as the kernels
//! run it.

/// Weight codes of the head mixer, 14-bit activations times 14-bit weights: 8 products (four
/// `i32x4.dot_i16x8_s`) stay inside one i32 lane (8 · 16383² < 2³¹) before the sum moves to f32.
pub(crate) const MIXER_WEIGHT_RANGE: i32 = 16383;
/// Activation codes of the head mixer (see [`MIXER_WEIGHT_RANGE`]).
pub(crate) const MIXER_INPUT_RANGE: i32 = 16383;
/// Inputs per exact i32 block of the mixer (four dot products of 8).
pub(crate) const MIXER_BLOCK: usize = 32;
const _: () = assert!((MIXER_WEIGHT_RANGE as i64) * (MIXER_INPUT_RANGE as i64) * 8 < i32::MAX as i64);

/// The octonion head mixer in f32: mixes each group of 8 heads like one octonion product.
#[derive(Debug, Clone)]
pub(crate) struct HeadMixer {
    /// Width of one head.
    pub(crate) head_dim: usize,
    /// `[8][head_dim (in)][head_dim (out)]` — used as `z · W[k]`, in × out.
    pub(crate) weights: Vec<f32>,
    /// `[head_dim]` output scales.
    pub(crate) beta: Vec<f32>,
}

/// The head mixer repacked for i16 dot products: per weight part `k` and output `o`, the row
/// `W[k][·][o]` (over inputs) as i16 codes with its own scale.
///
/// Invariants ([`PackedMixer::pack`]): `codes.len() = 8 · head_dim²`, `scales.len() = 8 · head_dim`,
/// `beta.len() = head_dim`.
#[derive(Debug, Clone)]
pub(crate) struct PackedMixer {
    head_dim: usize,
    /// `[8 k][head_dim o][head_dim in]` codes.
    codes: Vec<i16>,
    /// `[head_dim o][8 k]` scales: `W[k][in][o] ≈ codes[k][o][in] · scales[o][k]`.
    scales: Vec<f32>,
    /// `[head_dim]` output scales.
    beta: Vec<f32>,
}

impl PackedMixer {
    /// Quantizes the f32 mixer.
    ///
    /// # Panics
    /// If its weights are not `8 · head_dim²` values or its beta not `head_dim` (the model's
    /// assembly checks the shapes first).
    pub(crate) fn pack(mixer: &HeadMixer) -> PackedMixer {
        let hd = mixer.head_dim;
        assert!(mixer.weights.len() == 8 * hd * hd && mixer.beta.len() == hd);
        let mut codes = vec![0i16; 8 * hd * hd];
        let mut scales = vec![0f32; hd * 8];
        for k in 0..8 {
            let w = &mixer.weights[k * hd * hd..][..hd * hd];
            for o in 0..hd {
                let m = (0..hd).map(|i| w[i * hd + o].abs()).fold(0.0f32, f32::max);
                let scale = if m > 0.0 { m / MIXER_WEIGHT_RANGE as f32 } else { 1.0 };
                scales[o * 8 + k] = scale;
                for i in 0..hd {
                    codes[(k * hd + o) * hd + i] = (w[i * hd + o] / scale).round_ties_even() as i16;
                }
            }
        }
        PackedMixer { head_dim: hd, codes, scales, beta: mixer.beta.clone() }
    }

    /// Width of one head.
    pub(crate) fn head_dim(&self) -> usize {
        self.head_dim
    }
    /// `[8 k][head_dim o][head_dim in]` weight codes.
    pub(crate) fn codes(&self) -> &[i16] {
        &self.codes
    }
    /// `[head_dim o][8 k]` scales of the code rows.
    pub(crate) fn scales(&self) -> &[f32] {
        &self.scales
    }
    /// `[head_dim]` output scales.
    pub(crate) fn beta(&self) -> &[f32] {
        &self.beta
    }

    /// The f32 weights the codes stand for (for the reference kernel).
    #[cfg(test)]
    pub(crate) fn to_reference(&self) -> HeadMixer {
        let hd = self.head_dim;
        let mut weights = vec![0f32; 8 * hd * hd];
        for k in 0..8 {
            for o in 0..hd {
                for i in 0..hd {
                    weights[k * hd * hd + i * hd + o] = f32::from(self.codes[(k * hd + o) * hd + i]) * self.scales[o * 8 + k];
                }
            }
        }
        HeadMixer { head_dim: hd, weights, beta: self.beta.clone() }
    }

    /// Heap bytes of the packed mixer.
    pub(crate) fn heap_bytes(&self) -> usize {
        2 * self.codes.len() + 4 * (self.scales.len() + self.beta.len())
    }
}
