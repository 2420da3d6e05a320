//! The certificates, state trees and signed query responses of `ic_host::http` as ic-agent 0.49
//! sees them: a minimal replica (the endpoints ic-agent uses, answering with the bodies of
//! `http::certificate` over trees of `http::state_tree`) serves a real `ic_agent::Agent` whose
//! default checks are all on (BLS certificate signatures, certificate freshness, query node
//! signatures with the canister-range check, DER prefixes). Envelope decoding and sender
//! authentication are not exercised here: the test server takes ic-agent's envelopes as given.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use candid::Principal;
use ic_agent::agent::{EffectiveId, RejectCode, RequestStatusResponse};
use ic_agent::identity::BasicIdentity;
use ic_agent::{Agent, AgentError, RequestId};
use ic_host::http::certificate;
use ic_host::http::keys::SubnetKeys;
use ic_host::http::state_tree::{
    ApiVersion, CanisterView, Endpoint, RequestStatusView, RequestView, StateSource, SubnetView, Visibility, check_paths, tree_for,
};
use ic_transport_types::{Envelope, EnvelopeContent};

const CANISTER: Principal = Principal::from_slice(&[0, 0, 0, 0, 0, 0, 0, 7, 1, 1]);
const MODULE_HASH: [u8; 32] = [0xab; 32];

fn controller_identity() -> BasicIdentity {
    BasicIdentity::from_raw_key(&[3; 32])
}

struct Replica {
    keys: SubnetKeys,
    subnet: SubnetView,
    canisters: HashMap<Principal, CanisterView>,
    requests: Mutex<HashMap<[u8; 32], RequestView>>,
    /// Added to the wall clock for `/time` and query signature timestamps.
    clock_offset_ns: i64,
}

impl StateSource for Replica {
    fn canister(&self, id: &Principal) -> Option<CanisterView> {
        self.canisters.get(id).cloned()
    }
    fn request(&self, id: &[u8; 32]) -> Option<RequestView> {
        self.requests.lock().unwrap().get(id).cloned()
    }
}

impl Replica {
    fn new(ranges: Vec<(Principal, Principal)>, clock_offset_ns: i64) -> Replica {
        use ic_agent::Identity;
        let keys = SubnetKeys::random();
        let subnet = SubnetView::new(&keys, "application", ranges);
        let canister = CanisterView {
            module_hash: Some(MODULE_HASH),
            controllers: vec![controller_identity().sender().unwrap()],
            metadata: vec![
                ("candid:service".to_string(), Visibility::Public, b"service : { echo : (text) -> (text) }".to_vec()),
                ("secret".to_string(), Visibility::Private, b"for controllers".to_vec()),
            ],
            certified_data: b"certified".to_vec(),
        };
        Replica { keys, subnet, canisters: HashMap::from([(CANISTER, canister)]), requests: Mutex::new(HashMap::new()), clock_offset_ns }
    }

    fn now_ns(&self) -> u64 {
        let wall = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos() as i64;
        (wall + self.clock_offset_ns) as u64
    }

    fn request_status_certificate(&self, request_id: &[u8; 32]) -> Vec<u8> {
        certificate::call_replied(&self.keys, tree_for(&[vec![b"request_status".to_vec(), request_id.to_vec()]], self.now_ns(), &self.subnet, self))
    }
}

/// Ranges covering every canister id with a zero first half, as the spec's probe did.
fn wide_ranges() -> Vec<(Principal, Principal)> {
    vec![(Principal::from_slice(&[0, 0, 0, 0, 0, 0, 0, 0, 1, 1]), Principal::from_slice(&[0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 1, 1]))]
}

fn envelope(body: &[u8]) -> EnvelopeContent {
    let envelope: Envelope = serde_cbor::from_slice(body).expect("an envelope from ic-agent");
    envelope.content.into_owned()
}

fn rid(content: &EnvelopeContent) -> [u8; 32] {
    *content.to_request_id()
}

fn cbor(body: Vec<u8>) -> Response {
    (StatusCode::OK, [("content-type", "application/cbor")], body).into_response()
}

async fn query(State(replica): State<Arc<Replica>>, Path(_ecid): Path<String>, body: Bytes) -> Response {
    let content = envelope(&body);
    let request_id = rid(&content);
    let EnvelopeContent::Query { method_name, arg, .. } = content else { return StatusCode::BAD_REQUEST.into_response() };
    let now = replica.now_ns();
    cbor(match method_name.as_str() {
        "echo" => certificate::query_reply(&replica.keys, &request_id, &arg, now),
        _ => certificate::query_reject(&replica.keys, &request_id, 5, "Canister trapped explicitly: no", "IC0503", now),
    })
}

async fn call(State(replica): State<Arc<Replica>>, Path(_ecid): Path<String>, body: Bytes) -> Response {
    let content = envelope(&body);
    let request_id = rid(&content);
    let EnvelopeContent::Call { method_name, arg, sender, canister_id, .. } = content else { return StatusCode::BAD_REQUEST.into_response() };
    let status = match method_name.as_str() {
        "echo" => RequestStatusView::Replied(arg),
        "reject" => RequestStatusView::Rejected { code: 4, message: "no thanks".to_string(), error_code: "IC0406".to_string() },
        "slow" => RequestStatusView::Processing,
        _ => return cbor(certificate::call_rejected(3, &format!("Canister {} has no method", canister_id.to_text()), "IC0301")),
    };
    let slow = status == RequestStatusView::Processing;
    replica.requests.lock().unwrap().insert(request_id, RequestView { sender, receiver: canister_id, status });
    if slow {
        let replica = replica.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            replica.requests.lock().unwrap().get_mut(&request_id).expect("stored").status = RequestStatusView::Replied(b"slowly".to_vec());
        });
        return StatusCode::ACCEPTED.into_response();
    }
    cbor(replica.request_status_certificate(&request_id))
}

fn read_state(replica: &Replica, endpoint: Endpoint, body: &[u8]) -> Response {
    let EnvelopeContent::ReadState { paths, sender, .. } = envelope(body) else { return StatusCode::BAD_REQUEST.into_response() };
    let paths: Vec<Vec<Vec<u8>>> = paths.iter().map(|path| path.iter().map(|label| label.as_bytes().to_vec()).collect()).collect();
    if let Err(e) = check_paths(&paths, endpoint, ApiVersion::V3, sender, None, replica, &replica.subnet) {
        return (StatusCode::from_u16(e.status).unwrap(), e.message).into_response();
    }
    cbor(certificate::read_state_response(&replica.keys, tree_for(&paths, replica.now_ns(), &replica.subnet, replica)))
}

async fn canister_read_state(State(replica): State<Arc<Replica>>, Path(ecid): Path<String>, body: Bytes) -> Response {
    read_state(&replica, Endpoint::Canister(Principal::from_text(ecid).unwrap()), &body)
}

async fn subnet_read_state(State(replica): State<Arc<Replica>>, Path(sid): Path<String>, body: Bytes) -> Response {
    read_state(&replica, Endpoint::Subnet(Principal::from_text(sid).unwrap()), &body)
}

async fn serve(replica: Arc<Replica>) -> SocketAddr {
    let app = Router::new()
        .route("/api/v3/canister/{ecid}/query", post(query))
        .route("/api/v4/canister/{ecid}/call", post(call))
        .route("/api/v3/canister/{ecid}/read_state", post(canister_read_state))
        .route("/api/v3/subnet/{sid}/read_state", post(subnet_read_state))
        .with_state(replica);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

/// A replica, its URL and an agent (the controller's identity) that trusts its root key.
async fn setup(ranges: Vec<(Principal, Principal)>, clock_offset_ns: i64) -> (Arc<Replica>, Agent, String) {
    let replica = Arc::new(Replica::new(ranges, clock_offset_ns));
    let url = format!("http://{}", serve(replica.clone()).await);
    let agent = Agent::builder().with_url(&url).with_identity(controller_identity()).build().unwrap();
    agent.set_root_key(replica.keys.root_key_der());
    (replica, agent, url)
}

#[tokio::test]
async fn queries_pass_ic_agents_node_signature_and_range_checks() {
    let (replica, agent, _url) = setup(wide_ranges(), 0).await;
    assert_eq!(agent.query(&CANISTER, "echo").with_arg(b"hello".to_vec()).call().await.unwrap(), b"hello");
    match agent.query(&CANISTER, "trap").call().await {
        Err(AgentError::UncertifiedReject { reject, .. }) => {
            assert_eq!(reject.reject_code, RejectCode::CanisterError);
            assert_eq!(reject.reject_message, "Canister trapped explicitly: no");
            assert_eq!(reject.error_code.as_deref(), Some("IC0503"));
        }
        other => panic!("{other:?}"),
    }
    // What the agent learned about the subnet from `read_state ["subnet"]`.
    let subnet = agent.get_subnet_by_canister(&CANISTER).await.unwrap();
    assert_eq!(subnet.id(), replica.keys.subnet_id());
    assert_eq!(subnet.get_node_key(&replica.keys.node_id()), Some(&replica.keys.node_key_der()[..]));
    assert!(subnet.contains_canister(&CANISTER));
    assert_eq!(subnet.self_reported_key(), &replica.keys.root_key_der()[..]);
}

#[tokio::test]
async fn updates_complete_through_verified_certificates() {
    let (_replica, agent, _url) = setup(wide_ranges(), 0).await;
    assert_eq!(agent.update(&CANISTER, "echo").with_arg(b"abc".to_vec()).call_and_wait().await.unwrap(), b"abc");
    match agent.update(&CANISTER, "reject").call_and_wait().await {
        Err(AgentError::CertifiedReject { reject, .. }) => {
            assert_eq!(
                (reject.reject_code, reject.reject_message.as_str(), reject.error_code.as_deref()),
                (RejectCode::CanisterReject, "no thanks", Some("IC0406"))
            );
        }
        other => panic!("{other:?}"),
    }
    match agent.update(&CANISTER, "absent").call_and_wait().await {
        Err(AgentError::UncertifiedReject { reject, .. }) => {
            assert_eq!((reject.reject_code, reject.error_code.as_deref()), (RejectCode::DestinationInvalid, Some("IC0301")))
        }
        other => panic!("{other:?}"),
    }
    // 202, then polling `read_state [request_status, rid]` until it is replied.
    assert_eq!(agent.update(&CANISTER, "slow").call_and_wait().await.unwrap(), b"slowly");
    // An unknown request is provably absent: the agent reads it as Unknown.
    let (status, _) = agent.request_status_raw(&RequestId::new(&[9; 32]), CANISTER).await.unwrap();
    assert_eq!(status, RequestStatusResponse::Unknown);
}

#[tokio::test]
async fn canister_information_reads_as_ic_agent_looks_it_up() {
    let (replica, agent, url) = setup(wide_ranges(), 0).await;
    assert_eq!(agent.read_state_canister_module_hash(CANISTER).await.unwrap(), MODULE_HASH);
    assert_eq!(agent.read_state_canister_controllers(CANISTER).await.unwrap(), replica.canisters[&CANISTER].controllers);
    assert_eq!(agent.read_state_canister_metadata(CANISTER, "candid:service").await.unwrap(), b"service : { echo : (text) -> (text) }");
    assert_eq!(agent.read_state_canister_metadata(CANISTER, "secret").await.unwrap(), b"for controllers");
    assert!(matches!(agent.read_state_canister_metadata(CANISTER, "missing").await, Err(AgentError::LookupPathAbsent(_))));
    // Private metadata to a non-controller: the replica's 403.
    let anonymous = Agent::builder().with_url(&url).build().unwrap();
    anonymous.set_root_key(replica.keys.root_key_der());
    match anonymous.read_state_canister_metadata(CANISTER, "secret").await {
        Err(AgentError::HttpError(payload)) => {
            assert_eq!(payload.status, 403);
            assert_eq!(
                String::from_utf8(payload.content).unwrap(),
                "Custom section secret can only be requested by the controllers of the canister."
            );
        }
        other => panic!("{other:?}"),
    }
    // Another canister's information at this canister's endpoint: 400.
    let other = Principal::from_slice(&[0, 0, 0, 0, 0, 0, 0, 8, 1, 1]);
    let paths = vec![vec!["canister".into(), ic_agent::hash_tree::Label::from_bytes(other.as_slice()), "module_hash".into()]];
    assert!(matches!(agent.read_state_raw(paths, CANISTER).await, Err(AgentError::HttpError(p)) if p.status == 400));
}

#[tokio::test]
async fn subnet_reads_give_keys_and_ranges() {
    let (replica, agent, _url) = setup(wide_ranges(), 0).await;
    let sid = replica.keys.subnet_id();
    // `icp deploy --subnet`: `[canister_ranges/<sid>], [subnet/<sid>]` at the subnet endpoint.
    let subnet = agent.fetch_subnet_by_id(&sid).await.unwrap();
    assert_eq!(subnet.id(), sid);
    assert!(subnet.contains_canister(&CANISTER));
    assert!(subnet.contains_node(&replica.keys.node_id()));
    assert_eq!(subnet.subnet_type(), Some(&ic_agent::agent::SubnetType::Application));
    assert_eq!(agent.read_state_subnet_canister_ranges(sid).await.unwrap(), wide_ranges());
}

#[tokio::test]
async fn data_certificates_verify_with_agent_verify() {
    let (replica, agent, _url) = setup(wide_ranges(), 0).await;
    let bytes = certificate::data_certificate(&replica.keys, CANISTER, b"certified", replica.now_ns());
    let cert: ic_agent::Certificate = serde_cbor::from_slice(&bytes).unwrap();
    agent.verify(&cert, CANISTER).unwrap();
    agent.verify(&cert, EffectiveId::Canister(CANISTER)).unwrap();
    // Signed by another key: refused.
    let forged: ic_agent::Certificate =
        serde_cbor::from_slice(&certificate::data_certificate(&SubnetKeys::random(), CANISTER, b"certified", replica.now_ns())).unwrap();
    assert!(matches!(agent.verify(&forged, CANISTER), Err(AgentError::CertificateVerificationFailed())));
}

#[tokio::test]
async fn another_root_key_fails_every_check() {
    let (_replica, agent, _url) = setup(wide_ranges(), 0).await;
    agent.set_root_key(SubnetKeys::random().root_key_der());
    assert!(matches!(agent.read_state_canister_module_hash(CANISTER).await, Err(AgentError::CertificateVerificationFailed())));
    assert!(matches!(agent.update(&CANISTER, "echo").call_and_wait().await, Err(AgentError::CertificateVerificationFailed())));
    // The query's subnet lookup fails the same way (and the subnet id no longer matches).
    assert!(agent.query(&CANISTER, "echo").call().await.is_err());
}

#[tokio::test]
async fn stale_time_is_refused_and_future_time_accepted() {
    let (_replica, agent, _url) = setup(wide_ranges(), -10 * 60 * 1_000_000_000).await;
    assert!(matches!(agent.read_state_canister_module_hash(CANISTER).await, Err(AgentError::CertificateOutdated(_))));
    assert!(matches!(agent.query(&CANISTER, "echo").call().await, Err(AgentError::CertificateOutdated(_))));
    let (_replica, agent, _url) = setup(wide_ranges(), 10 * 60 * 1_000_000_000).await;
    assert_eq!(agent.read_state_canister_module_hash(CANISTER).await.unwrap(), MODULE_HASH);
}

#[tokio::test]
async fn a_canister_outside_the_ranges_is_not_authorized_for_queries() {
    let narrow = vec![(Principal::from_slice(&[0, 0, 0, 0, 0, 0, 1, 0, 1, 1]), Principal::from_slice(&[0, 0, 0, 0, 0, 0, 2, 0, 1, 1]))];
    let (_replica, agent, _url) = setup(narrow, 0).await;
    assert!(matches!(agent.query(&CANISTER, "echo").call().await, Err(AgentError::CertificateNotAuthorized())));
    // Updates are not range-checked without a delegation (as the spec file notes).
    assert_eq!(agent.update(&CANISTER, "echo").with_arg(b"x".to_vec()).call_and_wait().await.unwrap(), b"x");
}
