//! [`RopeTable`]: the rotary position embedding's cos/sin table.

/// RoPE rotation table: for position `t` and pair `i`, `cos[t·half + i]`, `sin[t·half + i]`.
///
/// Invariant ([`RopeTable::new`]): `cos` and `sin` hold `positions · half` values.
#[derive(Debug, Clone)]
pub(crate) struct RopeTable {
    half: usize,
    cos: Vec<f32>,
    sin: Vec<f32>,
}

impl RopeTable {
    /// From `[positions][half]` cosines and sines; `None` if their lengths are not `positions · half`.
    pub(crate) fn new(half: usize, positions: usize, cos: Vec<f32>, sin: Vec<f32>) -> Option<RopeTable> {
        let n = half.checked_mul(positions)?;
        (cos.len() == n && sin.len() == n).then_some(RopeTable { half, cos, sin })
    }
    /// Pairs per head (`head_dim / 2`).
    pub(crate) fn half(&self) -> usize {
        self.half
    }
    /// The cosines of `position` (`half` values); panics past the table.
    pub(crate) fn cos(&self, position: usize) -> &[f32] {
        &self.cos[position * self.half..(position + 1) * self.half]
    }
    /// The sines of `position` (`half` values); panics past the table.
    pub(crate) fn sin(&self, position: usize) -> &[f32] {
        &self.sin[position * self.half..(position + 1) * self.half]
    }
    /// Heap bytes of the table.
    pub(crate) fn heap_bytes(&self) -> usize {
        4 * (self.cos.len() + self.sin.len())
    }
}
