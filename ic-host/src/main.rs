//! `ic-host`: install a canister on the embedded IC host and run a sequence of steps.
//!
//!     ic-host CANISTER.wasm [--init '(ARGS)'] [--script FILE] [--json] [--accounting ic-2025] [STEP ...]
//!
//! Steps (one per argument, or one per line of the script; `#` starts a comment):
//!     [as anonymous|controller|PRINCIPAL] update METHOD [(ARGS)]
//!     [as ...] query METHOD [(ARGS)]
//!     upgrade WASM [(ARGS)]
//!     advance SECONDS          (moves time; a due global timer runs)
//!
//! Arguments and replies are Candid text, typed by the canister's `candid:service` metadata
//! when it carries one. Each step prints its reply, instructions (and how many of them were
//! charged for memory pages) and 2 B slices. `--accounting ic-2025` charges memory as the IC
//! did before mid-2026 (see `ic_host::types::Accounting`).
//!
//!     ic-host serve [--port P] [--state-dir DIR] [--controller PRINCIPAL] [--accounting ic-2025]
//!
//! runs a local replica instead: the IC's HTTP interface on 127.0.0.1 for icp-cli, dfx,
//! agent-js and ic-agent (see `ic_host::http`).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use candid::types::{Type, TypeInner};
use candid::{IDLArgs, Principal, TypeEnv};
use clap::Parser;
use ic_host::host::{Accounting, Host, HostConfig, Outcome, Response, default_controller};

#[derive(Parser)]
#[command(name = "ic-host", version, about = "Run a canister on an embedded Internet Computer host (no replica needed)")]
struct Cli {
    /// The canister module (.wasm).
    wasm: PathBuf,
    /// Init argument in Candid text, e.g. '(record { greeting = "hi" })'.
    #[arg(long, default_value = "()")]
    init: String,
    /// Read steps from a file (one per line) before the ones given as arguments.
    #[arg(long)]
    script: Option<PathBuf>,
    /// Print one JSON object per step instead of text.
    #[arg(long)]
    json: bool,
    /// Print the canister's Candid interface (metadata or `get_candid_pointer`) and exit.
    #[arg(long)]
    candid: bool,
    /// How memory pages are charged: ic-2026 (the IC since mid-2026) or ic-2025 (before).
    #[arg(long, default_value = "ic-2026")]
    accounting: Accounting,
    /// Steps to run (see the module documentation).
    steps: Vec<String>,
}

/// The canister's interface, when known.
struct Interface {
    env: TypeEnv,
    init: Vec<Type>,
    service: Option<Type>,
}

impl Interface {
    fn encode(&self, args: &str, types: Option<&[Type]>) -> Result<Vec<u8>> {
        let parsed: IDLArgs = candid_parser::parse_idl_args(args).with_context(|| format!("not Candid arguments: {args}"))?;
        Ok(match types {
            Some(types) => parsed.to_bytes_with_types(&self.env, types)?,
            None => parsed.to_bytes()?,
        })
    }

    fn method<'a>(&'a self, name: &'a str) -> Option<&'a candid::types::Function> {
        self.service.as_ref().and_then(|s| self.env.get_method(s, name).ok())
    }

    fn decode(&self, bytes: &[u8], method: Option<&str>) -> Result<IDLArgs> {
        match method.and_then(|m| self.method(m)) {
            Some(f) => Ok(IDLArgs::from_bytes_with_types(bytes, &self.env, &f.rets)?),
            None => Ok(IDLArgs::from_bytes(bytes)?),
        }
    }
}

fn principal_for(who: &str) -> Result<Principal> {
    Ok(match who {
        "anonymous" => Principal::anonymous(),
        "controller" => default_controller(),
        text => Principal::from_text(text).with_context(|| format!("{text:?} is not anonymous, controller or a principal"))?,
    })
}

/// Splits `word rest` at the first space.
fn word(s: &str) -> (&str, &str) {
    let s = s.trim();
    match s.split_once(char::is_whitespace) {
        Some((w, rest)) => (w, rest.trim()),
        None => (s, ""),
    }
}

fn report(step: &str, kind: &str, out: &Outcome, reply: Option<String>, json: bool) {
    if json {
        let (reply_field, reject) = match &out.response {
            Response::Reply(_) => (reply.map(serde_json::Value::String), None),
            Response::Reject { code, message } => (None, Some(serde_json::json!({"code": *code as u32, "message": message}))),
        };
        let line = serde_json::json!({
            "step": step,
            "kind": kind,
            "reply": reply_field,
            "reject": reject,
            "instructions": out.instructions,
            "slices": out.slices,
            "page_instructions": out.pages.instructions,
            "pages_accessed": out.pages.accessed,
            "pages_written": out.pages.written,
            "log": out.log,
        });
        println!("{line}");
        return;
    }
    for line in &out.log {
        println!("  [canister] {line}");
    }
    match &out.response {
        Response::Reply(_) => println!("{step}\n  → {}", reply.unwrap_or_else(|| "()".into())),
        Response::Reject { code, message } => println!("{step}\n  → rejected ({code:?}): {message}"),
    }
    println!("  {} instructions ({} for memory pages), {} slice(s)", out.instructions, out.pages.instructions, out.slices);
}

fn run(cli: Cli) -> Result<()> {
    Accounting::set_default(cli.accounting);
    let wasm = std::fs::read(&cli.wasm).with_context(|| format!("cannot read {}", cli.wasm.display()))?;
    let mut steps = Vec::new();
    if let Some(script) = &cli.script {
        let text = std::fs::read_to_string(script).with_context(|| format!("cannot read {}", script.display()))?;
        steps.extend(text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).map(String::from));
    }
    steps.extend(cli.steps.iter().cloned());

    // The interface comes from the module: its metadata, or (ic-cdk canisters) asking the code,
    // which needs an instance; a throwaway install without init gives one.
    let info = ic_host::validate::validate(&wasm)?;
    let did = match info.candid_service {
        Some(did) => Some(did),
        None => Host::load_without_init(&wasm)?.candid_service(),
    };
    if cli.candid {
        print!("{}", did.context("the canister carries no Candid interface")?);
        return Ok(());
    }
    let mut interface = Interface::from_info(did.as_deref())?;
    let init_arg = interface.encode(&cli.init, interface.service.as_ref().map(|_| interface.init.as_slice()))?;
    let (mut host, outcome) = Host::install(&wasm, &init_arg, HostConfig::default())?;
    report(&format!("install {}", cli.wasm.display()), "install", &outcome, None, cli.json);

    for step in steps {
        let (mut first, mut rest) = word(&step);
        let mut caller = default_controller();
        if first == "as" {
            let (who, after) = word(rest);
            caller = principal_for(who)?;
            (first, rest) = word(after);
        }
        match first {
            "update" | "query" => {
                let (method, args) = word(rest);
                let args = if args.is_empty() { "()" } else { args };
                let types = interface.method(method).map(|f| f.args.clone());
                let bytes = interface.encode(args, types.as_deref())?;
                if bytes.len() > ic_host::replica::MAX_INGRESS_BYTES {
                    bail!(
                        "the argument of {method} is {} bytes, over the IC's ingress message limit of {} bytes",
                        bytes.len(),
                        ic_host::replica::MAX_INGRESS_BYTES
                    );
                }
                let out = if first == "update" { host.update(method, &bytes, caller)? } else { host.query(method, &bytes, caller)? };
                let reply = out
                    .reply()
                    .map(|r| interface.decode(r, Some(method)).map(|a| a.to_string()).unwrap_or_else(|e| format!("(undecodable reply: {e})")));
                report(&step, first, &out, reply, cli.json);
            }
            "upgrade" => {
                let (path, args) = word(rest);
                let wasm = std::fs::read(path).with_context(|| format!("cannot read {path}"))?;
                let info = ic_host::validate::validate(&wasm)?;
                let did = match info.candid_service {
                    Some(did) => Some(did),
                    None => Host::load_without_init(&wasm)?.candid_service(),
                };
                let next = Interface::from_info(did.as_deref())?;
                let args = if args.is_empty() { "()" } else { args };
                let bytes = next.encode(args, next.service.as_ref().map(|_| next.init.as_slice()))?;
                let out = host.upgrade(&wasm, &bytes)?;
                interface = next;
                report(&step, "upgrade", &out, None, cli.json);
            }
            "advance" => {
                let seconds: f64 = rest.parse().with_context(|| format!("advance takes seconds, got {rest:?}"))?;
                if !(seconds.is_finite() && seconds >= 0.0) {
                    bail!("advance takes a non-negative number of seconds");
                }
                match host.advance_time((seconds * 1e9) as u64)? {
                    Some(out) => report(&step, "timer", &out, None, cli.json),
                    None if cli.json => println!("{}", serde_json::json!({"step": step, "kind": "advance", "timer": false})),
                    None => println!("{step}\n  (no timer due)"),
                }
            }
            other => bail!("unknown step {other:?} in {step:?} (update, query, upgrade, advance)"),
        }
    }
    Ok(())
}

impl Interface {
    fn from_info(did: Option<&str>) -> Result<Interface> {
        let Some(did) = did else {
            return Ok(Interface { env: TypeEnv::new(), init: Vec::new(), service: None });
        };
        let (env, actor) = candid_parser::utils::CandidSource::Text(did).load().context("the canister's candid:service metadata does not parse")?;
        let (init, service) = match actor.as_ref().map(|t| t.as_ref()) {
            Some(TypeInner::Class(init, service)) => (init.clone(), Some(service.clone())),
            _ => (Vec::new(), actor),
        };
        Ok(Interface { env, init, service })
    }
}

#[derive(Parser)]
#[command(name = "ic-host serve", version, about = "A local replica: the IC's HTTP interface on 127.0.0.1, for icp-cli, dfx, agent-js and ic-agent")]
struct ServeCli {
    /// The port to listen on (0: any free port; the address is printed).
    #[arg(long, default_value_t = 4943)]
    port: u16,
    /// Where canisters, their state and the subnet's keys persist across restarts.
    #[arg(long)]
    state_dir: Option<PathBuf>,
    /// A principal made controller of every canister created here, besides its creator.
    #[arg(long)]
    controller: Option<String>,
    /// How memory pages are charged: ic-2026 (the IC since mid-2026) or ic-2025 (before).
    #[arg(long, default_value = "ic-2026")]
    accounting: Accounting,
}

fn serve(cli: ServeCli) -> Result<()> {
    // Every canister the replica installs or loads takes the process default.
    Accounting::set_default(cli.accounting);
    let controller =
        cli.controller.as_deref().map(|t| Principal::from_text(t).with_context(|| format!("--controller {t:?} is not a principal"))).transpose()?;
    if let Some(dir) = &cli.state_dir {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create the state directory {}", dir.display()))?;
    }
    let server = ic_host::http::server::start(ic_host::http::server::ServeConfig { port: cli.port, state_dir: cli.state_dir.clone(), controller })?;
    let root_key = hex::encode(server.subnet.keys.root_key_der());
    println!("ic-host serve: listening on {}", server.url);
    println!("  subnet {}  (root key {root_key})", server.subnet.keys.subnet_id());
    println!("  canister pages at http://<canister-id>.localhost:{}/ (the HTTP gateway)", server.addr.port());
    if let Some(dir) = &cli.state_dir {
        println!("  state in {}", dir.display());
    }
    use std::io::Write;
    std::io::stdout().flush()?;
    ic_host::http::server::wait_for_shutdown_signal();
    println!("ic-host serve: shutting down");
    server.shutdown();
    Ok(())
}

fn main() -> ExitCode {
    let result =
        if std::env::args().nth(1).as_deref() == Some("serve") { serve(ServeCli::parse_from(std::env::args().skip(1))) } else { run(Cli::parse()) };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
