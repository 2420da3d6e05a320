//! The version 4 writer, byte-compatible with the Python compressor.

use super::{END_TAG, FormatError, MAGIC, Payload, Record, WRITE_VERSION};

fn u32_field(name: &str, value: usize) -> Result<[u8; 4], FormatError> {
    u32::try_from(value)
        .map(u32::to_le_bytes)
        .map_err(|_| FormatError::SizeOverflow { name: name.to_string() })
}

fn put_dims(out: &mut Vec<u8>, name: &str, shape: &[usize]) -> Result<(), FormatError> {
    let ndim = u8::try_from(shape.len()).map_err(|_| FormatError::SizeOverflow { name: name.to_string() })?;
    out.push(ndim);
    for &d in shape {
        out.extend_from_slice(&u32_field(name, d)?);
    }
    Ok(())
}

fn put_array(out: &mut Vec<u8>, name: &str, dtype_code: u8, shape: &[usize], data: &[u8]) -> Result<(), FormatError> {
    out.push(dtype_code);
    put_dims(out, name, shape)?;
    out.extend_from_slice(data);
    Ok(())
}

/// Writes `SPIN | u16 4 | u32 len | json | records | END!`.
///
/// Records are written as given; the caller chooses their order (the compressor uses state-dict
/// order). Fails only if a size does not fit its on-disk field.
pub(super) fn write_v4(header_json: &str, records: &[Record<'_>]) -> Result<Vec<u8>, FormatError> {
    let mut out = Vec::new();
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&WRITE_VERSION.to_le_bytes());
    out.extend_from_slice(&u32_field("header", header_json.len())?);
    out.extend_from_slice(header_json.as_bytes());
    for record in records {
        let name = record.name.as_ref();
        out.push(record.payload.marker());
        let name_len = u16::try_from(name.len()).map_err(|_| FormatError::SizeOverflow { name: name.to_string() })?;
        out.extend_from_slice(&name_len.to_le_bytes());
        out.extend_from_slice(name.as_bytes());
        match &record.payload {
            Payload::Ternary(t) => {
                put_dims(&mut out, name, &t.shape)?;
                out.extend_from_slice(&t.nnz.to_le_bytes());
                out.extend_from_slice(&u32_field(name, t.bitmask.len())?);
                out.extend_from_slice(&t.bitmask);
                out.extend_from_slice(&u32_field(name, t.signs.len())?);
                out.extend_from_slice(&t.signs);
            }
            Payload::Embedding(e) => {
                out.extend_from_slice(&e.scale.to_le_bytes());
                put_array(&mut out, name, 0, &[e.rows, e.cols], &e.data)?;
            }
            Payload::Half { array, .. } | Payload::Rope(array) => {
                put_array(&mut out, name, array.dtype as u8, &array.shape, &array.data)?;
            }
        }
    }
    out.extend_from_slice(&END_TAG);
    Ok(out)
}
