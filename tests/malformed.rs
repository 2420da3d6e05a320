//! Every class of malformed file gets its typed error. Fixtures are made by damaging the real
//! char-tiny model (bytes patched at offsets found by parsing, or records edited and re-written).

use std::borrow::Cow;

use walsh_engine::config::ConfigError;
use walsh_engine::format::{FormatError, HalfKind, Payload, Record, WalshFile};
use walsh_engine::model::{LoadError, Model};

fn original() -> Option<Vec<u8>> {
    let data = test_support::testdata()?;
    Some(std::fs::read(data.join("char-tiny/model.walsh")).unwrap())
}

fn parse_err(bytes: &[u8]) -> FormatError {
    WalshFile::parse(bytes).expect_err("damaged file must be rejected")
}

fn load_err(bytes: &[u8]) -> LoadError {
    Model::load(bytes).expect_err("damaged model must be rejected")
}

/// Byte offset where record `index` starts (its marker byte).
fn record_offset(file: &WalshFile<'_>, index: usize) -> usize {
    let prefix = WalshFile { version: 4, header_json: file.header_json.clone(), records: file.records[..index].to_vec() };
    prefix.to_bytes().unwrap().len() - 4
}

fn index_of(file: &WalshFile<'_>, name: &str) -> usize {
    file.records.iter().position(|r| r.name == name).unwrap()
}

/// Offset of the first payload byte of record `name` (after marker, length and name).
fn payload_offset(file: &WalshFile<'_>, name: &str) -> usize {
    record_offset(file, index_of(file, name)) + 3 + name.len()
}

fn rewrite(bytes: &[u8], edit: impl FnOnce(&mut WalshFile<'static>)) -> Vec<u8> {
    let mut file = WalshFile::parse(bytes).unwrap();
    let mut owned = WalshFile {
        version: file.version,
        header_json: Cow::Owned(file.header_json.to_string()),
        records: std::mem::take(&mut file.records)
            .into_iter()
            .map(|r| Record { name: Cow::Owned(r.name.into_owned()), payload: own(r.payload) })
            .collect(),
    };
    edit(&mut owned);
    owned.to_bytes().unwrap()
}

fn own(p: Payload<'_>) -> Payload<'static> {
    use walsh_engine::format::{Array, QuantizedMatrix, TernaryTensor};
    let arr = |a: Array<'_>| Array { dtype: a.dtype, shape: a.shape, data: Cow::Owned(a.data.into_owned()) };
    match p {
        Payload::Ternary(t) => Payload::Ternary(TernaryTensor {
            shape: t.shape,
            nnz: t.nnz,
            bitmask: Cow::Owned(t.bitmask.into_owned()),
            signs: Cow::Owned(t.signs.into_owned()),
        }),
        Payload::Embedding(e) => {
            Payload::Embedding(QuantizedMatrix { scale: e.scale, rows: e.rows, cols: e.cols, data: Cow::Owned(e.data.into_owned()) })
        }
        Payload::Half { kind, array } => Payload::Half { kind, array: arr(array) },
        Payload::Rope(a) => Payload::Rope(arr(a)),
    }
}

const WQ: &str = "layers.0.attention.wq.weight";

#[test]
fn bad_magic() {
    let Some(mut bytes) = original() else { return };
    bytes[..4].copy_from_slice(b"PK\x03\x04");
    assert!(matches!(parse_err(&bytes), FormatError::BadMagic { .. }));
    assert!(matches!(parse_err(b"SP"), FormatError::BadMagic { .. }));
    assert!(matches!(parse_err(b""), FormatError::BadMagic { .. }));
}

#[test]
fn unsupported_versions() {
    let Some(mut bytes) = original() else { return };
    for version in [0u16, 1, 3, 5, 0xffff] {
        bytes[4..6].copy_from_slice(&version.to_le_bytes());
        assert_eq!(parse_err(&bytes), FormatError::UnsupportedVersion { version });
    }
}

#[test]
fn truncation_reports_the_offset() {
    let Some(bytes) = original() else { return };
    let file = WalshFile::parse(&bytes).unwrap();
    // ndim, 3 dims, nnz and the mask length take 21 bytes; cut inside the bitmask.
    let at = payload_offset(&file, WQ) + 30;
    match parse_err(&bytes[..at]) {
        FormatError::Truncated { offset, what, .. } => {
            assert!(offset <= at, "offset {offset} past the cut {at}");
            assert!(offset > payload_offset(&file, WQ) - 10, "offset {offset} not at the damaged record");
            assert_eq!(what, "bitmask");
        }
        other => panic!("expected Truncated, got {other:?}"),
    }
    // Every cut point fails cleanly.
    for cut in (0..bytes.len()).step_by(97).chain([bytes.len() - 1, bytes.len() - 4]) {
        let err = parse_err(&bytes[..cut]);
        assert!(
            matches!(err, FormatError::Truncated { .. } | FormatError::MissingEndTag { .. } | FormatError::BadMagic { .. }),
            "cut at {cut}: {err:?}"
        );
    }
}

#[test]
fn missing_end_tag_and_trailing_bytes() {
    let Some(bytes) = original() else { return };
    let n = bytes.len();
    assert_eq!(parse_err(&bytes[..n - 4]), FormatError::MissingEndTag { offset: n - 4 });
    let mut longer = bytes.clone();
    longer.extend_from_slice(b"junk");
    assert_eq!(parse_err(&longer), FormatError::TrailingBytes { offset: n, count: 4 });
}

#[test]
fn unknown_and_misplaced_markers() {
    let Some(mut bytes) = original() else { return };
    let file = WalshFile::parse(&bytes).unwrap();
    let at = record_offset(&file, index_of(&file, WQ));
    bytes[at] = b'Z';
    assert_eq!(parse_err(&bytes), FormatError::UnknownMarker { code: b'Z', offset: at });
    bytes[at] = b'T';
    assert_eq!(parse_err(&bytes), FormatError::MarkerNotInVersion { code: b'T', version: 4, offset: at });
}

#[test]
fn unsupported_features_are_named() {
    let Some(mut bytes) = original() else { return };
    let file = WalshFile::parse(&bytes).unwrap();
    // Hash-embedding and Hadamard markers.
    let at = record_offset(&file, index_of(&file, "tok_embeddings.weight"));
    for (marker, needle) in [(b'A', "hash"), (b'J', "hash"), (b'L', "Hadamard")] {
        let mut b = bytes.clone();
        b[at] = marker;
        match parse_err(&b) {
            FormatError::Unsupported { feature, .. } => assert!(feature.contains(needle), "{feature}"),
            other => panic!("{other:?}"),
        }
    }
    // A 32-part (Hadamard) ternary weight.
    let dims = payload_offset(&file, WQ) + 1;
    bytes[dims..dims + 4].copy_from_slice(&32u32.to_le_bytes());
    assert!(matches!(parse_err(&bytes), FormatError::Unsupported { feature, .. } if feature.contains("Hadamard")));
    // Features switched on in the header.
    let original = original().unwrap();
    for (key, value) in [("algebra", "\"hadamard\""), ("hash_embeddings", "true"), ("use_moe", "true"), ("use_channel_mod", "true")] {
        let b = rewrite(&original, |f| {
            let mut json: serde_json::Value = serde_json::from_str(&f.header_json).unwrap();
            json[key] = serde_json::from_str(value).unwrap();
            f.header_json = Cow::Owned(json.to_string());
        });
        assert!(matches!(load_err(&b), LoadError::Config(ConfigError::Unsupported(_))), "{key}");
    }
}

#[test]
fn nnz_must_equal_the_bitmask_popcount() {
    let Some(mut bytes) = original() else { return };
    let file = WalshFile::parse(&bytes).unwrap();
    let Payload::Ternary(t) = &file.record(WQ).unwrap().payload else { panic!() };
    let nnz_at = payload_offset(&file, WQ) + 13;
    let declared = t.nnz + 1;
    bytes[nnz_at..nnz_at + 4].copy_from_slice(&declared.to_le_bytes());
    assert_eq!(parse_err(&bytes), FormatError::NnzMismatch { name: WQ.into(), declared, popcount: u64::from(declared - 1) });
}

#[test]
fn length_fields_must_match_the_shape() {
    let Some(bytes) = original() else { return };
    let file = WalshFile::parse(&bytes).unwrap();
    let mask_len_at = payload_offset(&file, WQ) + 17;
    let mut b = bytes.clone();
    let len = u32::from_le_bytes(b[mask_len_at..mask_len_at + 4].try_into().unwrap());
    b[mask_len_at..mask_len_at + 4].copy_from_slice(&(len - 1).to_le_bytes());
    assert!(matches!(parse_err(&b), FormatError::LengthMismatch { field: "bitmask", .. }));

    // A ternary shape that is not [8, out, in].
    let mut b = bytes.clone();
    b[payload_offset(&file, WQ)] = 2;
    assert!(matches!(parse_err(&b), FormatError::BadShape { .. }));

    // A norm stored with the wrong dtype.
    let mut b = bytes.clone();
    b[payload_offset(&file, "norm.weight")] = 3;
    assert!(matches!(parse_err(&b), FormatError::WrongDtype { .. } | FormatError::Truncated { .. }));
    let mut b = bytes.clone();
    b[payload_offset(&file, "norm.weight")] = 9;
    assert!(matches!(parse_err(&b), FormatError::WrongDtype { .. }));
}

#[test]
fn sizes_that_overflow() {
    let Some(mut bytes) = original() else { return };
    let file = WalshFile::parse(&bytes).unwrap();
    let dims = payload_offset(&file, WQ) + 5;
    bytes[dims..dims + 8].copy_from_slice(&[0xff; 8]);
    assert_eq!(parse_err(&bytes), FormatError::SizeOverflow { name: WQ.into() });
    // An array block declaring 8 huge dimensions.
    let mut header = b"SPIN\x04\x00\x02\x00\x00\x00{}N\x01\x00n\x02\x08".to_vec();
    header.extend_from_slice(&[0xff; 32]);
    assert_eq!(parse_err(&header), FormatError::SizeOverflow { name: "n".into() });
}

#[test]
fn non_zero_padding_is_rejected() {
    let Some(bytes) = original() else { return };
    // The sign bits of some record end mid-byte; set a pad bit there.
    let file = WalshFile::parse(&bytes).unwrap();
    let (name, nnz) = file
        .records
        .iter()
        .find_map(|r| match &r.payload {
            Payload::Ternary(t) if t.nnz % 8 != 0 => Some((r.name.to_string(), t.nnz)),
            _ => None,
        })
        .expect("a record whose nnz is not a multiple of 8");
    let b = rewrite(&bytes, |f| {
        let i = index_of(f, &name);
        let Payload::Ternary(t) = &mut f.records[i].payload else { unreachable!() };
        if let Some(last) = t.signs.to_mut().last_mut() {
            *last |= 0x80;
        }
    });
    assert_ne!(nnz % 8, 0);
    assert_eq!(parse_err(&b), FormatError::NonZeroPadding { name, field: "sign bits" });
}

#[test]
fn invalid_embedding_scale() {
    let Some(mut bytes) = original() else { return };
    let file = WalshFile::parse(&bytes).unwrap();
    let at = payload_offset(&file, "tok_embeddings.weight");
    for bad in [f32::NAN, 0.0, -1.0, f32::INFINITY] {
        bytes[at..at + 4].copy_from_slice(&bad.to_le_bytes());
        assert!(matches!(parse_err(&bytes), FormatError::InvalidScale { .. }), "{bad}");
    }
}

#[test]
fn duplicate_tensor() {
    let Some(bytes) = original() else { return };
    let b = rewrite(&bytes, |f| {
        let copy = f.records[index_of(f, WQ)].clone();
        f.records.push(copy);
    });
    assert!(matches!(parse_err(&b), FormatError::DuplicateTensor { name, .. } if name == WQ));
}

#[test]
fn missing_tensors() {
    let Some(bytes) = original() else { return };
    for name in [WQ, "layers.1.feed_forward.down_proj.beta", "norm.weight", "freqs_cis", "tok_embeddings.weight", "layers.0.attention.head_mixer.W"] {
        let b = rewrite(&bytes, |f| f.records.retain(|r| r.name != name));
        assert_eq!(load_err(&b), LoadError::MissingTensor { name: name.into() }, "{name}");
    }
}

#[test]
fn unexpected_tensors() {
    let Some(bytes) = original() else { return };
    // A third layer the header does not declare.
    let b = rewrite(&bytes, |f| {
        let mut extra = f.records[index_of(f, "layers.1.ffn_norm.weight")].clone();
        extra.name = Cow::Borrowed("layers.2.ffn_norm.weight");
        f.records.push(extra);
    });
    assert!(matches!(load_err(&b), LoadError::UnexpectedTensor { name, .. } if name == "layers.2.ffn_norm.weight"));
    // Mixer weights in a model whose header turns head mixing off.
    let b = rewrite(&bytes, |f| f.header_json = Cow::Owned(f.header_json.replace("\"head_mixing\": true", "\"head_mixing\": false")));
    assert!(matches!(load_err(&b), LoadError::UnexpectedTensor { name, .. } if name.contains("head_mixer")));
}

#[test]
fn config_inconsistent_with_shapes() {
    let Some(bytes) = original() else { return };
    for (from, to) in
        [("\"n_embd\": 64", "\"n_embd\": 128"), ("\"vocab_size\": 65", "\"vocab_size\": 66"), ("\"block_size\": 64", "\"block_size\": 32")]
    {
        let b = rewrite(&bytes, |f| f.header_json = Cow::Owned(f.header_json.replace(from, to)));
        assert!(matches!(load_err(&b), LoadError::ShapeMismatch { .. }), "{to}: {:?}", load_err(&b));
    }
    let b = rewrite(&bytes, |f| f.header_json = Cow::Owned(f.header_json.replace("\"n_layer\": 2", "\"n_layer\": 3")));
    assert!(matches!(load_err(&b), LoadError::MissingTensor { name } if name.starts_with("layers.2.")));
    let b = rewrite(&bytes, |f| f.header_json = Cow::Borrowed("{\"n_layer\": 2}"));
    assert!(matches!(load_err(&b), LoadError::Config(ConfigError::MissingKey(_))));
    let b = rewrite(&bytes, |f| f.header_json = Cow::Borrowed("not json"));
    assert!(matches!(load_err(&b), LoadError::Config(ConfigError::Json(_))));
}

#[test]
fn wrong_record_kind() {
    let Some(bytes) = original() else { return };
    let b = rewrite(&bytes, |f| {
        let i = index_of(f, "norm.weight");
        if let Payload::Half { kind, .. } = &mut f.records[i].payload {
            *kind = HalfKind::Beta;
        }
    });
    assert_eq!(load_err(&b), LoadError::WrongKind { name: "norm.weight".into(), expected: 'N', found: 'S' });
}

#[test]
fn non_finite_weights() {
    let Some(bytes) = original() else { return };
    let b = rewrite(&bytes, |f| {
        let i = index_of(f, "layers.0.ffn_norm.weight");
        if let Payload::Half { array, .. } = &mut f.records[i].payload {
            array.data.to_mut()[..2].copy_from_slice(&half::f16::NAN.to_le_bytes());
        }
    });
    assert_eq!(load_err(&b), LoadError::NonFinite { name: "layers.0.ffn_norm.weight".into() });
}

#[test]
fn invalid_v2_codes() {
    let Some(data) = test_support::testdata() else { return };
    let mut bytes = std::fs::read(data.join("author-256/model-v2.walsh")).unwrap();
    // Record offsets of a v2 file cannot come from the v4 writer; find the first T record's
    // packed data by its name instead: name, ndim + 3 dims, then dtype + ndim + 3 dims.
    let name = b"layers.0.attention.wq.weight";
    let at = bytes.windows(name.len()).position(|w| w == name).unwrap() + name.len() + 13 + 14;
    bytes[at] = 0xff;
    assert!(matches!(parse_err(&bytes), FormatError::InvalidTernaryCode { index: 0, .. }));
}
