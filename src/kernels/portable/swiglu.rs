//! Twin of the SIMD SwiGLU.

use crate::kernels::math::exp_twin;

/// Twin of the SIMD SwiGLU: `g ← g / (1 + exp(−g)) · u` (by [`exp_twin`]), over the shorter of
/// the two.
pub(crate) fn swiglu_twin(g: &mut [f32], u: &[f32]) {
    for (a, &b) in g.iter_mut().zip(u) {
        *a = *a / (1.0 + exp_twin(-*a)) * b;
    }
}
