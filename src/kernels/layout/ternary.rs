//! [`TernaryLinear`]: a ternary octonion linear layer as byte offsets into a lookup table.

/// Input columns per lookup.
pub(crate) const GROUP: usize = 4;
/// Sign patterns per group: 3^GROUP.
pub(crate) const PATTERNS: usize = 81;
/// One table entry: 8 parts × i32.
pub(crate) const ENTRY_BYTES: usize = 32;
/// Bytes of one group's table.
pub(crate) const GROUP_BYTES: usize = PATTERNS * ENTRY_BYTES;
/// The row loops read lookups in blocks of this many; streams are padded with the zero entry.
pub(crate) const LOOKUP_BLOCK: usize = 4;
/// Largest lookup table the engine supports (bytes). Sets the widest layer: 404 groups, i.e.
/// 1616 input columns per part (12928 inputs).
pub(crate) const MAX_TABLE_BYTES: usize = 1 << 20;
/// Most column groups a layer may have (its table fits in [`MAX_TABLE_BYTES`]).
pub(crate) const MAX_GROUPS: usize = MAX_TABLE_BYTES / GROUP_BYTES;

// The SIMD kernels depend on these: 3^GROUP patterns, an entry of two 16-byte vectors, a table
// made of whole vectors, and straight-line lookup blocks of 4.
const _: () = assert!(PATTERNS == 3 * 3 * 3 * 3 && GROUP == 4);
const _: () = assert!(ENTRY_BYTES == size_of::<[i32; 8]>() && ENTRY_BYTES.is_multiple_of(16));
const _: () = assert!(MAX_TABLE_BYTES.is_multiple_of(16) && GROUP_BYTES.is_multiple_of(16) && MAX_GROUPS > 0);
const _: () = assert!(LOOKUP_BLOCK == 4);
// Offsets are u32: the largest must fit.
const _: () = assert!(MAX_TABLE_BYTES <= u32::MAX as usize);

/// Pattern digit of one weight: 0 → 0, +1 → 1, −1 → 2.
fn digit(w: i8) -> u32 {
    match w {
        1 => 1,
        -1 => 2,
        _ => 0,
    }
}

/// A ternary octonion linear layer `R^(8·in_o) → R^(8·out_o)` repacked for table lookups.
///
/// Invariants (established by [`TernaryLinear::pack`], relied on by the SIMD kernel's unchecked
/// loads): `groups = ceil(in_o / 4)`, `groups · GROUP_BYTES ≤ MAX_TABLE_BYTES`, `stride` is
/// `groups` rounded up to [`LOOKUP_BLOCK`], `offsets.len() = out_o · 8 · stride`, every offset is
/// `g · GROUP_BYTES + pattern · ENTRY_BYTES` with `g < groups` and `pattern < 81` (the padding
/// lookups read entry 0 of group 0, which is zero), and `beta.len() = out_o`.
#[derive(Debug, Clone)]
pub(crate) struct TernaryLinear {
    in_o: usize,
    out_o: usize,
    /// Column groups with data (`ceil(in_o / 4)`), i.e. tables built per call.
    groups: usize,
    /// Lookups per (row, part): `groups` rounded up to [`LOOKUP_BLOCK`].
    stride: usize,
    /// `[out_o][8 parts k][stride]` byte offsets into the table (`group · GROUP_BYTES + pattern · 32`).
    offsets: Vec<u32>,
    /// `[out_o]` per-row output scale.
    beta: Vec<f32>,
}

impl TernaryLinear {
    /// Packs `[8][out_o][in_o]` ternary values (anything but ±1 counts as 0) with `[out_o]`
    /// scales; `None` when the layer's table would exceed [`MAX_TABLE_BYTES`].
    ///
    /// # Panics
    /// If `weights` does not hold `8 · out_o · in_o` values or `beta` `out_o` (the model's
    /// assembly checks the shapes first).
    pub(crate) fn pack(in_o: usize, out_o: usize, weights: &[i8], beta: Vec<f32>) -> Option<TernaryLinear> {
        assert_eq!(Some(weights.len()), out_o.checked_mul(in_o).and_then(|n| n.checked_mul(8)));
        assert_eq!(beta.len(), out_o);
        let groups = in_o.div_ceil(GROUP);
        if groups.checked_mul(GROUP_BYTES)? > MAX_TABLE_BYTES {
            return None;
        }
        let stride = groups.div_ceil(LOOKUP_BLOCK) * LOOKUP_BLOCK;
        let mut offsets = vec![0u32; out_o * 8 * stride];
        for r in 0..out_o {
            for k in 0..8 {
                let row = &weights[(k * out_o + r) * in_o..][..in_o];
                let dst = &mut offsets[(r * 8 + k) * stride..][..groups];
                for (g, slot) in dst.iter_mut().enumerate() {
                    let mut pattern = 0u32;
                    for j in (0..GROUP).rev() {
                        pattern = pattern * 3 + row.get(g * GROUP + j).map_or(0, |&w| digit(w));
                    }
                    // < MAX_TABLE_BYTES ≤ u32::MAX (checked above and at compile time).
                    *slot = (g * GROUP_BYTES) as u32 + pattern * ENTRY_BYTES as u32;
                }
            }
        }
        Some(TernaryLinear { in_o, out_o, groups, stride, offsets, beta })
    }

    /// Input octonions (the input has `8 · in_o` values).
    pub(crate) fn in_o(&self) -> usize {
        self.in_o
    }
    /// Output octonions (the output has `8 · out_o` values).
    pub(crate) fn out_o(&self) -> usize {
        self.out_o
    }
    /// Column groups, i.e. table groups built per call.
    pub(crate) fn groups(&self) -> usize {
        self.groups
    }
    /// Lookups per (row, part).
    pub(crate) fn stride(&self) -> usize {
        self.stride
    }
    /// `[out_o][8][stride]` byte offsets, each inside a table of [`TernaryLinear::table_bytes`].
    pub(crate) fn offsets(&self) -> &[u32] {
        &self.offsets
    }
    /// `[out_o]` output scales.
    pub(crate) fn beta(&self) -> &[f32] {
        &self.beta
    }
    /// Bytes of lookup table one call needs (at most [`MAX_TABLE_BYTES`]).
    pub(crate) fn table_bytes(&self) -> usize {
        self.groups * GROUP_BYTES
    }
    /// Heap bytes of the packed layer.
    pub(crate) fn heap_bytes(&self) -> usize {
        4 * (self.offsets.len() + self.beta.len())
    }

    /// Largest activation code: no output sum (8 parts · groups · 4 columns) can leave i32.
    pub(crate) fn quant_range(&self) -> i32 {
        (i32::MAX as usize / (32 * self.groups.max(1))).min(1 << 24) as i32
    }

    /// The ternary weight of part `k`, row `r`, column `c` (decoded back from the offsets).
    #[cfg(test)]
    pub(crate) fn weight(&self, k: usize, r: usize, c: usize) -> i8 {
        let (g, j) = (c / GROUP, c % GROUP);
        let offset = self.offsets[(r * 8 + k) * self.stride + g] as usize;
        let pattern = (offset - g * GROUP_BYTES) / ENTRY_BYTES;
        match pattern / 3usize.pow(j as u32) % 3 {
            1 => 1,
            2 => -1,
            _ => 0,
        }
    }

    /// The `[8][out_o][in_o]` values, as stored in the file.
    #[cfg(test)]
    pub(crate) fn to_values(&self) -> Vec<i8> {
        let mut out = Vec::with_capacity(8 * self.out_o * self.in_o);
        for k in 0..8 {
            for r in 0..self.out_o {
                out.extend((0..self.in_o).map(|c| self.weight(k, r, c)));
            }
        }
        out
    }
}
