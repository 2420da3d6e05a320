//! The same scenarios on a PocketIC server, when one is available: build with
//! `--features pocketic` and set `POCKET_IC_BIN` to the server binary. Otherwise each test says
//! why it was skipped (no server can be downloaded on this project's machines).

mod common;

#[cfg(feature = "pocketic")]
mod with_server {
    use super::common;
    use common::backend::pocket::pocket;
    use common::scenarios::{self, init_arg};

    macro_rules! scenario {
        ($name:ident $(, $extra:expr)?) => {
            #[test]
            fn $name() {
                let Some(mut b) = pocket(common::test_canister_wasm(), &init_arg()) else { return };
                scenarios::$name(&mut b $(, $extra)?);
            }
        };
    }
    scenario!(updates_and_queries);
    scenario!(trap_rolls_back);
    scenario!(queries_do_not_persist);
    scenario!(controllers_and_callers);
    scenario!(upgrade_keeps_stable_memory, common::test_canister_wasm());
    scenario!(raw_rand);
    scenario!(timers);
    scenario!(inspect_message);
    scenario!(instruction_limits);
}

#[cfg(not(feature = "pocketic"))]
#[test]
fn pocketic_backend() {
    let _ = common::test_canister_wasm;
    eprintln!("SKIPPED: built without `--features pocketic`; the scenarios ran on the embedded host only");
}
