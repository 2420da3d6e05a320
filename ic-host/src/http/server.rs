//! The endpoints of `ic-host serve`: the IC's HTTP interface (spec "HTTPS Interface") over a
//! [`Replica`], on 127.0.0.1. Thin: decode and authenticate ([`envelope`], [`auth`]), hand the
//! message to the replica on a blocking thread, encode and certify the answer
//! ([`certificate`], [`state_tree`]). Endpoint by endpoint, what each client sends and checks
//! is in `../shared/spec/ic-http-interface.md` §2-§5.

// Handlers refuse with ready axum responses; they are built once per refused request.
#![allow(clippy::result_large_err)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use candid::Principal;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::auth;
use super::certificate;
use super::envelope::{self, Content, Envelope, RequestKind};
use super::gateway::{self, Gateway};
use super::keys::SubnetKeys;
use super::state_tree::{self, ApiVersion, CanisterView, Endpoint, RequestStatusView, RequestView, StateSource, SubnetView, Visibility};
use crate::replica::management;
use crate::replica::reject::{CallResult, Reject};
use crate::replica::{MAX_INGRESS_BYTES, Replica, ReplicaConfig, RequestStatus, now_ns};

/// Bodies above this are refused with 413 before they are read in full (the largest
/// legitimate request is an `install_code` of a module just under the 2 MiB ingress limit).
pub const MAX_BODY_BYTES: usize = 5 * 1024 * 1024;
/// Connections served at once; more wait in the kernel's accept queue.
pub const MAX_CONNECTIONS: usize = 256;
/// How long a synchronous call (v3/v4) waits for its message before answering 202, after
/// which clients poll read_state (the IC's replicas wait about 10 s).
const SYNC_CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// How often due global timers run.
const TIMER_PERIOD: Duration = Duration::from_millis(100);
/// How often changes reach the state directory (and always at shutdown).
const PERSIST_PERIOD: Duration = Duration::from_secs(1);

pub struct ServeConfig {
    pub port: u16,
    pub state_dir: Option<PathBuf>,
    pub controller: Option<Principal>,
}

/// The replica and its keys, shared by all handlers.
pub struct Subnet {
    pub replica: Replica,
    pub keys: SubnetKeys,
}

impl Subnet {
    pub fn new(state_dir: Option<PathBuf>, controller: Option<Principal>) -> anyhow::Result<Subnet> {
        let keys = SubnetKeys::load_or_create(state_dir.as_deref())?;
        let replica = Replica::open(ReplicaConfig { state_dir, extra_controller: controller }, keys.subnet_id())?;
        Ok(Subnet { replica, keys })
    }

    fn subnet_view(&self) -> SubnetView {
        SubnetView::new(&self.keys, "application", crate::replica::canister_ranges())
    }
}

impl StateSource for Replica {
    fn canister(&self, id: &Principal) -> Option<CanisterView> {
        let slot = Replica::canister(self, id)?;
        let published = slot.published.read().unwrap_or_else(|e| e.into_inner()).clone();
        Some(CanisterView {
            module_hash: published.module_hash,
            controllers: published.controllers,
            metadata: published
                .metadata
                .into_iter()
                .map(|(name, public, bytes)| (name, if public { Visibility::Public } else { Visibility::Private }, bytes))
                .collect(),
            certified_data: published.certified_data,
        })
    }

    fn request(&self, id: &[u8; 32]) -> Option<RequestView> {
        let record = Replica::request(self, id)?;
        let status = match record.status {
            RequestStatus::Processing => RequestStatusView::Processing,
            RequestStatus::Done(Ok(reply)) => RequestStatusView::Replied(reply),
            RequestStatus::Done(Err(r)) => RequestStatusView::Rejected { code: r.code as u64, message: r.message, error_code: r.error_code },
        };
        Some(RequestView { sender: record.sender, receiver: record.receiver, status })
    }
}

/// A running server (for tests: drop it or call [`RunningServer::shutdown`] to stop).
pub struct RunningServer {
    pub url: String,
    pub addr: SocketAddr,
    pub subnet: Arc<Subnet>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl RunningServer {
    /// Stops accepting, finishes running requests, persists, and returns.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for RunningServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Starts the server on its own runtime thread and returns once it listens.
pub fn start(config: ServeConfig) -> anyhow::Result<RunningServer> {
    let subnet = Arc::new(Subnet::new(config.state_dir.clone(), config.controller)?);
    // Bound here (not on the server's runtime) so the caller may itself be inside a runtime,
    // and so the address is known when this returns.
    let std_listener = std::net::TcpListener::bind(("127.0.0.1", config.port))?;
    std_listener.set_nonblocking(true)?;
    let addr = std_listener.local_addr()?;
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let served = subnet.clone();
    let gateway = Arc::new(Gateway::new(format!("http://{addr}")));
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().worker_threads(2).thread_name("ic-host-serve").build()?;
    let thread = std::thread::Builder::new().name("ic-host-serve".into()).spawn(move || {
        runtime.block_on(async move {
            let Ok(listener) = TcpListener::from_std(std_listener) else { return };
            let timers = tokio::spawn(run_timers(served.clone()));
            let persister = tokio::spawn(run_persister(served.clone()));
            let app = router(served.clone(), gateway);
            let listener = BoundedListener { inner: listener, permits: Arc::new(Semaphore::new(MAX_CONNECTIONS)) };
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = rx.await;
                })
                .await;
            timers.abort();
            persister.abort();
            // Everything committed reaches the state directory before the server exits.
            let s = served.clone();
            if let Ok(Err(e)) = tokio::task::spawn_blocking(move || s.replica.persist(true)).await {
                eprintln!("ic-host serve: writing the state directory failed: {e}");
            }
        });
    })?;
    Ok(RunningServer { url: format!("http://{addr}"), addr, subnet, shutdown: Some(tx), thread: Some(thread) })
}

async fn run_timers(subnet: Arc<Subnet>) {
    let mut tick = tokio::time::interval(TIMER_PERIOD);
    loop {
        tick.tick().await;
        let s = subnet.clone();
        let _ = tokio::task::spawn_blocking(move || s.replica.run_timers()).await;
    }
}

/// Writes changes to the state directory once a second, as a replica checkpoints.
async fn run_persister(subnet: Arc<Subnet>) {
    let mut tick = tokio::time::interval(PERSIST_PERIOD);
    let mut reported = false;
    loop {
        tick.tick().await;
        let s = subnet.clone();
        match tokio::task::spawn_blocking(move || s.replica.persist(false)).await {
            Ok(Err(e)) if !reported => {
                eprintln!("ic-host serve: writing the state directory failed (will retry): {e}");
                reported = true;
            }
            Ok(Ok(())) => reported = false,
            _ => {}
        }
    }
}

/// The IC's API; every other request goes to the HTTP gateway ([`gateway::fallback`]).
pub fn router(subnet: Arc<Subnet>, gateway: Arc<Gateway>) -> Router {
    Router::new()
        .route("/api/v2/status", get(status))
        .route("/api/v2/canister/{ecid}/call", post(call_v2))
        .route("/api/v3/canister/{ecid}/call", post(call_sync))
        .route("/api/v4/canister/{ecid}/call", post(call_sync))
        .route("/api/v4/subnet/{sid}/call", post(subnet_call))
        .route("/api/v2/canister/{ecid}/query", post(query))
        .route("/api/v3/canister/{ecid}/query", post(query))
        .route("/api/v2/canister/{ecid}/read_state", post(read_state_canister_handler::<false>))
        .route("/api/v3/canister/{ecid}/read_state", post(read_state_canister_handler::<true>))
        .route("/api/v2/subnet/{sid}/read_state", post(read_state_subnet_handler::<false>))
        .route("/api/v3/subnet/{sid}/read_state", post(read_state_subnet_handler::<true>))
        .fallback(move |request| gateway::fallback(gateway.clone(), request))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(axum::middleware::from_fn(cross_origin))
        .with_state(subnet)
}

/// The API answers pages of any origin, as the IC's boundary nodes do (a dapp served from
/// elsewhere, or `npm run dev`, calls the replica directly): preflights of `/api/` get 204 with
/// the allowed methods and headers, and every API response allows any origin.
async fn cross_origin(request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let api = request.uri().path().starts_with("/api/");
    if api && request.method() == axum::http::Method::OPTIONS {
        let mut response = StatusCode::NO_CONTENT.into_response();
        let headers = response.headers_mut();
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
        headers.insert(header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static("GET, POST, HEAD, OPTIONS"));
        headers.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, HeaderValue::from_static("content-type, x-requested-with"));
        headers.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("7200"));
        return response;
    }
    let mut response = next.run(request).await;
    if api {
        response.headers_mut().insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    }
    response
}

/// A 4xx answer with a text body, as the replica gives for requests it refuses to process.
fn refuse(status: StatusCode, text: impl Into<String>) -> Response {
    (status, [(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"))], text.into()).into_response()
}

fn cbor(status: StatusCode, body: Vec<u8>) -> Response {
    (status, [(header::CONTENT_TYPE, HeaderValue::from_static("application/cbor"))], body).into_response()
}

fn parse_principal(text: &str, what: &str) -> Result<Principal, Response> {
    Principal::from_text(text).map_err(|e| refuse(StatusCode::BAD_REQUEST, format!("Invalid {what} {text:?}: {e}")))
}

async fn status(State(subnet): State<Arc<Subnet>>) -> Response {
    #[derive(serde::Serialize)]
    struct Status {
        #[serde(with = "serde_bytes")]
        root_key: Vec<u8>,
        replica_health_status: &'static str,
        impl_version: &'static str,
        ic_api_version: &'static str,
        certified_height: u64,
    }
    let status = Status {
        root_key: subnet.keys.root_key_der(),
        replica_health_status: "healthy",
        impl_version: concat!("ic-host ", env!("CARGO_PKG_VERSION")),
        ic_api_version: "0.18.0",
        certified_height: subnet.replica.height(),
    };
    cbor(StatusCode::OK, to_cbor(&status))
}

/// CBOR with the self-describe tag, as replicas send it.
pub fn to_cbor<T: serde::Serialize>(value: &T) -> Vec<u8> {
    let mut out = Vec::new();
    let mut serializer = serde_cbor::Serializer::new(&mut out);
    serializer.self_describe().expect("writing to a Vec cannot fail");
    value.serialize(&mut serializer).expect("these values always serialize");
    out
}

/// Decodes and authenticates a request body of `kind` sent to `ecid`.
fn admit(subnet: &Subnet, body: &[u8], kind: RequestKind, ecid: Principal) -> Result<(Envelope, auth::Authenticated), Response> {
    let _ = subnet;
    let envelope = envelope::decode(body, kind).map_err(|e| refuse(status_code(e.http_status()), e.to_string()))?;
    let authenticated = auth::authenticate(&envelope, now_ns(), ecid).map_err(|e| refuse(status_code(e.http_status()), e.to_string()))?;
    Ok((envelope, authenticated))
}

fn status_code(code: u16) -> StatusCode {
    StatusCode::from_u16(code).unwrap_or(StatusCode::BAD_REQUEST)
}

/// The canister a call or query goes to must be the URL's (management calls: the canister they
/// are about), as the replica routes by the effective canister id.
fn check_effective(canister_id: Principal, method: &str, arg: &[u8], ecid: Principal) -> Result<(), Response> {
    let target = if canister_id == Principal::management_canister() { management::effective_canister_id(method, arg) } else { Some(canister_id) };
    match target {
        Some(target) if target != ecid => {
            Err(refuse(StatusCode::BAD_REQUEST, format!("Specified CanisterId {target} does not match effective canister id in URL {ecid}")))
        }
        _ => Ok(()),
    }
}

struct CallRequest {
    request_id: [u8; 32],
    sender: Principal,
    canister_id: Principal,
    method: String,
    arg: Vec<u8>,
    expiry: u64,
}

fn call_request(subnet: &Subnet, body: &[u8], ecid: Principal) -> Result<CallRequest, Response> {
    let (envelope, authenticated) = admit(subnet, body, RequestKind::Call, ecid)?;
    let sender = authenticated.sender;
    let Content::Call { canister_id, method_name, arg, ingress_expiry, .. } = envelope.content else {
        return Err(refuse(StatusCode::BAD_REQUEST, "expected a call request"));
    };
    if body.len() > MAX_INGRESS_BYTES {
        return Err(refuse(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "Request {} is too large. Message byte size {} is larger than the max allowed {MAX_INGRESS_BYTES}.",
                envelope.request_id,
                body.len()
            ),
        ));
    }
    check_effective(canister_id, &method_name, &arg, ecid)?;
    Ok(CallRequest { request_id: envelope.request_id.0, sender, canister_id, method: method_name, arg, expiry: ingress_expiry })
}

/// Starts executing `request` unless the same request was seen before (after the checks
/// before induction, whose refusal is returned); the handle resolves when the message
/// finished and its status is recorded.
async fn submit(subnet: &Arc<Subnet>, request: CallRequest) -> Result<tokio::task::JoinHandle<()>, Reject> {
    let id = request.request_id;
    if subnet.replica.begin_request(id, request.sender, request.canister_id, request.expiry).is_some() {
        // The IC executes a request once; a resubmission just waits for (or reads) its status.
        let s = subnet.clone();
        return Ok(tokio::spawn(async move {
            while matches!(s.replica.request(&id).map(|r| r.status), Some(RequestStatus::Processing)) {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }));
    }
    let s = subnet.clone();
    let (sender, canister, method, arg) = (request.sender, request.canister_id, request.method.clone(), request.arg.clone());
    let admitted = tokio::task::spawn_blocking(move || s.replica.admit_call(sender, &canister, &method, &arg)).await;
    let admitted = admitted.unwrap_or_else(|e| {
        Err(Reject::new(crate::replica::reject::ErrorCode::CanisterTrapped, format!("admitting the message failed inside the host: {e}")))
    });
    if let Err(reject) = admitted {
        subnet.replica.forget_request(&id);
        return Err(reject);
    }
    let s = subnet.clone();
    Ok(tokio::task::spawn_blocking(move || {
        let result = s.replica.call(request.sender, request.canister_id, &request.method, &request.arg);
        s.replica.finish_request(request.request_id, result);
    }))
}

/// A call refused before execution: v3/v4 answer `non_replicated_rejection`, v2 a reject body.
fn non_replicated(reject: Reject, v2: bool) -> Response {
    let body = if v2 {
        certificate::call_rejected_v2(reject.code as u64, &reject.message, &reject.error_code)
    } else {
        certificate::call_rejected(reject.code as u64, &reject.message, &reject.error_code)
    };
    cbor(StatusCode::OK, body)
}

async fn call_sync(State(subnet): State<Arc<Subnet>>, Path(ecid): Path<String>, body: Bytes) -> Response {
    let ecid = match parse_principal(&ecid, "effective canister id") {
        Ok(p) => p,
        Err(r) => return r,
    };
    let request = match call_request(&subnet, &body, ecid) {
        Ok(r) => r,
        Err(r) => return r,
    };
    let id = request.request_id;
    let handle = match submit(&subnet, request).await {
        Ok(h) => h,
        Err(reject) => return non_replicated(reject, false),
    };
    match tokio::time::timeout(SYNC_CALL_TIMEOUT, handle).await {
        Ok(_) => {
            let paths = vec![vec![b"request_status".to_vec(), id.to_vec()]];
            let tree = state_tree::tree_for(&paths, now_ns(), &subnet.subnet_view(), &subnet.replica);
            cbor(StatusCode::OK, certificate::call_replied(&subnet.keys, tree))
        }
        // Still running: the client polls read_state for the request status.
        Err(_) => StatusCode::ACCEPTED.into_response(),
    }
}

async fn call_v2(State(subnet): State<Arc<Subnet>>, Path(ecid): Path<String>, body: Bytes) -> Response {
    let ecid = match parse_principal(&ecid, "effective canister id") {
        Ok(p) => p,
        Err(r) => return r,
    };
    let request = match call_request(&subnet, &body, ecid) {
        Ok(r) => r,
        Err(r) => return r,
    };
    match submit(&subnet, request).await {
        Ok(_) => StatusCode::ACCEPTED.into_response(),
        Err(reject) => non_replicated(reject, true),
    }
}

/// `/api/v4/subnet/<sid>/call`: only the management canister's `create_canister`, which has
/// no canister to route by.
async fn subnet_call(State(subnet): State<Arc<Subnet>>, Path(sid): Path<String>, body: Bytes) -> Response {
    let sid = match parse_principal(&sid, "subnet id") {
        Ok(p) => p,
        Err(r) => return r,
    };
    if sid != subnet.keys.subnet_id() {
        return refuse(StatusCode::NOT_FOUND, format!("Subnet {sid} not found; this replica is subnet {}", subnet.keys.subnet_id()));
    }
    let (envelope, sender) = match admit(&subnet, &body, RequestKind::Call, sid) {
        Ok((envelope, authenticated)) => (envelope, authenticated.sender),
        Err(r) => return r,
    };
    let Content::Call { canister_id, method_name, arg, ingress_expiry, .. } = envelope.content else {
        return refuse(StatusCode::BAD_REQUEST, "expected a call request");
    };
    if canister_id != Principal::management_canister() || method_name != "create_canister" {
        return refuse(
            StatusCode::BAD_REQUEST,
            format!("Only the management canister's create_canister can be called at a subnet, not {canister_id}.{method_name}"),
        );
    }
    let request = CallRequest { request_id: envelope.request_id.0, sender, canister_id, method: method_name, arg, expiry: ingress_expiry };
    let id = request.request_id;
    let handle = match submit(&subnet, request).await {
        Ok(h) => h,
        Err(reject) => return non_replicated(reject, false),
    };
    let _ = handle.await;
    let paths = vec![vec![b"request_status".to_vec(), id.to_vec()]];
    let tree = state_tree::tree_for(&paths, now_ns(), &subnet.subnet_view(), &subnet.replica);
    cbor(StatusCode::OK, certificate::call_replied(&subnet.keys, tree))
}

async fn query(State(subnet): State<Arc<Subnet>>, Path(ecid): Path<String>, body: Bytes) -> Response {
    let ecid = match parse_principal(&ecid, "effective canister id") {
        Ok(p) => p,
        Err(r) => return r,
    };
    let (envelope, sender) = match admit(&subnet, &body, RequestKind::Query, ecid) {
        Ok((envelope, authenticated)) => (envelope, authenticated.sender),
        Err(r) => return r,
    };
    let Content::Query { canister_id, method_name, arg, .. } = envelope.content else {
        return refuse(StatusCode::BAD_REQUEST, "expected a query request");
    };
    if let Err(r) = check_effective(canister_id, &method_name, &arg, ecid) {
        return r;
    }
    let s = subnet.clone();
    let query = move || {
        // Non-replicated queries see a certificate of the canister's certified data.
        let certify = |data: &[u8]| certificate::data_certificate(&s.keys, canister_id, data, now_ns());
        s.replica.query(sender, canister_id, &method_name, &arg, certify)
    };
    let result: CallResult = match tokio::task::spawn_blocking(query).await {
        Ok(result) => result,
        Err(e) => return refuse(StatusCode::INTERNAL_SERVER_ERROR, format!("the query failed inside the host: {e}")),
    };
    let id = envelope.request_id.0;
    let body = match result {
        Ok(reply) => certificate::query_reply(&subnet.keys, &id, &reply, now_ns()),
        Err(r) => certificate::query_reject(&subnet.keys, &id, r.code as u64, &r.message, &r.error_code, now_ns()),
    };
    cbor(StatusCode::OK, body)
}

/// `/api/v{2,3}/canister/<ecid>/read_state` (`V3`: which version's path rules apply).
async fn read_state_canister_handler<const V3: bool>(State(subnet): State<Arc<Subnet>>, Path(ecid): Path<String>, body: Bytes) -> Response {
    read_state_canister(&subnet, &ecid, &body, if V3 { ApiVersion::V3 } else { ApiVersion::V2 })
}

/// `/api/v{2,3}/subnet/<sid>/read_state`.
async fn read_state_subnet_handler<const V3: bool>(State(subnet): State<Arc<Subnet>>, Path(sid): Path<String>, body: Bytes) -> Response {
    read_state_subnet(&subnet, &sid, &body, if V3 { ApiVersion::V3 } else { ApiVersion::V2 })
}

fn read_state_canister(subnet: &Subnet, ecid: &str, body: &[u8], version: ApiVersion) -> Response {
    match parse_principal(ecid, "effective canister id") {
        Ok(ecid) => read_state(subnet, body, Endpoint::Canister(ecid), version, ecid),
        Err(r) => r,
    }
}

fn read_state_subnet(subnet: &Subnet, sid: &str, body: &[u8], version: ApiVersion) -> Response {
    match parse_principal(sid, "subnet id") {
        Ok(sid) if sid == subnet.keys.subnet_id() => read_state(subnet, body, Endpoint::Subnet(sid), version, sid),
        Ok(sid) => refuse(StatusCode::NOT_FOUND, format!("Subnet {sid} not found; this replica is subnet {}", subnet.keys.subnet_id())),
        Err(r) => r,
    }
}

fn read_state(subnet: &Subnet, body: &[u8], endpoint: Endpoint, version: ApiVersion, effective: Principal) -> Response {
    let (envelope, authenticated) = match admit(subnet, body, RequestKind::ReadState, effective) {
        Ok(x) => x,
        Err(r) => return r,
    };
    let sender = authenticated.sender;
    let Content::ReadState { paths, .. } = envelope.content else {
        return refuse(StatusCode::BAD_REQUEST, "expected a read_state request");
    };
    let view = subnet.subnet_view();
    if let Err(e) = state_tree::check_paths(&paths, endpoint, version, sender, authenticated.targets.as_deref(), &subnet.replica, &view) {
        return refuse(StatusCode::from_u16(e.status).unwrap_or(StatusCode::BAD_REQUEST), e.message);
    }
    let tree = state_tree::tree_for(&paths, now_ns(), &view, &subnet.replica);
    cbor(StatusCode::OK, certificate::read_state_response(&subnet.keys, tree))
}

/// A TCP listener that serves at most [`MAX_CONNECTIONS`] connections at once.
struct BoundedListener {
    inner: TcpListener,
    permits: Arc<Semaphore>,
}

struct BoundedStream {
    stream: TcpStream,
    _permit: OwnedSemaphorePermit,
}

impl axum::serve::Listener for BoundedListener {
    type Io = BoundedStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (BoundedStream, SocketAddr) {
        let permit = self.permits.clone().acquire_owned().await.expect("the semaphore is never closed");
        loop {
            match self.inner.accept().await {
                Ok((stream, addr)) => return (BoundedStream { stream, _permit: permit }, addr),
                // Out of file descriptors and the like: wait instead of spinning.
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.inner.local_addr()
    }
}

impl AsyncRead for BoundedStream {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for BoundedStream {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// Blocks until SIGINT or SIGTERM (what `icp network stop` or a test harness sends).
pub fn wait_for_shutdown_signal() {
    let Ok(runtime) = tokio::runtime::Builder::new_current_thread().enable_all().build() else { return };
    runtime.block_on(async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending::<()>().await } } => {}
        }
    });
}
