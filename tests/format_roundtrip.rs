//! Parse → write reproduces every version 4 reference file byte for byte, and the version 2 file
//! decodes to exactly the ternary weights of its version 4 twin.

use walsh_engine::format::{Payload, WalshFile};

#[test]
fn version_4_files_roundtrip_byte_for_byte() {
    let Some(data) = test_support::testdata() else { return };
    for set in test_support::SETS {
        let bytes = std::fs::read(data.join(set).join("model.walsh")).unwrap();
        let file = WalshFile::parse(&bytes).unwrap_or_else(|e| panic!("{set}: {e}"));
        assert_eq!(file.version, 4);
        assert!(file.to_bytes().unwrap() == bytes, "{set}: rewritten file differs");
    }
}

#[test]
fn version_2_decodes_to_the_same_weights_as_its_version_4_twin() {
    let Some(data) = test_support::testdata() else { return };
    let v2_bytes = std::fs::read(data.join("author-256/model-v2.walsh")).unwrap();
    let v4_bytes = std::fs::read(data.join("author-256/model.walsh")).unwrap();
    let v2 = WalshFile::parse(&v2_bytes).unwrap();
    let v4 = WalshFile::parse(&v4_bytes).unwrap();
    assert_eq!(v2.version, 2);
    let names = |f: &WalshFile| f.records.iter().map(|r| r.name.to_string()).collect::<Vec<_>>();
    assert_eq!(names(&v2), names(&v4));
    let mut ternary = 0;
    for (a, b) in v2.records.iter().zip(&v4.records) {
        if let (Payload::Ternary(ta), Payload::Ternary(tb)) = (&a.payload, &b.payload) {
            assert_eq!(ta.shape, tb.shape);
            assert!(ta.to_values() == tb.to_values(), "{}: ternary values differ", a.name);
            ternary += 1;
        } else {
            assert_eq!(a.payload, b.payload, "{}", a.name);
        }
    }
    assert_eq!(ternary, 56);
    // Converting v2 to v4 with our writer gives the author's own v4 re-encoding.
    assert!(v2.to_bytes().unwrap() == v4_bytes);
}
