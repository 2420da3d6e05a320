//! `ic-host serve` driven by the real Rust client, ic-agent 0.49, with its default checks on
//! (BLS certificate verification, certificate freshness, query node signatures and the subnet's
//! canister ranges): canisters created and installed through the management canister (the
//! walsh canister gzipped, as deploy tools send it), queries, updates, typed `Err` replies,
//! traps with their reject and error codes, and the caller each kind of identity proves.

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use candid::{CandidType, Decode, Deserialize, Encode, Principal};
use common::replica::{InitArg, agent, create_and_install, ed25519, gzip, reject_of, secp256k1, server, walsh_reply_text};
use ic_agent::identity::{AnonymousIdentity, DelegatedIdentity, Identity};
use ic_transport_types::{Delegation, SignedDelegation};

#[derive(CandidType, Deserialize, Debug)]
struct Env {
    caller: Principal,
    me: Principal,
    caller_is_controller: bool,
    time: u64,
    instructions: u64,
    call_context_instructions: u64,
    balance: u128,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn walsh_canister_installs_gzipped_and_answers_queries_updates_and_typed_errors() {
    let server = server();
    let controller = ed25519(1);
    let agent = agent(&server.url, controller).await;
    let wasm = gzip(test_support::canister_wasm());
    assert!(wasm.len() < ic_host::replica::MAX_INGRESS_BYTES, "the gzipped module fits one ingress message ({} bytes)", wasm.len());
    let id = create_and_install(&agent, &wasm, Encode!(&Option::<()>::None).unwrap()).await;

    // A query, signature-verified by the agent: no model yet, so the typed error NoModel.
    let reply = agent.query(&id, "model_info").with_arg(Encode!().unwrap()).call().await.expect("model_info query");
    let text = walsh_reply_text("model_info", &reply);
    assert!(text.contains("NoModel"), "model_info before an upload: {text}");

    // A query method called as an update (icp-cli's default) runs replicated: a certified reply.
    let reply = agent.update(&id, "model_info").with_arg(Encode!().unwrap()).call_and_wait().await.expect("model_info as an update");
    assert!(walsh_reply_text("model_info", &reply).contains("NoModel"));

    // An update with a typed Err reply (certified): a session needs a model.
    let request = common::replica::greedy("ROMEO:", 5);
    let reply = agent.update(&id, "session_start").with_arg(Encode!(&request).unwrap()).call_and_wait().await.expect("session_start");
    let text = walsh_reply_text("session_start", &reply);
    assert!(text.contains("NoModel"), "session_start before an upload: {text}");

    // An argument the canister's decoder refuses traps it: reject code 5, IC0503.
    let error =
        agent.update(&id, "session_start").with_arg(b"DIDL\x00\x01\x71\x03abc".to_vec()).call_and_wait().await.expect_err("ill-typed argument");
    let reject = reject_of(error);
    assert_eq!(reject.reject_code, ic_transport_types::RejectCode::CanisterError);
    assert_eq!(reject.error_code.as_deref(), Some("IC0503"), "{}", reject.reject_message);

    // No such method: IC0536 (what icp-cli's http_request probe looks for; walsh has http_request).
    let error = agent.query(&id, "no_such_method").with_arg(Encode!().unwrap()).call().await.expect_err("no such method");
    assert_eq!(reject_of(error).error_code.as_deref(), Some("IC0536"));

    // No such canister: reject code 3, IC0301.
    let missing = ic_host::replica::canister_id_of(7);
    let error = agent.update(&missing, "model_info").with_arg(Encode!().unwrap()).call_and_wait().await.expect_err("no canister");
    let reject = reject_of(error);
    assert_eq!(reject.reject_code, ic_transport_types::RejectCode::DestinationInvalid);
    assert_eq!(reject.error_code.as_deref(), Some("IC0301"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_canister_sees_the_principal_each_identity_proves() {
    let server = server();
    let controller = ed25519(2);
    let controller_principal = controller.sender().unwrap();
    let admin = agent(&server.url, controller).await;
    let id = create_and_install(&admin, common::test_canister_wasm(), Encode!(&InitArg { greeting: "hi".into() }).unwrap()).await;

    async fn caller_seen(url: &str, id: Principal, identity: impl Identity + 'static) -> (Principal, Principal) {
        let expected = identity.sender().unwrap();
        let agent = agent(url, identity).await;
        // Through a query (signature-checked) and an update (certified): both must agree.
        let reply = agent.query(&id, "env").with_arg(Encode!().unwrap()).call().await.expect("env query");
        let env = Decode!(&reply, Env).unwrap();
        let count = agent.update(&id, "inc").with_arg(Encode!().unwrap()).call_and_wait().await.expect("inc update");
        assert!(Decode!(&count, u64).unwrap() >= 1);
        (expected, env.caller)
    }

    let (expected, seen) = caller_seen(&server.url, id, ed25519(3)).await;
    assert_eq!(seen, expected, "Ed25519");
    let (expected, seen) = caller_seen(&server.url, id, secp256k1(4)).await;
    assert_eq!(seen, expected, "secp256k1");
    let (expected, seen) = caller_seen(&server.url, id, AnonymousIdentity).await;
    assert_eq!(seen, Principal::anonymous(), "anonymous");
    assert_eq!(expected, Principal::anonymous());

    // A delegation chain root → middle → session: the canister sees the root's principal.
    let root = ed25519(5);
    let middle = secp256k1(6);
    let session = ed25519(7);
    let expiration = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos() as u64 + Duration::from_secs(600).as_nanos() as u64;
    let first = Delegation { pubkey: middle.public_key().unwrap(), expiration, targets: None, permissions: None };
    let second = Delegation { pubkey: session.public_key().unwrap(), expiration, targets: Some(vec![id]), permissions: None };
    let chain = vec![
        SignedDelegation { signature: root.sign_delegation(&first).unwrap().signature.unwrap(), delegation: first },
        SignedDelegation { signature: middle.sign_delegation(&second).unwrap().signature.unwrap(), delegation: second },
    ];
    let root_principal = root.sender().unwrap();
    let delegated = DelegatedIdentity::new_unchecked(root.public_key().unwrap(), Box::new(session), chain);
    let (expected, seen) = caller_seen(&server.url, id, delegated).await;
    assert_eq!(expected, root_principal);
    assert_eq!(seen, root_principal, "delegation chain");

    // The controller is the creator.
    let reply = admin.query(&id, "env").with_arg(Encode!().unwrap()).call().await.unwrap();
    let env = Decode!(&reply, Env).unwrap();
    assert_eq!(env.caller, controller_principal);
    assert!(env.caller_is_controller);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traps_and_rejects_carry_the_ic_codes() {
    let server = server();
    let admin = agent(&server.url, ed25519(8)).await;
    let id = create_and_install(&admin, common::test_canister_wasm(), Encode!(&InitArg { greeting: "hi".into() }).unwrap()).await;

    let error = admin.update(&id, "set_then_trap").with_arg(Encode!(&"k", &"v").unwrap()).call_and_wait().await.expect_err("traps");
    let reject = reject_of(error);
    assert_eq!(reject.reject_code, ic_transport_types::RejectCode::CanisterError);
    assert_eq!(reject.error_code.as_deref(), Some("IC0503"));
    assert!(reject.reject_message.starts_with(&format!("Error from Canister {id}: ")), "{}", reject.reject_message);
    // The trap rolled back the write.
    let reply = admin.query(&id, "get").with_arg(Encode!(&"k").unwrap()).call().await.unwrap();
    assert_eq!(Decode!(&reply, Option<String>).unwrap(), None);

    // The trap is in the canister log, which controllers read with fetch_canister_logs (a
    // query); what a query prints is not.
    admin.query(&id, "env").with_arg(Encode!().unwrap()).call().await.unwrap();
    let logs_arg = Encode!(&ic_management_canister_types::FetchCanisterLogsArgs { canister_id: id, filter: None }).unwrap();
    let reply = admin
        .query(&Principal::management_canister(), "fetch_canister_logs")
        .with_effective_canister_id(id)
        .with_arg(logs_arg.clone())
        .call()
        .await
        .expect("logs");
    let logs = Decode!(&reply, ic_management_canister_types::FetchCanisterLogsResult).unwrap().canister_log_records;
    let lines: Vec<String> = logs.iter().map(|r| String::from_utf8_lossy(&r.content).into_owned()).collect();
    assert!(lines.iter().any(|l| l.contains("[TRAP]: deliberate trap")), "{lines:?}");
    assert!(!lines.iter().any(|l| l.contains("env called")), "{lines:?}");
    assert!(logs.iter().all(|r| r.timestamp_nanos > 1_700_000_000_000_000_000), "wall-clock timestamps");
    let stranger = agent(&server.url, ed25519(10)).await;
    let error = stranger
        .query(&Principal::management_canister(), "fetch_canister_logs")
        .with_effective_canister_id(id)
        .with_arg(logs_arg)
        .call()
        .await
        .expect_err("logs are for controllers");
    assert_eq!(reject_of(error).reject_code, ic_transport_types::RejectCode::CanisterReject);

    let error = admin.update(&id, "reject_me").with_arg(Encode!(&"no thanks").unwrap()).call_and_wait().await.expect_err("rejects");
    let reject = reject_of(error);
    assert_eq!(reject.reject_code, ic_transport_types::RejectCode::CanisterReject);
    assert_eq!(reject.reject_message, "no thanks");

    // inspect_message refuses before execution: an uncertified (non-replicated) reject, IC0406.
    let error = admin.update(&id, "refused_by_inspect").with_arg(Encode!().unwrap()).call_and_wait().await.expect_err("refused");
    match error {
        ic_agent::AgentError::UncertifiedReject { reject, .. } => {
            assert_eq!(reject.reject_code, ic_transport_types::RejectCode::CanisterReject);
            assert_eq!(reject.error_code.as_deref(), Some("IC0406"), "{}", reject.reject_message);
        }
        other => panic!("expected a non-replicated rejection, got {other}"),
    }

    // Management: a non-controller may not read the status.
    let stranger = agent(&server.url, ed25519(9)).await;
    let arg = Encode!(&ic_management_canister_types::CanisterIdRecord { canister_id: id }).unwrap();
    let error = stranger
        .update(&Principal::management_canister(), "canister_status")
        .with_effective_canister_id(id)
        .with_arg(arg.clone())
        .call_and_wait()
        .await
        .expect_err("not a controller");
    assert_eq!(reject_of(error).error_code.as_deref(), Some("IC0512"));
    let reply = admin
        .update(&Principal::management_canister(), "canister_status")
        .with_effective_canister_id(id)
        .with_arg(arg)
        .call_and_wait()
        .await
        .expect("status");
    let status = Decode!(&reply, ic_management_canister_types::CanisterStatusResult).unwrap();
    assert_eq!(status.status, ic_management_canister_types::CanisterStatusType::Running);
    assert!(status.module_hash.is_some());
}
