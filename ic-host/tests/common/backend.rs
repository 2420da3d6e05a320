//! The canister scenarios run against a backend: the embedded host always, and a PocketIC server
//! when one is available (`--features pocketic` and `POCKET_IC_BIN` set).

use candid::Principal;

pub trait Backend {
    fn name(&self) -> &'static str;
    fn update(&mut self, method: &str, arg: Vec<u8>, caller: Principal) -> Result<Vec<u8>, String>;
    fn query(&mut self, method: &str, arg: Vec<u8>, caller: Principal) -> Result<Vec<u8>, String>;
    fn upgrade(&mut self, wasm: &[u8], arg: Vec<u8>) -> Result<(), String>;
    /// Moves time forward and lets due timers run.
    fn advance_seconds(&mut self, seconds: u64);
    fn controller(&self) -> Principal;
}

pub struct Embedded(pub ic_host::host::Host);

impl Backend for Embedded {
    fn name(&self) -> &'static str {
        "embedded host"
    }
    fn update(&mut self, method: &str, arg: Vec<u8>, caller: Principal) -> Result<Vec<u8>, String> {
        respond(self.0.update(method, &arg, caller).map_err(|e| e.to_string())?)
    }
    fn query(&mut self, method: &str, arg: Vec<u8>, caller: Principal) -> Result<Vec<u8>, String> {
        respond(self.0.query(method, &arg, caller).map_err(|e| e.to_string())?)
    }
    fn upgrade(&mut self, wasm: &[u8], arg: Vec<u8>) -> Result<(), String> {
        self.0.upgrade(wasm, &arg).map(|_| ()).map_err(|e| e.to_string())
    }
    fn advance_seconds(&mut self, seconds: u64) {
        self.0.advance_time(seconds * 1_000_000_000).expect("timer execution");
    }
    fn controller(&self) -> Principal {
        self.0.controllers()[0]
    }
}

fn respond(outcome: ic_host::host::Outcome) -> Result<Vec<u8>, String> {
    match outcome.response {
        ic_host::host::Response::Reply(bytes) => Ok(bytes),
        ic_host::host::Response::Reject { message, .. } => Err(message),
    }
}

pub fn embedded(wasm: &[u8], arg: &[u8]) -> Embedded {
    let (host, _) = ic_host::host::Host::install(wasm, arg, ic_host::host::HostConfig::default()).expect("install");
    Embedded(host)
}

#[cfg(feature = "pocketic")]
pub mod pocket {
    use candid::Principal;
    use pocket_ic::PocketIc;

    pub struct Pocket {
        pic: PocketIc,
        id: Principal,
        controller: Principal,
    }

    /// A PocketIC instance with the canister installed, or `None` when no server is configured.
    pub fn pocket(wasm: &[u8], arg: &[u8]) -> Option<Pocket> {
        if std::env::var_os("POCKET_IC_BIN").is_none() {
            eprintln!("SKIPPED: POCKET_IC_BIN is not set; the PocketIC backend did not run");
            return None;
        }
        let pic = PocketIc::new();
        let controller = Principal::self_authenticating(b"ic-host pocketic controller");
        let id = pic.create_canister_with_settings(Some(controller), None);
        pic.add_cycles(id, 100_000_000_000_000);
        pic.install_canister(id, wasm.to_vec(), arg.to_vec(), Some(controller));
        Some(Pocket { pic, id, controller })
    }

    impl super::Backend for Pocket {
        fn name(&self) -> &'static str {
            "PocketIC"
        }
        fn update(&mut self, method: &str, arg: Vec<u8>, caller: Principal) -> Result<Vec<u8>, String> {
            self.pic.update_call(self.id, caller, method, arg).map_err(|e| e.reject_message)
        }
        fn query(&mut self, method: &str, arg: Vec<u8>, caller: Principal) -> Result<Vec<u8>, String> {
            self.pic.query_call(self.id, caller, method, arg).map_err(|e| e.reject_message)
        }
        fn upgrade(&mut self, wasm: &[u8], arg: Vec<u8>) -> Result<(), String> {
            self.pic.upgrade_canister(self.id, wasm.to_vec(), arg, Some(self.controller)).map_err(|e| e.reject_message)
        }
        fn advance_seconds(&mut self, seconds: u64) {
            self.pic.advance_time(std::time::Duration::from_secs(seconds));
            for _ in 0..5 {
                self.pic.tick();
            }
        }
        fn controller(&self) -> Principal {
            self.controller
        }
    }
}
