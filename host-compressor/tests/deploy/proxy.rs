//! A recording HTTP proxy in front of `ic-host serve`: every request is forwarded unchanged, and
//! every call that reaches the replica is logged from its CBOR envelope (method, target, argument
//! size; for `upload_chunk` the kind, offset and length the canister is sent; for `install_code`
//! the module). A gate can hold back `upload_chunk` calls from an offset on: they are never
//! forwarded, as if the connection had died, so that a test can kill an upload midway.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use candid::{CandidType, Deserialize, Principal};

#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub canister: Principal,
    /// The argument itself when it is small (not chunks or modules).
    pub small_arg: Option<Vec<u8>>,
    /// upload_chunk: (kind, offset, length).
    pub chunk: Option<(Kind, u64, usize)>,
    /// install_code: (mode, module bytes).
    pub install: Option<(String, Vec<u8>)>,
}

#[derive(CandidType, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Model,
    Tokenizer,
}

#[derive(Deserialize)]
struct Envelope {
    content: Content,
}

#[derive(Deserialize)]
struct Content {
    request_type: String,
    canister_id: serde_bytes::ByteBuf,
    method_name: Option<String>,
    arg: Option<serde_bytes::ByteBuf>,
}

struct Shared {
    upstream: String,
    client: reqwest::Client,
    log: Mutex<Vec<Seen>>,
    gate: AtomicU64,
    held: AtomicUsize,
}

pub struct Proxy {
    pub url: String,
    shared: Arc<Shared>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Proxy {
    pub fn start(upstream: &str) -> Proxy {
        let shared = Arc::new(Shared {
            upstream: upstream.to_string(),
            client: reqwest::Client::new(),
            log: Mutex::new(Vec::new()),
            gate: AtomicU64::new(u64::MAX),
            held: AtomicUsize::new(0),
        });
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let app = axum::Router::new().fallback(forward).with_state(shared.clone());
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                let _ = axum::serve(listener, app)
                    .with_graceful_shutdown(async move {
                        let _ = rx.await;
                    })
                    .await;
            });
            // Held requests are dropped with the runtime, never forwarded.
            runtime.shutdown_background();
        });
        Proxy { url, shared, shutdown: Some(tx), thread: Some(thread) }
    }

    pub fn log(&self) -> Vec<Seen> {
        self.shared.log.lock().unwrap().clone()
    }

    pub fn clear(&self) {
        self.shared.log.lock().unwrap().clear();
    }

    /// Holds back (never forwards) upload_chunk calls at `offset` or later.
    pub fn hold_chunks_from(&self, offset: u64) {
        self.shared.gate.store(offset, Ordering::SeqCst);
    }

    pub fn open(&self) {
        self.shared.gate.store(u64::MAX, Ordering::SeqCst);
    }

    pub fn held(&self) -> usize {
        self.shared.held.load(Ordering::SeqCst)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        // Held requests keep their connections open: do not wait for a graceful end.
        drop(self.thread.take());
    }
}

fn record(body: &[u8]) -> Option<Seen> {
    let envelope: Envelope = serde_cbor::from_slice(body).ok()?;
    let c = envelope.content;
    if c.request_type != "call" {
        return None;
    }
    let method = c.method_name?;
    let canister = Principal::from_slice(&c.canister_id);
    let arg = c.arg.map(|a| a.into_vec()).unwrap_or_default();
    let chunk = (method == "upload_chunk" && canister != Principal::management_canister())
        .then(|| candid::decode_args::<(Kind, u64, serde_bytes::ByteBuf)>(&arg).ok().map(|(k, o, b)| (k, o, b.len())))
        .flatten();
    let install = (method == "install_code" && canister == Principal::management_canister())
        .then(|| candid::decode_one::<ic_management_canister_types::InstallCodeArgs>(&arg).ok().map(|a| (format!("{:?}", a.mode), a.wasm_module)))
        .flatten();
    let small_arg = (arg.len() <= 256).then(|| arg.clone());
    Some(Seen { method, canister, small_arg, chunk, install })
}

async fn forward(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let Ok(body) = axum::body::to_bytes(body, 8 << 20).await else { return StatusCode::PAYLOAD_TOO_LARGE.into_response() };
    if parts.uri.path().ends_with("/call")
        && let Some(seen) = record(&body)
    {
        if let Some((_, offset, _)) = seen.chunk
            && offset >= shared.gate.load(Ordering::SeqCst)
        {
            shared.held.fetch_add(1, Ordering::SeqCst);
            std::future::pending::<()>().await;
        }
        shared.log.lock().unwrap().push(seen);
    }
    let url = format!("{}{}", shared.upstream, parts.uri.path_and_query().map_or("/", |p| p.as_str()));
    let mut upstream = shared.client.request(parts.method.clone(), url).body(Bytes::from(body.to_vec()));
    if let Some(ct) = parts.headers.get(header::CONTENT_TYPE) {
        upstream = upstream.header(header::CONTENT_TYPE, ct.clone());
    }
    match upstream.send().await {
        Ok(reply) => {
            let status = reply.status();
            let content_type = reply.headers().get(header::CONTENT_TYPE).cloned();
            let bytes = reply.bytes().await.unwrap_or_default();
            let mut response = (status, bytes).into_response();
            if let Some(ct) = content_type {
                response.headers_mut().insert(header::CONTENT_TYPE, ct);
            }
            response
        }
        Err(e) => (StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
    }
}
