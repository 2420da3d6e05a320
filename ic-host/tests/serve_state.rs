//! `ic-host serve` keeps what a local replica keeps: restarted on the same state directory it
//! has the same canisters, memories, model and root key; and it answers queries from the last
//! committed state while a long update holds a canister (as the IC answers queries during an
//! update that spans many rounds). Driven by ic-agent 0.49 with its default checks.

mod common;

use std::time::{Duration, Instant};

use candid::{Decode, Encode, Principal};
use common::replica::{BlobKind, InitArg, agent, create_and_install, ed25519, greedy, gzip, server, server_in, temp_dir, walsh_upload};
use ic_host::host::{Host, HostConfig, default_controller};

#[derive(candid::CandidType, candid::Deserialize, Debug)]
struct Generation {
    ids: Vec<u32>,
    text: String,
    prompt_ids: Vec<u32>,
    instructions: u64,
}

#[derive(candid::CandidType, candid::Deserialize, Debug)]
enum GenerateResult {
    Ok(Generation),
    Err(candid::Reserved),
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_server_keeps_canisters_models_and_the_root_key() {
    let Some(testdata) = test_support::testdata() else { return };
    let set = testdata.join("gpt2-small");
    let reference = test_support::reference(&set);
    let prompt = &reference.prompts[0];
    let dir = temp_dir("serve-restart");

    let server = server_in(&dir);
    let root_key = server.subnet.keys.root_key_der();
    let admin = agent(&server.url, ed25519(21)).await;
    let walsh = create_and_install(&admin, &gzip(test_support::canister_wasm()), Encode!(&Option::<()>::None).unwrap()).await;
    walsh_upload(&admin, walsh, BlobKind::Model, &std::fs::read(set.join("model.walsh")).unwrap()).await;
    walsh_upload(&admin, walsh, BlobKind::Tokenizer, &std::fs::read(set.join("tokenizer.json")).unwrap()).await;
    let generate = |agent: ic_agent::Agent| {
        let arg = Encode!(&greedy(&prompt.prompt, 8)).unwrap();
        async move {
            let reply = agent.query(&walsh, "generate").with_arg(arg).call().await.expect("generate query");
            match Decode!(&reply, GenerateResult).unwrap() {
                GenerateResult::Ok(g) => g,
                GenerateResult::Err(_) => panic!("generate failed: {}", candid::IDLArgs::from_bytes(&reply).unwrap()),
            }
        }
    };
    let before = generate(admin.clone()).await;
    assert_eq!(before.ids, prompt.walsh.greedy_ids[..8], "the model reproduces the reference before the restart");
    let other = create_and_install(&admin, common::test_canister_wasm(), Encode!(&InitArg { greeting: "kept".into() }).unwrap()).await;
    admin.update(&other, "set").with_arg(Encode!(&"k", &"v").unwrap()).call_and_wait().await.unwrap();
    admin.update(&other, "stable_grow").with_arg(Encode!(&1u64).unwrap()).call_and_wait().await.unwrap();
    admin.update(&other, "stable_write").with_arg(Encode!(&100u64, &b"stable bytes".to_vec()).unwrap()).call_and_wait().await.unwrap();
    let status_arg = Encode!(&ic_management_canister_types::CanisterIdRecord { canister_id: walsh }).unwrap();
    let status = |agent: ic_agent::Agent, arg: Vec<u8>| async move {
        let reply = agent
            .update(&Principal::management_canister(), "canister_status")
            .with_effective_canister_id(walsh)
            .with_arg(arg)
            .call_and_wait()
            .await
            .unwrap();
        Decode!(&reply, ic_management_canister_types::CanisterStatusResult).unwrap()
    };
    let status_before = status(admin.clone(), status_arg.clone()).await;
    server.shutdown();

    let server = server_in(&dir);
    assert_eq!(server.subnet.keys.root_key_der(), root_key, "the root key persists (so it can be pinned)");
    let admin = agent(&server.url, ed25519(21)).await;
    let after = generate(admin.clone()).await;
    assert_eq!(after.ids, before.ids, "the model is still active after the restart");
    assert_eq!(after.text, before.text);
    let reply = admin.query(&other, "get").with_arg(Encode!(&"k").unwrap()).call().await.unwrap();
    assert_eq!(Decode!(&reply, Option<String>).unwrap().as_deref(), Some("v"), "heap state persists");
    let reply = admin.query(&other, "stable_read").with_arg(Encode!(&100u64, &12u64).unwrap()).call().await.unwrap();
    assert_eq!(Decode!(&reply, Vec<u8>).unwrap(), b"stable bytes", "stable memory persists");
    let reply = admin.query(&other, "greeting").with_arg(Encode!().unwrap()).call().await.unwrap();
    assert_eq!(Decode!(&reply, String).unwrap(), "kept");
    let status_after = status(admin.clone(), status_arg).await;
    assert_eq!(status_after.module_hash, status_before.module_hash);
    assert_eq!(status_after.settings.controllers, status_before.settings.controllers);
    // And it keeps working: an update commits on the restored state.
    let reply = admin.update(&other, "inc").with_arg(Encode!().unwrap()).call_and_wait().await.unwrap();
    assert!(Decode!(&reply, u64).unwrap() >= 1);
    // A third start sees that too.
    server.shutdown();
    let server = server_in(&dir);
    let admin = agent(&server.url, ed25519(21)).await;
    let reply = admin.query(&other, "counter").with_arg(Encode!().unwrap()).call().await.unwrap();
    let counter = Decode!(&reply, u64).unwrap();
    assert!(counter >= 1, "{counter}");
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Rounds of the test canister's `burn` loop that cost `instructions`, measured on the embedded
/// host (the same metering the server runs).
fn burn_rounds_for(instructions: u64) -> u64 {
    let arg = Encode!(&InitArg { greeting: "x".into() }).unwrap();
    let (mut host, _) = Host::install(common::test_canister_wasm(), &arg, HostConfig::default()).unwrap();
    let rounds = 10_000_000u64;
    let out = host.update("burn", &Encode!(&rounds).unwrap(), default_controller()).unwrap();
    instructions * rounds / out.instructions
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queries_answer_from_the_committed_state_while_a_20b_update_runs() {
    let server = server();
    let admin = agent(&server.url, ed25519(22)).await;
    let id = create_and_install(&admin, common::test_canister_wasm(), Encode!(&InitArg { greeting: "busy".into() }).unwrap()).await;
    let counter = |agent: ic_agent::Agent| async move {
        let reply = agent.query(&id, "counter").with_arg(Encode!().unwrap()).call().await.expect("counter query");
        Decode!(&reply, u64).unwrap()
    };
    let before = counter(admin.clone()).await;

    let rounds = burn_rounds_for(20_000_000_000);
    let updater = admin.clone();
    let started = Instant::now();
    let update = tokio::spawn(async move { updater.update(&id, "burn").with_arg(Encode!(&rounds).unwrap()).call_and_wait().await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut answered_during = 0;
    while !update.is_finished() {
        let seen = counter(admin.clone()).await;
        if update.is_finished() {
            break;
        }
        // The update has not committed yet: queries see the state before it.
        assert_eq!(seen, before, "a query during the update reads the last committed state");
        answered_during += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let elapsed = started.elapsed();
    update.await.unwrap().expect("the 20 B update succeeds");
    assert!(answered_during >= 3, "{answered_during} queries answered during a {elapsed:?} update");
    assert_eq!(counter(admin.clone()).await, before + 1, "after the update, queries see its effect");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn walsh_queries_answer_while_a_long_session_update_runs() {
    let Some(testdata) = test_support::testdata() else { return };
    let set = testdata.join("gpt2-bench");
    let server = server();
    let admin = agent(&server.url, ed25519(23)).await;
    let walsh = create_and_install(&admin, &gzip(test_support::canister_wasm()), Encode!(&Option::<()>::None).unwrap()).await;
    walsh_upload(&admin, walsh, BlobKind::Model, &std::fs::read(set.join("model.walsh")).unwrap()).await;
    walsh_upload(&admin, walsh, BlobKind::Tokenizer, &std::fs::read(set.join("tokenizer.json")).unwrap()).await;

    // A finished one-token session whose state queries can read.
    let reply = admin.update(&walsh, "session_start").with_arg(Encode!(&greedy("Once upon a time", 1)).unwrap()).call_and_wait().await.unwrap();
    let first = common::replica::walsh_reply_text("session_start", &reply);
    let session: u64 = first
        .split("session = ")
        .nth(1)
        .and_then(|t| t.split(|c: char| !c.is_ascii_digit() && c != '_').next())
        .map(|t| t.replace('_', "").parse().unwrap())
        .unwrap_or_else(|| panic!("{first}"));

    let updater = admin.clone();
    let started = Instant::now();
    let update = tokio::spawn(async move {
        updater.update(&walsh, "session_start").with_arg(Encode!(&greedy("Once upon a time", 200)).unwrap()).call_and_wait().await
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut answered_during = 0;
    while !update.is_finished() {
        let info = admin.query(&walsh, "model_info").with_arg(Encode!().unwrap()).call().await.expect("model_info during the session");
        let view = admin.query(&walsh, "session_get").with_arg(Encode!(&session).unwrap()).call().await.expect("session_get during the session");
        if update.is_finished() {
            break;
        }
        assert!(common::replica::is_ok(&common::replica::walsh_reply_text("model_info", &info)));
        assert!(common::replica::is_ok(&common::replica::walsh_reply_text("session_get", &view)));
        answered_during += 1;
    }
    let elapsed = started.elapsed();
    let reply = update.await.unwrap().expect("the long session call succeeds");
    let text = common::replica::walsh_reply_text("session_start", &reply);
    assert!(common::replica::is_ok(&text), "{text}");
    assert!(answered_during >= 1, "{answered_during} query pairs answered during a {elapsed:?} session update");
    eprintln!(
        "{answered_during} model_info + session_get pairs answered during a {elapsed:?} session update: {}",
        text.split("instructions = ").nth(1).unwrap_or("?").split(';').next().unwrap_or("?")
    );
}
