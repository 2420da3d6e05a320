//! The built module obeys the IC's rules (imports only from ic0, module limits) and exports
//! exactly the interface written down in `canister/walsh.did`.

mod common;

use ic_host::host::Host;

#[test]
fn imports_only_ic0_and_fits_the_module_limits() {
    let wasm = common::canister_wasm();
    // validate() refuses any non-ic0 import and any broken module limit, naming the rule.
    let info = ic_host::validate::validate(wasm).expect("the canister passes the IC's module checks");
    assert!(!info.imports.is_empty());
    assert!(wasm.len() < 10 << 20, "{} bytes", wasm.len());
    for method in ["upload_start", "upload_chunk", "upload_finish", "session_start", "session_continue", "session_cancel", "configure"] {
        assert!(info.update_methods.iter().any(|m| m == method), "{method} is not an update");
    }
    for method in ["generate", "upload_status", "session_get", "model_info", "stats", "http_request"] {
        assert!(info.query_methods.iter().any(|m| m == method), "{method} is not a query");
    }
}

#[test]
fn exported_interface_matches_the_did_file() {
    let did_path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("walsh.did");
    let written = std::fs::read_to_string(&did_path).expect("canister/walsh.did");
    let exported = Host::load_without_init(common::canister_wasm()).unwrap().candid_service().expect("the canister exports its interface");
    use candid_parser::utils::{CandidSource, service_equal};
    service_equal(CandidSource::Text(&written), CandidSource::Text(&exported))
        .unwrap_or_else(|e| panic!("canister/walsh.did differs from the interface the wasm exports: {e}\n--- exported:\n{exported}"));
}

#[test]
fn the_module_with_its_page_stays_under_2_mib_gzipped() {
    let wasm = common::canister_wasm();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    std::io::Write::write_all(&mut gz, wasm).unwrap();
    let gzipped = gz.finish().unwrap().len();
    let page: usize = walsh_canister::assets::files().iter().map(|(_, b)| b.len()).sum();
    eprintln!("module {} bytes, {gzipped} gzipped; page files {page} bytes (built page: {})", wasm.len(), walsh_canister::assets::BUILT);
    assert!(gzipped < 2 << 20, "the gzipped module is {gzipped} bytes");
}
