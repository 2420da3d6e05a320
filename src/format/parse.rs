//! The reader. Every read goes through [`Cursor`], which checks bounds and reports the offset, so
//! no input can make it index out of range; every size computation is checked.

use std::borrow::Cow;
use std::collections::HashSet;

use super::error::FormatError;
use super::records::{Array, Dtype, END_TAG, HalfKind, MAGIC, MAX_HEADER_LEN, MAX_NDIM, Payload, QuantizedMatrix, Record, TernaryTensor, WalshFile};

struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn remaining(&self) -> usize {
        self.bytes.len() - self.pos
    }

    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], FormatError> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.bytes.len()).ok_or(FormatError::Truncated {
            offset: self.pos,
            what,
            needed: n,
            available: self.remaining(),
        })?;
        let out = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    fn u8(&mut self, what: &'static str) -> Result<u8, FormatError> {
        Ok(self.take(1, what)?[0])
    }

    fn u16(&mut self, what: &'static str) -> Result<u16, FormatError> {
        let b = self.take(2, what)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    fn u32(&mut self, what: &'static str) -> Result<u32, FormatError> {
        let b = self.take(4, what)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn f32(&mut self, what: &'static str) -> Result<f32, FormatError> {
        Ok(f32::from_bits(self.u32(what)?))
    }
}

pub(super) fn parse(bytes: &[u8]) -> Result<WalshFile<'_>, FormatError> {
    let mut cur = Cursor { bytes, pos: 0 };
    let magic = cur.take(4, "magic").map_err(|_| FormatError::BadMagic { found: bytes.iter().take(4).copied().collect() })?;
    if magic != MAGIC {
        return Err(FormatError::BadMagic { found: magic.to_vec() });
    }
    let version = cur.u16("version")?;
    if version != 2 && version != 4 {
        return Err(FormatError::UnsupportedVersion { version });
    }
    let header_len = cur.u32("header length")? as usize;
    if header_len > MAX_HEADER_LEN {
        return Err(FormatError::InvalidHeader { reason: format!("declared length {header_len} exceeds the {MAX_HEADER_LEN}-byte limit") });
    }
    let header = cur.take(header_len, "JSON header")?;
    let header_json = std::str::from_utf8(header).map_err(|e| FormatError::InvalidHeader { reason: format!("not UTF-8: {e}") })?;

    let mut records = Vec::new();
    let mut seen: HashSet<&str> = HashSet::new();
    loop {
        let start = cur.pos;
        // END! is checked before reading a marker, as both reference readers do. An `E` record
        // whose name length is 0x444e and whose name starts with '!' would be mistaken for it;
        // no real tensor name looks like that (see docs/FORMAT.md).
        if cur.bytes[start..].starts_with(&END_TAG) {
            cur.pos += END_TAG.len();
            if cur.remaining() != 0 {
                return Err(FormatError::TrailingBytes { offset: cur.pos, count: cur.remaining() });
            }
            break;
        }
        if cur.remaining() == 0 {
            return Err(FormatError::MissingEndTag { offset: start });
        }
        let code = cur.u8("marker")?;
        let name_len = cur.u16("name length")? as usize;
        let name_bytes = cur.take(name_len, "record name")?;
        let name = std::str::from_utf8(name_bytes).map_err(|_| FormatError::InvalidName { offset: start, reason: "not UTF-8" })?;
        if name.is_empty() {
            return Err(FormatError::InvalidName { offset: start, reason: "empty" });
        }
        let payload = match (code, version) {
            (b'B', 4) => Payload::Ternary(read_bitmask_ternary(&mut cur, name)?),
            (b'T', 2) => Payload::Ternary(read_packed_ternary(&mut cur, name)?),
            (b'B', _) | (b'T', _) => {
                return Err(FormatError::MarkerNotInVersion { code, version, offset: start });
            }
            (b'E', _) => Payload::Embedding(read_quantized(&mut cur, name)?),
            (b'N', _) => read_half(&mut cur, name, HalfKind::Norm)?,
            (b'S', _) => read_half(&mut cur, name, HalfKind::Beta)?,
            (b'H', _) => read_half(&mut cur, name, HalfKind::MixerWeight)?,
            (b'h', _) => read_half(&mut cur, name, HalfKind::MixerBeta)?,
            (b'R', _) => {
                let array = read_array(&mut cur, name)?;
                expect_dtype(name, &array, Dtype::F32)?;
                if array.shape.len() != 3 || array.shape[2] != 2 {
                    return Err(bad_shape(name, format!("{:?}, expected [positions, head_dim/2, 2]", array.shape)));
                }
                Payload::Rope(array)
            }
            (b'A' | b'I' | b'J', _) => {
                return Err(FormatError::Unsupported { feature: "hash embeddings", name: name.to_string(), offset: start });
            }
            (b'L', _) => {
                return Err(FormatError::Unsupported {
                    feature: "Hadamard/mHC alpha scales (only the octonion algebra is supported)",
                    name: name.to_string(),
                    offset: start,
                });
            }
            (b'W', _) => {
                return Err(FormatError::Unsupported { feature: "legacy sparse 'W' weights", name: name.to_string(), offset: start });
            }
            _ => return Err(FormatError::UnknownMarker { code, offset: start }),
        };
        if !seen.insert(name) {
            return Err(FormatError::DuplicateTensor { name: name.to_string(), offset: start });
        }
        records.push(Record { name: Cow::Borrowed(name), payload });
    }
    Ok(WalshFile { version, header_json: Cow::Borrowed(header_json), records })
}

fn bad_shape(name: &str, reason: String) -> FormatError {
    FormatError::BadShape { name: name.to_string(), reason }
}

fn overflow(name: &str) -> FormatError {
    FormatError::SizeOverflow { name: name.to_string() }
}

fn expect_dtype(name: &str, array: &Array<'_>, expected: Dtype) -> Result<(), FormatError> {
    if array.dtype != expected {
        return Err(FormatError::WrongDtype { name: name.to_string(), expected: expected.name(), found: array.dtype.name().to_string() });
    }
    Ok(())
}

/// `u8 ndim | u32 dims[ndim]`, shared by array blocks and ternary records.
fn read_dims(cur: &mut Cursor<'_>, name: &str) -> Result<Vec<usize>, FormatError> {
    let ndim = cur.u8("ndim")? as usize;
    if ndim > MAX_NDIM {
        return Err(bad_shape(name, format!("{ndim} dimensions (at most {MAX_NDIM})")));
    }
    (0..ndim).map(|_| cur.u32("dimension").map(|d| d as usize)).collect()
}

fn element_count(name: &str, shape: &[usize]) -> Result<usize, FormatError> {
    shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d)).ok_or_else(|| overflow(name))
}

/// `u8 dtype | u8 ndim | u32 dims | data`.
fn read_array<'a>(cur: &mut Cursor<'a>, name: &str) -> Result<Array<'a>, FormatError> {
    let code = cur.u8("dtype")?;
    let dtype = Dtype::from_code(code).ok_or_else(|| FormatError::WrongDtype {
        name: name.to_string(),
        expected: "a dtype code 0-3",
        found: format!("code {code}"),
    })?;
    let shape = read_dims(cur, name)?;
    let bytes = element_count(name, &shape)?.checked_mul(dtype.size()).ok_or_else(|| overflow(name))?;
    let data = cur.take(bytes, "array data")?;
    Ok(Array { dtype, shape, data: Cow::Borrowed(data) })
}

fn read_half<'a>(cur: &mut Cursor<'a>, name: &str, kind: HalfKind) -> Result<Payload<'a>, FormatError> {
    let array = read_array(cur, name)?;
    expect_dtype(name, &array, Dtype::F16)?;
    Ok(Payload::Half { kind, array })
}

fn read_quantized<'a>(cur: &mut Cursor<'a>, name: &str) -> Result<QuantizedMatrix<'a>, FormatError> {
    let scale = cur.f32("embedding scale")?;
    let array = read_array(cur, name)?;
    expect_dtype(name, &array, Dtype::I8)?;
    if !(scale.is_finite() && scale > 0.0) {
        return Err(FormatError::InvalidScale { name: name.to_string(), value: scale });
    }
    let [rows, cols] = array.shape[..] else {
        return Err(bad_shape(name, format!("{:?}, expected [rows, cols]", array.shape)));
    };
    Ok(QuantizedMatrix { scale, rows, cols, data: array.data })
}

/// The shape header of a ternary record: exactly `[8, out_o, in_o]`.
fn read_ternary_shape(cur: &mut Cursor<'_>, name: &str, offset: usize) -> Result<[usize; 3], FormatError> {
    let dims = read_dims(cur, name)?;
    let [parts, out_o, in_o] = dims[..] else {
        return Err(bad_shape(name, format!("{dims:?}, ternary weights are [8, out, in]")));
    };
    if parts == 32 {
        return Err(FormatError::Unsupported { feature: "Hadamard algebra (32-part ternary weights)", name: name.to_string(), offset });
    }
    if parts != 8 {
        return Err(bad_shape(name, format!("{dims:?}: first dimension must be 8 octonion parts")));
    }
    element_count(name, &dims)?;
    Ok([parts, out_o, in_o])
}

/// Version 4 `B`: `ndim | dims | u32 nnz | u32 mask_len | mask | u32 sign_len | signs`.
fn read_bitmask_ternary<'a>(cur: &mut Cursor<'a>, name: &str) -> Result<TernaryTensor<'a>, FormatError> {
    let offset = cur.pos;
    let shape = read_ternary_shape(cur, name, offset)?;
    let total = shape[0] * shape[1] * shape[2];
    let nnz = cur.u32("nnz")?;
    let mask_len = cur.u32("bitmask length")? as usize;
    if mask_len != total.div_ceil(8) {
        return Err(FormatError::LengthMismatch { name: name.to_string(), field: "bitmask", expected: total.div_ceil(8), found: mask_len });
    }
    let bitmask = cur.take(mask_len, "bitmask")?;
    let popcount: u64 = bitmask.iter().map(|b| u64::from(b.count_ones())).sum();
    if popcount != u64::from(nnz) {
        return Err(FormatError::NnzMismatch { name: name.to_string(), declared: nnz, popcount });
    }
    check_padding(name, "bitmask", bitmask, total)?;
    let sign_len = cur.u32("sign length")? as usize;
    let expected_signs = (nnz as usize).div_ceil(8);
    if sign_len != expected_signs {
        return Err(FormatError::LengthMismatch { name: name.to_string(), field: "sign bits", expected: expected_signs, found: sign_len });
    }
    let signs = cur.take(sign_len, "sign bits")?;
    check_padding(name, "sign bits", signs, nnz as usize)?;
    Ok(TernaryTensor { shape, nnz, bitmask: Cow::Borrowed(bitmask), signs: Cow::Borrowed(signs) })
}

/// Bits at positions >= `used` in the last byte must be zero.
fn check_padding(name: &str, field: &'static str, bytes: &[u8], used: usize) -> Result<(), FormatError> {
    let tail_bits = used % 8;
    if tail_bits != 0
        && let Some(&last) = bytes.last()
        && last >> tail_bits != 0
    {
        return Err(FormatError::NonZeroPadding { name: name.to_string(), field });
    }
    Ok(())
}

/// Version 2 `T`: `ndim | dims | array(int8 [8, out_o, ceil(in_o/4)])`, four 2-bit codes per
/// byte, first value in the two most significant bits; −1 = 0b00, 0 = 0b01, +1 = 0b10.
/// Converted to the version 4 bitmask form so the rest of the engine sees one encoding.
fn read_packed_ternary(cur: &mut Cursor<'_>, name: &str) -> Result<TernaryTensor<'static>, FormatError> {
    let offset = cur.pos;
    let shape = read_ternary_shape(cur, name, offset)?;
    let packed = read_array(cur, name)?;
    expect_dtype(name, &packed, Dtype::I8)?;
    let [parts, out_o, in_o] = shape;
    let packed_cols = in_o.div_ceil(4);
    if packed.shape != [parts, out_o, packed_cols] {
        return Err(bad_shape(name, format!("packed array {:?}, expected {:?}", packed.shape, [parts, out_o, packed_cols])));
    }
    let mut values = Vec::with_capacity(parts * out_o * in_o);
    for (row, chunk) in packed.data.chunks_exact(packed_cols.max(1)).enumerate() {
        if packed_cols == 0 {
            break;
        }
        for col in 0..packed_cols * 4 {
            let code = (chunk[col / 4] >> (6 - 2 * (col % 4))) & 0b11;
            let value = match code {
                0b00 => -1,
                0b01 => 0,
                0b10 => 1,
                _ => {
                    return Err(FormatError::InvalidTernaryCode { name: name.to_string(), index: row * packed_cols * 4 + col });
                }
            };
            if col < in_o {
                values.push(value);
            } else if value != 0 {
                return Err(FormatError::NonZeroPadding { name: name.to_string(), field: "packed row" });
            }
        }
    }
    TernaryTensor::from_values(shape, &values).ok_or_else(|| overflow(name))
}
