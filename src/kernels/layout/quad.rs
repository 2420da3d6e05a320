//! [`QuantizedMatrix`]: the int8 embedding and output head, in row quads for the logits kernel.

use std::sync::Arc;

/// A symmetric int8 matrix `[rows][cols]` with one scale: the embedding and output head.
///
/// Held in **row quads** for the logits kernel: rows go in blocks of 4, and within a block the
/// values of column pair `p` of rows 0‥3 are 8 consecutive bytes
/// `[r0·c2p, r0·c2p+1, r1·c2p, r1·c2p+1, r2·…, r3·…]`, so one `i16x8.load8x8_s` and one
/// `i32x4.dot_i16x8_s` against the pair `(h2p, h2p+1)` advance four rows' sums at once, each in
/// its own lane (no horizontal sums). Rows after the last whole block stay row-major.
///
/// Invariants ([`QuantizedMatrix::from_row_quads`]): `cols` is even and `data` holds exactly
/// `rows · cols` values.
#[derive(Debug, Clone)]
pub(crate) struct QuantizedMatrix {
    rows: usize,
    cols: usize,
    scale: f32,
    /// The values in row-quad order (see above).
    data: Int8Data,
}

impl QuantizedMatrix {
    /// From values already in row-quad order; `None` unless `cols` is even and `data` holds
    /// `rows · cols` values.
    pub(crate) fn from_row_quads(rows: usize, cols: usize, scale: f32, data: Int8Data) -> Option<QuantizedMatrix> {
        (cols.is_multiple_of(2) && rows.checked_mul(cols) == Some(data.len())).then_some(QuantizedMatrix { rows, cols, scale, data })
    }

    /// Rows (the vocabulary size).
    pub(crate) fn rows(&self) -> usize {
        self.rows
    }
    /// Columns (the model's width; even).
    pub(crate) fn cols(&self) -> usize {
        self.cols
    }
    /// The scale: value `(r, c)` stands for `scale · q`.
    pub(crate) fn scale(&self) -> f32 {
        self.scale
    }
    /// The `rows · cols` values in row-quad order.
    pub(crate) fn data(&self) -> &Int8Data {
        &self.data
    }

    /// Where value (r, c) is stored in `data`.
    #[inline]
    pub(crate) fn index(&self, r: usize, c: usize) -> usize {
        row_quad_index(self.rows, self.cols, r, c)
    }

    /// The values of row `r` (`< rows`), in column order.
    pub(crate) fn row(&self, r: usize) -> impl Iterator<Item = i8> + '_ {
        (0..self.cols).map(move |c| self.data[self.index(r, c)])
    }

    /// Rows stored in whole blocks of 4 (the rest are row-major after them).
    pub(crate) fn quad_rows(&self) -> usize {
        self.rows / 4 * 4
    }
}

/// Index of value (r, c) of a `rows × cols` matrix in row-quad order ([`QuantizedMatrix`]).
#[inline]
fn row_quad_index(rows: usize, cols: usize, r: usize, c: usize) -> usize {
    if r < rows / 4 * 4 { (r / 4) * 4 * cols + (c / 2) * 8 + (r % 4) * 2 + c % 2 } else { r * cols + c }
}

/// Int8 values, either owned or a range of the `.walsh` bytes the model was loaded from (so the
/// embedding — most of a file — is not held twice in a canister's heap).
///
/// Invariant: `start + len ≤ bytes.len()`.
#[derive(Debug, Clone)]
pub(crate) struct Int8Data {
    bytes: Arc<Vec<u8>>,
    start: usize,
    len: usize,
}

impl Int8Data {
    /// Owns `bytes` (int8 values as bytes).
    pub(crate) fn from_bytes(bytes: Vec<u8>) -> Int8Data {
        let len = bytes.len();
        Int8Data { bytes: Arc::new(bytes), start: 0, len }
    }
    /// The `len` values at `start` of shared file bytes; `None` if the range is not inside them.
    pub(crate) fn shared(bytes: Arc<Vec<u8>>, start: usize, len: usize) -> Option<Int8Data> {
        (start.checked_add(len)? <= bytes.len()).then_some(Int8Data { bytes, start, len })
    }
    /// Whether these values live inside the file bytes rather than in a copy.
    pub(crate) fn is_shared(&self) -> bool {
        self.bytes.len() != self.len
    }
    /// Bytes of the buffer these values live in (the whole file when shared).
    pub(crate) fn buffer_bytes(&self) -> usize {
        self.bytes.len()
    }
}

impl std::ops::Deref for Int8Data {
    type Target = [i8];
    fn deref(&self) -> &[i8] {
        let bytes = &self.bytes[self.start..self.start + self.len];
        // SAFETY: i8 and u8 have the same size, alignment and validity, and the slice borrows `self`.
        unsafe { std::slice::from_raw_parts(bytes.as_ptr().cast::<i8>(), bytes.len()) }
    }
}
