//! The version 4 writer, byte-compatible with the Python compressor.

use std::io::Write;

use super::error::FormatError;
use super::records::{END_TAG, MAGIC, Payload, Record, WRITE_VERSION};

fn fits_u32(name: &str, value: usize) -> Result<(), FormatError> {
    u32::try_from(value).map(|_| ()).map_err(|_| FormatError::SizeOverflow { name: name.to_string() })
}

/// Checks that every size fits its on-disk field, so that writing cannot fail half way for a
/// reason other than I/O.
pub(super) fn check_writable(header_json: &str, records: &[Record<'_>]) -> Result<(), FormatError> {
    fits_u32("header", header_json.len())?;
    for record in records {
        let name = record.name.as_ref();
        let overflow = || FormatError::SizeOverflow { name: name.to_string() };
        u16::try_from(name.len()).map_err(|_| overflow())?;
        let shape = record.payload.shape();
        u8::try_from(shape.len()).map_err(|_| overflow())?;
        for &d in &shape {
            fits_u32(name, d)?;
        }
        if let Payload::Ternary(t) = &record.payload {
            fits_u32(name, t.bitmask.len())?;
            fits_u32(name, t.signs.len())?;
        }
    }
    Ok(())
}

fn put_dims(out: &mut impl Write, shape: &[usize]) -> std::io::Result<()> {
    // Sizes were checked by `check_writable`.
    out.write_all(&[shape.len() as u8])?;
    for &d in shape {
        out.write_all(&(d as u32).to_le_bytes())?;
    }
    Ok(())
}

/// Writes `SPIN | u16 4 | u32 len | json | records | END!`. Call [`check_writable`] first.
///
/// Records are written as given; the caller chooses their order (the compressor uses state-dict
/// order).
pub(super) fn write_v4(header_json: &str, records: &[Record<'_>], out: &mut impl Write) -> std::io::Result<()> {
    out.write_all(&MAGIC)?;
    out.write_all(&WRITE_VERSION.to_le_bytes())?;
    out.write_all(&(header_json.len() as u32).to_le_bytes())?;
    out.write_all(header_json.as_bytes())?;
    for record in records {
        let name = record.name.as_ref();
        out.write_all(&[record.payload.marker()])?;
        out.write_all(&(name.len() as u16).to_le_bytes())?;
        out.write_all(name.as_bytes())?;
        match &record.payload {
            Payload::Ternary(t) => {
                put_dims(out, &t.shape)?;
                out.write_all(&t.nnz.to_le_bytes())?;
                out.write_all(&(t.bitmask.len() as u32).to_le_bytes())?;
                out.write_all(&t.bitmask)?;
                out.write_all(&(t.signs.len() as u32).to_le_bytes())?;
                out.write_all(&t.signs)?;
            }
            Payload::Embedding(e) => {
                out.write_all(&e.scale.to_le_bytes())?;
                out.write_all(&[0])?;
                put_dims(out, &[e.rows, e.cols])?;
                out.write_all(&e.data)?;
            }
            Payload::Half { array, .. } | Payload::Rope(array) => {
                out.write_all(&[array.dtype as u8])?;
                put_dims(out, &array.shape)?;
                out.write_all(&array.data)?;
            }
        }
    }
    out.write_all(&END_TAG)
}
