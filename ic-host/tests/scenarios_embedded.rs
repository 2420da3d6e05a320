//! The backend-independent scenarios on the embedded host.

mod common;

use common::backend::{Backend, embedded};
use common::scenarios::{self, init_arg};

fn backend() -> impl Backend {
    embedded(common::test_canister_wasm(), &init_arg())
}

#[test]
fn updates_and_queries() {
    scenarios::updates_and_queries(&mut backend());
}
#[test]
fn trap_rolls_back() {
    scenarios::trap_rolls_back(&mut backend());
}
#[test]
fn queries_do_not_persist() {
    scenarios::queries_do_not_persist(&mut backend());
}
#[test]
fn controllers_and_callers() {
    scenarios::controllers_and_callers(&mut backend());
}
#[test]
fn upgrade_keeps_stable_memory() {
    scenarios::upgrade_keeps_stable_memory(&mut backend(), common::test_canister_wasm());
}
#[test]
fn raw_rand() {
    scenarios::raw_rand(&mut backend());
}
#[test]
fn timers() {
    scenarios::timers(&mut backend());
}
#[test]
fn inspect_message() {
    scenarios::inspect_message(&mut backend());
}
#[test]
fn instruction_limits() {
    scenarios::instruction_limits(&mut backend());
}
