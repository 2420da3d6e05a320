// A local replica for the browser tests: `ic-host serve` on a free port, and the walsh canister
// created, installed and given a model through the IC's API with @icp-sdk/core (as a controller
// would, with `walsh upload`). Paths come from the environment, else the repository's defaults:
//   IC_HOST_BIN          target/debug/ic-host
//   WALSH_CANISTER_WASM  target/canister/walsh_canister.wasm (scripts/build_canister.sh)
//   WALSH_BIN            target/debug/walsh (converts meta.pkl into tokenizer.json)
//   WALSH_TESTDATA       ../shared/testdata
import { execFileSync, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';
import { Actor, HttpAgent } from '@icp-sdk/core/agent';
import { IDL } from '@icp-sdk/core/candid';
import { Ed25519KeyIdentity } from '@icp-sdk/core/identity';
import { idlFactory } from '../../src/bindings/declarations/walsh.did.js';

export const frontendDir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const repoRoot = path.resolve(frontendDir, '..');

const env = (name, fallback) => process.env[name] || fallback;
export const paths = {
  icHost: env('IC_HOST_BIN', path.join(repoRoot, 'target/debug/ic-host')),
  wasm: env('WALSH_CANISTER_WASM', path.join(repoRoot, 'target/canister/walsh_canister.wasm')),
  walsh: env('WALSH_BIN', path.join(repoRoot, 'target/debug/walsh')),
  testdata: env('WALSH_TESTDATA', path.join(repoRoot, '../shared/testdata')),
};

/** Starts `ic-host serve --port 0`; resolves with its URL, port and a stop function. */
export async function startReplica() {
  const proc = spawn(paths.icHost, ['serve', '--port', '0'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  const log = (d) => {
    out += d;
    if (process.env.IC_HOST_VERBOSE) process.stderr.write(`[ic-host] ${d}`);
  };
  proc.stderr.setEncoding('utf8').on('data', log);
  const url = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`ic-host serve did not start in 60 s:\n${out}`)), 60_000);
    proc.on('error', (e) => reject(new Error(`cannot run ${paths.icHost}: ${e.message}`)));
    proc.on('exit', (code) => reject(new Error(`ic-host serve exited (${code}):\n${out}`)));
    proc.stdout.setEncoding('utf8').on('data', (d) => {
      log(d);
      const m = out.match(/listening on (http:\/\/\S+)/);
      if (m) {
        clearTimeout(timer);
        resolve(m[1].replace(/\/$/, ''));
      }
    });
  });
  return {
    url,
    port: Number(new URL(url).port),
    output: () => out,
    async stop() {
      if (proc.exitCode !== null) return;
      const exited = new Promise((r) => proc.once('exit', r));
      proc.kill('SIGTERM');
      const timer = setTimeout(() => proc.kill('SIGKILL'), 10_000);
      await exited;
      clearTimeout(timer);
    },
  };
}

const managementIdl = ({ IDL }) => {
  const settings = IDL.Record({ controllers: IDL.Opt(IDL.Vec(IDL.Principal)) });
  return IDL.Service({
    provisional_create_canister_with_cycles: IDL.Func(
      [IDL.Record({ amount: IDL.Opt(IDL.Nat), settings: IDL.Opt(settings), specified_id: IDL.Opt(IDL.Principal), sender_canister_version: IDL.Opt(IDL.Nat64) })],
      [IDL.Record({ canister_id: IDL.Principal })],
      [],
    ),
    install_code: IDL.Func(
      [IDL.Record({ mode: IDL.Variant({ install: IDL.Null }), canister_id: IDL.Principal, wasm_module: IDL.Vec(IDL.Nat8), arg: IDL.Vec(IDL.Nat8), sender_canister_version: IDL.Opt(IDL.Nat64) })],
      [],
      [],
    ),
  });
};

/** A controller of the canisters it creates: an agent with a fresh identity. */
export async function controller(url) {
  const identity = Ed25519KeyIdentity.generate();
  const agent = await HttpAgent.create({ host: url, identity, shouldFetchRootKey: true });
  const management = Actor.createActor(managementIdl, {
    agent,
    canisterId: 'aaaaa-aa',
    callTransform: (_m, args) => ({ effectiveCanisterId: args[0]?.canister_id ?? 'aaaaa-aa' }),
  });
  return { agent, identity, management };
}

/** Creates and installs a walsh canister (gzip module, no init settings); returns its actor. */
export async function installWalsh(admin) {
  const wasm = fs.readFileSync(paths.wasm);
  const { canister_id } = await admin.management.provisional_create_canister_with_cycles({ amount: [10n ** 13n], settings: [], specified_id: [], sender_canister_version: [] });
  // No init argument: the canister's default settings.
  const arg = new Uint8Array(IDL.encode([], []));
  await admin.management.install_code({ mode: { install: null }, canister_id, wasm_module: gzipSync(wasm), arg, sender_canister_version: [] });
  return { id: canister_id.toText(), actor: Actor.createActor(idlFactory, { agent: admin.agent, canisterId: canister_id }) };
}

/** Uploads `bytes` as the model or the tokenizer in chunks, as `walsh upload` does. */
export async function upload(actor, kind, bytes) {
  const variant = { [kind]: null };
  const ok = (r, what) => {
    if ('Err' in r) throw new Error(`${what}: ${JSON.stringify(r.Err, (_k, v) => (typeof v === 'bigint' ? String(v) : v))}`);
    return r.Ok;
  };
  ok(await actor.upload_start(variant), 'upload_start');
  const chunk = 1_000_000;
  for (let offset = 0; offset < bytes.length; offset += chunk) {
    ok(await actor.upload_chunk(variant, BigInt(offset), bytes.subarray(offset, offset + chunk)), 'upload_chunk');
  }
  const sha = createHash('sha256').update(bytes).digest();
  return ok(await actor.upload_finish(variant, BigInt(bytes.length), new Uint8Array(sha)), 'upload_finish');
}

/** A reference set's tokenizer.json: its own, or converted from its meta.pkl by `walsh tokenizer`. */
export function tokenizerOf(dir) {
  const own = path.join(dir, 'tokenizer.json');
  if (fs.existsSync(own)) return fs.readFileSync(own);
  const tokenizer = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'walsh-e2e-')), 'tokenizer.json');
  execFileSync(paths.walsh, ['tokenizer', path.join(dir, 'meta.pkl'), '-o', tokenizer], { stdio: 'pipe' });
  return fs.readFileSync(tokenizer);
}

/** char-tiny's model, its tokenizer.json and its reference for "ROMEO:"; null without testdata. */
export function charTiny() {
  const dir = path.join(paths.testdata, 'char-tiny');
  if (!fs.existsSync(path.join(dir, 'model.walsh'))) return null;
  const reference = JSON.parse(fs.readFileSync(path.join(dir, 'reference.json'), 'utf8'));
  return {
    model: fs.readFileSync(path.join(dir, 'model.walsh')),
    tokenizer: tokenizerOf(dir),
    reference: reference.prompts.find((p) => p.prompt === 'ROMEO:'),
  };
}
