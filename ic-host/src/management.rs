//! The management canister as this host has it: only `raw_rand`, from a deterministic stream
//! seeded per host (`HostConfig::random_seed`), so runs repeat exactly.

use crate::types::{RejectCode, Response};

/// SplitMix64: the `raw_rand` stream.
#[derive(Debug, Clone, Default)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// Where the stream is, to persist it ([`Rng::new`] continues from there).
    pub fn state(&self) -> u64 {
        self.0
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

/// The management canister's answer to `method(payload)`.
pub fn respond(rng: &mut Rng, method: &str, payload: &[u8]) -> Response {
    if method == "raw_rand" {
        if candid::decode_args::<()>(payload).is_err() {
            return Response::Reject { code: RejectCode::CanisterError, message: "raw_rand takes no arguments".into() };
        }
        let bytes: Vec<u8> = (0..4).flat_map(|_| rng.next_u64().to_le_bytes()).collect();
        return Response::Reply(candid::encode_one(bytes).expect("a blob encodes"));
    }
    Response::Reject {
        code: RejectCode::DestinationInvalid,
        message: format!("the embedded host's management canister implements only raw_rand, not {method}"),
    }
}
