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
    let Ok(owned) = Model::load_owned(data.to_vec()) else { panic!("load_owned rejected what load accepted") };
    let c = &model.config;
    if c.n_embd * c.vocab_size > 1 << 20 || c.n_layer * c.n_embd > 1 << 14 {
        return;
    }
    let tokens: Vec<u32> = (0..c.block_size.min(3) as u32).map(|t| t % c.vocab_size as u32).collect();
    // Both loaders (a copy of the int8 matrix, or the file's bytes rearranged in place) must
    // compute the same logits, bit for bit (NaN included).
    let bits = |r: Result<Vec<f32>, _>| r.map(|v| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>());
    let (mut cache, mut owned_cache) = (model.new_cache(), owned.new_cache());
    assert_eq!(bits(model.forward(&mut cache, &tokens)), bits(owned.forward(&mut owned_cache, &tokens)));
    assert_eq!(bits(model.forward(&mut cache, &[0])), bits(owned.forward(&mut owned_cache, &[0])));
});
