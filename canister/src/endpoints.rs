//! The canister's Candid endpoints: each one gathers the caller, the time and the instruction
//! counter, then calls the service. No well-typed argument can make them trap: every failure is
//! an `Err`. Ill-typed arguments trap in ic-cdk's decoder before the method runs (the IC's
//! reject; nothing changes): a `decode_with` hook would answer a typed error, but it replaces the
//! method's arguments by one blob in the exported interface, which clients build their calls from.

use std::cell::RefCell;
use std::time::Duration;

use ic_asset_certification::AssetRouter;
use ic_http_certification::{HttpRequest, HttpResponse};
use ic_stable_structures::DefaultMemoryImpl;

use crate::api::*;
use crate::service::{Context, Service};

thread_local! {
    static SERVICE: RefCell<Option<Service<DefaultMemoryImpl>>> = const { RefCell::new(None) };
    /// The page's certified files; its root hash is the canister's certified data.
    static PAGE: RefCell<Option<AssetRouter<'static>>> = const { RefCell::new(None) };
}

fn with<R>(f: impl FnOnce(&mut Service<DefaultMemoryImpl>, &Context<'_>) -> R) -> R {
    let caller = ic_cdk::api::msg_caller();
    let counter = || ic_cdk::api::instruction_counter();
    let ctx = Context { caller, is_controller: ic_cdk::api::is_controller(&caller), now_ns: ic_cdk::api::time(), instructions: &counter };
    SERVICE.with(|s| {
        let mut s = s.borrow_mut();
        let service = s.as_mut().expect("the service is created in init and post_upgrade");
        f(service, &ctx)
    })
}

fn start(settings: Option<Settings>) {
    // A stored model that no longer loads is a bug to surface loudly: the install or upgrade
    // fails and the previous code stays.
    let service =
        Service::new(DefaultMemoryImpl::default(), settings).unwrap_or_else(|e| ic_cdk::trap(format!("cannot load the stored model: {e:?}")));
    SERVICE.with(|s| *s.borrow_mut() = Some(service));
    let page = crate::assets::router();
    ic_cdk::api::certified_data_set(page.root_hash());
    PAGE.with(|p| *p.borrow_mut() = Some(page));
    // Seeds for requests without one come from the IC's randomness, fetched once per code version.
    ic_cdk_timers::set_timer(Duration::ZERO, async {
        if let Ok(bytes) = ic_cdk_management_canister::raw_rand().await
            && let Ok(seed) = <[u8; 32]>::try_from(bytes.as_slice())
        {
            SERVICE.with(|s| s.borrow_mut().as_mut().map(|s| s.reseed(seed)));
            let mut second = seed;
            second.reverse();
            HASH_SEED.with(|r| *r.borrow_mut() = rand_core::SeedableRng::from_seed(second));
        }
    });
}

#[ic_cdk::init]
fn init(settings: Option<Settings>) {
    start(settings);
}

#[ic_cdk::post_upgrade]
fn post_upgrade() {
    // Weights and settings live in stable memory; sessions (heap) end with the upgrade.
    start(None);
}

/// Refuses, before they cost the canister cycles, ingress calls the methods would refuse anyway:
/// uploads and configuration from non-controllers, session calls from the anonymous principal.
#[ic_cdk::inspect_message]
fn inspect_message() {
    let caller = ic_cdk::api::msg_caller();
    let accepted = match ic_cdk::api::msg_method_name().as_str() {
        "upload_start" | "upload_chunk" | "upload_finish" | "configure" => ic_cdk::api::is_controller(&caller),
        "session_start" | "session_continue" | "session_cancel" => caller != candid::Principal::anonymous(),
        _ => true,
    };
    if accepted {
        ic_cdk::api::accept_message();
    }
}

#[ic_cdk::update]
fn upload_start(kind: BlobKind) -> Result<UploadStatus, Error> {
    with(|s, ctx| s.upload_start(ctx, kind))
}

#[ic_cdk::update]
fn upload_chunk(kind: BlobKind, offset: u64, bytes: serde_bytes::ByteBuf) -> Result<UploadStatus, Error> {
    with(|s, ctx| s.upload_chunk(ctx, kind, offset, &bytes))
}

#[ic_cdk::query]
fn upload_status(kind: BlobKind) -> UploadStatus {
    with(|s, _| s.upload_status(kind))
}

#[ic_cdk::update]
fn upload_finish(kind: BlobKind, size: u64, sha256: serde_bytes::ByteBuf) -> Result<ModelInfo, Error> {
    with(|s, ctx| s.upload_finish(ctx, kind, size, sha256.into_vec()))
}

#[ic_cdk::query]
fn generate(request: GenerateRequest) -> Result<Generation, Error> {
    with(|s, ctx| s.generate(ctx, request))
}

#[ic_cdk::update]
fn session_start(request: GenerateRequest, options: Option<CallOptions>) -> Result<SessionChunk, Error> {
    with(|s, ctx| s.session_start(ctx, request, options))
}

#[ic_cdk::update]
fn session_continue(session: u64, options: Option<CallOptions>) -> Result<SessionChunk, Error> {
    with(|s, ctx| s.session_continue(ctx, session, options))
}

#[ic_cdk::query]
fn session_get(session: u64) -> Result<SessionView, Error> {
    with(|s, ctx| s.session_get(ctx, session))
}

#[ic_cdk::update]
fn session_cancel(session: u64) -> Result<(), Error> {
    with(|s, ctx| s.session_cancel(ctx, session))
}

#[ic_cdk::query]
fn model_info() -> Result<ModelInfo, Error> {
    with(|s, _| s.model_info())
}

#[ic_cdk::query]
fn stats() -> Stats {
    let heap = (core::arch::wasm32::memory_size(0) as u64) * 65_536;
    let stable = ic_cdk::stable::stable_size() * 65_536;
    with(|s, _| s.stats(heap, stable))
}

/// The page (`frontend/`), certified: what an HTTP gateway serves at the canister's URL.
#[ic_cdk::query]
fn http_request(request: HttpRequest<'static>) -> HttpResponse<'static> {
    // Queries through a gateway are non-replicated and always carry a certificate.
    let certificate = ic_cdk::api::data_certificate().unwrap_or_default();
    PAGE.with(|p| {
        let page = p.borrow();
        let page = page.as_ref().expect("the page is certified in init and post_upgrade");
        crate::assets::serve(page, &certificate, &request)
    })
}

#[ic_cdk::update]
fn configure(settings: Settings) -> Result<(), Error> {
    with(|s, ctx| s.configure(ctx, settings))
}

thread_local! {
    /// Randomness for dependencies that ask getrandom (ahash seeds its hash maps, through
    /// tokenizers). Reseeded from raw_rand once available; never used for sampling.
    static HASH_SEED: RefCell<rand_chacha::ChaCha20Rng> = RefCell::new(rand_core::SeedableRng::seed_from_u64(0x5741_4c53));
}

/// The custom getrandom backend (see .cargo/config.toml): keeps the wasm free of non-ic0 imports.
#[unsafe(no_mangle)]
unsafe extern "Rust" fn __getrandom_v03_custom(dest: *mut u8, len: usize) -> Result<(), getrandom::Error> {
    // SAFETY: getrandom passes a writable buffer of `len` bytes.
    let buf = unsafe { std::slice::from_raw_parts_mut(dest, len) };
    HASH_SEED.with(|r| rand_core::RngCore::fill_bytes(&mut *r.borrow_mut(), buf));
    Ok(())
}

ic_cdk::export_candid!();
