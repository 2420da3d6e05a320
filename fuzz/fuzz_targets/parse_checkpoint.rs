//! The checkpoint reader on any input, two ways:
//! - the input as a whole `.pt` file (zip layer, then pickle);
//! - the input as `data.pkl` inside a zip that also holds the real char-tiny storages, so the
//!   mutated pickle can reference real tensors and reach the compressor itself.
//! Either way: Ok or a typed error, never a panic.
#![no_main]

use std::io::{Read, Write};
use std::sync::OnceLock;

use host_compressor::checkpoint::Checkpoint;
use host_compressor::compress::compress;
use libfuzzer_sys::fuzz_target;

fn storages() -> &'static Vec<(String, Vec<u8>)> {
    static STORAGES: OnceLock<Vec<(String, Vec<u8>)>> = OnceLock::new();
    STORAGES.get_or_init(|| {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/testdata/char-tiny/ckpt.pt");
        let mut archive = zip::ZipArchive::new(std::fs::File::open(path).expect("char-tiny ckpt.pt")).unwrap();
        (0..archive.len())
            .map(|i| {
                let mut f = archive.by_index(i).unwrap();
                let mut data = Vec::new();
                f.read_to_end(&mut data).unwrap();
                (f.name().unwrap().to_string(), data)
            })
            .filter(|(name, _)| !name.ends_with("data.pkl"))
            .collect()
    })
}

fn run(bytes: Vec<u8>) {
    let Ok(checkpoint) = Checkpoint::parse(bytes) else { return };
    if let Ok(compressed) = compress(&checkpoint, |_| {}) {
        let _ = compressed.check_runnable();
    }
}

fuzz_target!(|data: &[u8]| {
    run(data.to_vec());
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    zip.start_file("ckpt.pt/data.pkl", options).unwrap();
    zip.write_all(data).unwrap();
    for (name, bytes) in storages() {
        zip.start_file(name.as_str(), options).unwrap();
        zip.write_all(bytes).unwrap();
    }
    run(zip.finish().unwrap().into_inner());
});
