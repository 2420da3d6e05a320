//! Any bytes: parsing and model assembly must return Ok or a typed error, never panic. Files that
//! load and are small enough are also run for a few tokens, so inconsistencies the loader let
//! through would show up as panics in the kernels.
#![no_main]

use libfuzzer_sys::fuzz_target;
use walsh_engine::format::WalshFile;
use walsh_engine::model::Model;

fuzz_target!(|data: &[u8]| {
    let Ok(file) = WalshFile::parse(data) else { return };
    // The writer must reproduce any version 4 file it accepted.
    if file.version == 4 {
        assert_eq!(file.to_bytes().expect("parsed files are writable"), data);
    }
    let Ok(model) = Model::from_file(&file) else {
        // The canister's loader (file bytes kept, embedding read in place) must agree.
        assert!(Model::load_owned(data.to_vec()).is_err());
        return;
    };
    assert!(Model::load_owned(data.to_vec()).is_ok());
    let c = &model.config;
    if c.n_embd * c.vocab_size > 1 << 20 || c.n_layer * c.n_embd > 1 << 14 {
        return;
    }
    let mut cache = model.new_cache();
    let tokens: Vec<u32> = (0..c.block_size.min(3) as u32).map(|t| t % c.vocab_size as u32).collect();
    let _ = model.forward(&mut cache, &tokens);
    let _ = model.forward(&mut cache, &[0]);
});
