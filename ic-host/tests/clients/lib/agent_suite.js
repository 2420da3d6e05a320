// One test suite, run by core6.test.js with @icp-sdk/core 6.1.0 and by agent3.test.js with
// @dfinity/agent 3.4.3: the real agent, with its default verification (BLS certificates, /time
// freshness, query node signatures with the canister-range check), against `ic-host serve`.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import zlib from 'node:zlib';

import { startServer, repoRoot, ROOT_KEY_DER_PREFIX } from './server.js';

export function testCanisterWasm() {
  const p = process.env.TEST_CANISTER_WASM
    || path.join(repoRoot, 'target/test-canister/wasm32-unknown-unknown/release/ic_host_test_canister.wasm');
  if (!fs.existsSync(p)) throw new Error(`${p} is missing: run ic-host/tests/clients/run.sh (it builds it)`);
  return fs.readFileSync(p);
}

const hex = (bytes) => Buffer.from(bytes).toString('hex');
const sha256 = (bytes) => crypto.createHash('sha256').update(bytes).digest();

/** The management canister methods the tests use (ic-management-canister-types shapes). */
export function managementIdl({ IDL }) {
  const settings = IDL.Record({
    controllers: IDL.Opt(IDL.Vec(IDL.Principal)),
    compute_allocation: IDL.Opt(IDL.Nat),
    memory_allocation: IDL.Opt(IDL.Nat),
    freezing_threshold: IDL.Opt(IDL.Nat),
  });
  const mode = IDL.Variant({
    install: IDL.Null,
    reinstall: IDL.Null,
    upgrade: IDL.Opt(IDL.Record({
      skip_pre_upgrade: IDL.Opt(IDL.Bool),
      wasm_memory_persistence: IDL.Opt(IDL.Variant({ keep: IDL.Null, replace: IDL.Null })),
    })),
  });
  const canisterIdRecord = IDL.Record({ canister_id: IDL.Principal });
  return IDL.Service({
    provisional_create_canister_with_cycles: IDL.Func([IDL.Record({
      amount: IDL.Opt(IDL.Nat),
      settings: IDL.Opt(settings),
      specified_id: IDL.Opt(IDL.Principal),
      sender_canister_version: IDL.Opt(IDL.Nat64),
    })], [canisterIdRecord], []),
    install_code: IDL.Func([IDL.Record({
      mode,
      canister_id: IDL.Principal,
      wasm_module: IDL.Vec(IDL.Nat8),
      arg: IDL.Vec(IDL.Nat8),
      sender_canister_version: IDL.Opt(IDL.Nat64),
    })], [], []),
    // A subset of the reply record: Candid decoding skips the fields not declared here.
    canister_status: IDL.Func([canisterIdRecord], [IDL.Record({
      status: IDL.Variant({ running: IDL.Null, stopping: IDL.Null, stopped: IDL.Null }),
      module_hash: IDL.Opt(IDL.Vec(IDL.Nat8)),
      settings: IDL.Record({ controllers: IDL.Vec(IDL.Principal) }),
      cycles: IDL.Nat,
      memory_size: IDL.Nat,
    })], []),
  });
}

/** ic-host/test-canister/src/lib.rs, the methods used here. */
export function testCanisterIdl({ IDL }) {
  const env = IDL.Record({
    caller: IDL.Principal,
    me: IDL.Principal,
    caller_is_controller: IDL.Bool,
    time: IDL.Nat64,
    instructions: IDL.Nat64,
    call_context_instructions: IDL.Nat64,
    balance: IDL.Nat,
  });
  return IDL.Service({
    env: IDL.Func([], [env], ['query']),
    greeting: IDL.Func([], [IDL.Text], ['query']),
    inc: IDL.Func([], [IDL.Nat64], []),
    counter: IDL.Func([], [IDL.Nat64], ['query']),
    set: IDL.Func([IDL.Text, IDL.Text], [], []),
    get: IDL.Func([IDL.Text], [IDL.Opt(IDL.Text)], ['query']),
    set_then_trap: IDL.Func([IDL.Text, IDL.Text], [], []),
    reject_me: IDL.Func([IDL.Text], [], []),
  });
}

/** A fetch that records every exchange (path, status, and the text of error responses). */
export function recordingFetch() {
  const log = [];
  const fetchFn = async (input, init) => {
    const url = new URL(typeof input === 'string' || input instanceof URL ? input : input.url);
    const res = await fetch(input, init);
    const entry = { method: init?.method ?? 'GET', path: url.pathname, status: res.status, text: null };
    if (res.status >= 300) entry.text = await res.clone().text();
    log.push(entry);
    return res;
  };
  return { fetch: fetchFn, log };
}

/** Everything an agent error says, for assertions and failure messages. */
export function describeError(e) {
  const code = e?.cause?.code;
  const fields = {};
  if (code) for (const k of ['rejectCode', 'rejectMessage', 'rejectErrorCode', 'status', 'statusText', 'bodyText']) {
    if (code[k] !== undefined) fields[k] = typeof code[k] === 'bigint' ? Number(code[k]) : code[k];
  }
  // The agents' messages embed the whole HTTP response; the start says what happened.
  const message = String(e?.message ?? e);
  return { message: message.length > 600 ? `${message.slice(0, 600)}…` : message, ...fields };
}

async function rejects(promise) {
  try {
    const v = await promise;
    return { ok: true, value: v };
  } catch (e) {
    return { ok: false, error: describeError(e), raw: e };
  }
}

/**
 * Identities that must be refused. Each is a plain object with the two methods an agent uses
 * (getPrincipal, transformRequest), built on a real key identity.
 */
function badIdentities(lib, good, other, requestIdOf) {
  const domain = new TextEncoder().encode('\x0Aic-request');
  const concat = (a, b) => { const r = new Uint8Array(a.length + b.length); r.set(a); r.set(b, a.length); return r; };
  return {
    // sender and sender_pubkey are `good`'s, the signature is made by `other`'s key.
    wrongKey: {
      getPrincipal: () => good.getPrincipal(),
      async transformRequest(request) {
        const signed = await good.transformRequest(request);
        const id = requestIdOf(request.body);
        signed.body.sender_sig = await other.sign(concat(domain, id));
        return signed;
      },
    },
    // A valid signature by `good` over content whose sender is `other`'s principal.
    impersonator: {
      getPrincipal: () => other.getPrincipal(),
      transformRequest: (request) => good.transformRequest(request),
    },
    // Signed by `good`, then the content's method_name is changed (the signature no longer covers it).
    tampered(newMethod) {
      return {
        getPrincipal: () => good.getPrincipal(),
        async transformRequest(request) {
          const signed = await good.transformRequest(request);
          signed.body.content = { ...signed.body.content, method_name: newMethod };
          return signed;
        },
      };
    },
  };
}

/**
 * lib: { name, agent: module, IDL, Principal, Ed25519KeyIdentity, gzip: bool, callPath: RegExp }
 */
export function agentSuite(lib) {
  const { HttpAgent, Actor, CanisterStatus, requestIdOf, Expiry } = lib.agent;
  const { IDL, Principal, Ed25519KeyIdentity, ECDSAKeyIdentity, DelegationChain, DelegationIdentity } = lib;
  const wasm = testCanisterWasm();
  const module = lib.gzip ? zlib.gzipSync(wasm, { level: 9 }) : wasm;
  const mgmtId = Principal.fromText('aaaaa-aa');

  let server;
  let owner; // the identity that creates and controls the canister
  let stranger; // a valid identity that is not a controller
  let operator; // made controller of every canister by the server's --controller flag
  let rec; // the owner agent's recorded exchanges
  let agent;
  let canisterId;

  const makeAgent = async (identity, recorder, extra = {}) => HttpAgent.create({
    host: server.url,
    shouldFetchRootKey: true,
    identity,
    ...(recorder ? { fetch: recorder.fetch } : {}),
    ...extra,
  });
  // The refused requests are answered 400; the agent would retry them 3 times with backoff.
  const noRetry = { retryTimes: 0 };
  const summary = (entries) => [...new Set(entries.map((e) => `${e.path.replace(/\/canister\/[^/]+\//, '/canister/<cid>/')} → ${e.status} ${JSON.stringify(e.text.length > 160 ? `${e.text.slice(0, 160)}…` : e.text)}`))].join('; ');
  const mgmt = (a, extra = {}) => Actor.createActor(managementIdl, {
    agent: a,
    canisterId: mgmtId,
    // As the IC requires: the effective canister id of a management call is its canister_id
    // (the create call may name any).
    callTransform: (_m, args) => ({ effectiveCanisterId: args[0]?.canister_id ?? mgmtId }),
    queryTransform: (_m, args) => ({ effectiveCanisterId: args[0]?.canister_id ?? mgmtId }),
    ...extra,
  });
  const canister = (a) => Actor.createActor(testCanisterIdl, { agent: a, canisterId });

  before(async () => {
    owner = Ed25519KeyIdentity.generate();
    stranger = Ed25519KeyIdentity.generate();
    operator = Ed25519KeyIdentity.generate();
    server = await startServer({ controller: operator.getPrincipal().toText() });
    rec = recordingFetch();
    agent = await makeAgent(owner, rec);
  });
  after(async () => {
    if (server) {
      const how = await server.stop();
      if (process.env.IC_HOST_VERBOSE) console.log(`ic-host output:\n${server.output()}`);
      assert.ok(how === 0 || how === 'SIGTERM', `ic-host serve exited with ${how} on SIGTERM`);
    }
  });

  test(`${lib.name}: the agent fetched the server's root key (133-byte BLS DER)`, () => {
    const key = hex(agent.rootKey);
    assert.equal(key, server.rootKeyHex);
    assert.equal(key.length, 266);
    assert.ok(key.startsWith(ROOT_KEY_DER_PREFIX));
    assert.ok(rec.log.some((e) => e.path === '/api/v2/status' && e.status === 200), JSON.stringify(rec.log));
  });

  test(`${lib.name}: create and install the test canister through the management canister`, async () => {
    const m = mgmt(agent);
    const created = await m.provisional_create_canister_with_cycles({
      amount: [1_000_000_000_000n], settings: [], specified_id: [], sender_canister_version: [],
    });
    canisterId = created.canister_id;
    assert.ok(canisterId instanceof Principal || typeof canisterId.toText === 'function');
    const greeting = `hello from ${lib.name}`;
    await m.install_code({
      mode: { install: null },
      canister_id: canisterId,
      wasm_module: module,
      arg: new Uint8Array(IDL.encode([IDL.Record({ greeting: IDL.Text })], [{ greeting }])),
      sender_canister_version: [],
    });
    // The update went to the call endpoint this agent version uses, and was certified (no 202/poll needed).
    assert.ok(rec.log.some((e) => lib.callPath.test(e.path) && e.status === 200), JSON.stringify(rec.log));
    assert.equal(await canister(agent).greeting(), greeting);

    // canister_status through the management canister (an update).
    const status = await m.canister_status({ canister_id: canisterId });
    assert.deepEqual(Object.keys(status.status), ['running']);
    // As on the IC, module_hash is the SHA-256 of the module as sent (the gzipped bytes when gzipped).
    assert.equal(hex(status.module_hash[0]), hex(sha256(module)), 'module_hash is the SHA-256 of wasm_module');
    const controllers = [owner, operator].map((i) => i.getPrincipal().toText()).sort();
    assert.deepEqual(status.settings.controllers.map((p) => p.toText()).sort(), controllers, 'the creator and the --controller principal');

    // The same from the certified state tree (read_state), verified by the agent.
    const paths = await CanisterStatus.request({ agent, canisterId, paths: ['module_hash', 'controllers', 'time'] });
    assert.equal(paths.get('module_hash'), hex(sha256(module)));
    assert.deepEqual(paths.get('controllers').map((p) => p.toText()).sort(), controllers);
    const t = paths.get('time');
    assert.ok(Math.abs(t.getTime() - Date.now()) < 60_000, `certified /time ${t.toISOString()} is wall clock`);
  });

  test(`${lib.name}: a query's caller is the agent's identity; an update increments`, async () => {
    const c = canister(agent);
    const env = await c.env();
    assert.equal(env.caller.toText(), owner.getPrincipal().toText());
    assert.equal(env.me.toText(), canisterId.toText());
    assert.equal(env.caller_is_controller, true);
    const nowNs = BigInt(Date.now()) * 1_000_000n;
    const drift = env.time > nowNs ? env.time - nowNs : nowNs - env.time;
    assert.ok(drift < 60_000_000_000n, `ic0.time ${env.time} is wall clock`);
    assert.equal(await c.inc(), 1n);
    assert.equal(await c.inc(), 2n);
    assert.equal(await c.counter(), 2n);
    // Queries were verified against node keys read from the subnet (read_state on the canister).
    assert.ok(rec.log.some((e) => /\/canister\/[^/]+\/query$/.test(e.path) && e.status === 200), JSON.stringify(rec.log));
    assert.ok(rec.log.some((e) => /\/canister\/[^/]+\/read_state$/.test(e.path) && e.status === 200));

    // The --controller principal is a controller; an ECDSA P-256 key signs as well as Ed25519.
    const op = await canister(await makeAgent(operator)).env();
    assert.equal(op.caller.toText(), operator.getPrincipal().toText());
    assert.equal(op.caller_is_controller, true);
    const p256 = await ECDSAKeyIdentity.generate();
    const p256c = canister(await makeAgent(p256));
    const p256env = await p256c.env();
    assert.equal(p256env.caller.toText(), p256.getPrincipal().toText());
    assert.equal(p256env.caller_is_controller, false);
    assert.equal(await p256c.inc(), 3n);
    assert.equal(await c.inc(), 4n);

    const anon = await makeAgent(undefined);
    const anonEnv = await canister(anon).env();
    assert.equal(anonEnv.caller.toText(), '2vxsx-fae');
    assert.equal(anonEnv.caller_is_controller, false);
  });

  test(`${lib.name}: a trap rolls back and rejects with IC0503; a canister reject carries its message`, async () => {
    const c = canister(agent);
    const trapped = await rejects(c.set_then_trap('k', 'v'));
    assert.equal(trapped.ok, false);
    assert.equal(trapped.error.rejectCode, 5, JSON.stringify(trapped.error));
    assert.equal(trapped.error.rejectErrorCode, 'IC0503', JSON.stringify(trapped.error));
    assert.match(trapped.error.rejectMessage, /deliberate trap after writing/);
    assert.deepEqual(await c.get('k'), []);

    const rejected = await rejects(c.reject_me('no thanks'));
    assert.equal(rejected.ok, false);
    assert.equal(rejected.error.rejectCode, 4, JSON.stringify(rejected.error));
    assert.equal(rejected.error.rejectMessage, 'no thanks');
  });

  test(`${lib.name}: requests with a wrong signature are refused with HTTP 4xx and do not execute`, async () => {
    const bad = badIdentities(lib, owner, Ed25519KeyIdentity.generate(), requestIdOf);
    const before = await canister(agent).counter();
    const cases = [
      ['signed with another key', bad.wrongKey, 'inc'],
      ['sender is not the signing key', bad.impersonator, 'inc'],
      ['method changed after signing', bad.tampered('inc'), 'counter_update_that_does_not_exist'],
    ];
    for (const [what, identity, method] of cases) {
      const r = recordingFetch();
      const a = await makeAgent(identity, r, noRetry);
      const idl = ({ IDL: I }) => I.Service({ [method]: I.Func([], [I.Nat64], []) });
      const res = await rejects(Actor.createActor(idl, { agent: a, canisterId })[method]());
      assert.equal(res.ok, false, `${what}: the call was accepted (${JSON.stringify(res.value)})`);
      const refused = r.log.filter((e) => lib.callPath.test(e.path) || /\/call$/.test(e.path));
      assert.ok(refused.length > 0, `${what}: no call request was sent: ${JSON.stringify(r.log)}`);
      for (const e of refused) {
        assert.ok(e.status >= 400 && e.status < 500, `${what}: HTTP ${e.status} for ${e.path}: ${e.text}`);
        assert.ok(e.text && e.text.length > 0, `${what}: the ${e.status} has no text`);
      }
      console.log(`# ${lib.name} ${what}: ${summary(refused)}`);
    }
    // Nothing executed: the counter did not move.
    assert.equal(await canister(agent).counter(), before);

    // A query signed with the wrong key is refused as well.
    const r = recordingFetch();
    const a = await makeAgent(bad.wrongKey, r, noRetry);
    const res = await rejects(canister(a).env());
    assert.equal(res.ok, false, 'the badly signed query was answered');
    // The agent sends the query and its read_state for the subnet's node keys together; both are signed.
    const q = r.log.filter((e) => /\/(query|read_state)$/.test(e.path));
    assert.ok(q.length > 0 && q.every((e) => e.status >= 400 && e.status < 500 && e.text), JSON.stringify(r.log));
    console.log(`# ${lib.name} query signed with another key: ${summary(q)}`);
  });

  test(`${lib.name}: a delegation signs for its issuer; wrong targets, an expired delegation and a far expiry are refused`, async () => {
    const session = Ed25519KeyIdentity.generate();
    const hour = new Date(Date.now() + 3_600_000);
    const delegated = DelegationIdentity.fromDelegation(session, await DelegationChain.create(owner, session.getPublicKey(), hour));
    const c = canister(await makeAgent(delegated));
    const env = await c.env();
    assert.equal(env.caller.toText(), owner.getPrincipal().toText(), 'the caller of a delegated request is the delegation\'s issuer');
    assert.equal(env.caller_is_controller, true);
    const before = await c.inc();

    const elsewhere = await DelegationChain.create(owner, session.getPublicKey(), hour, { targets: [Principal.fromText('ryjl3-tyaaa-aaaaa-aaaba-cai')] });
    const expired = await DelegationChain.create(owner, session.getPublicKey(), new Date(Date.now() - 60_000));
    // Signed correctly, but the envelope's ingress_expiry is an hour ahead (the IC allows 5 minutes).
    const farExpiry = {
      getPrincipal: () => owner.getPrincipal(),
      transformRequest(request) {
        request.body.ingress_expiry = Expiry.fromDeltaInMilliseconds(3_600_000);
        return owner.transformRequest(request);
      },
    };
    for (const [what, identity, expect] of [
      ['delegation to other canisters', DelegationIdentity.fromDelegation(session, elsewhere), /target/i],
      ['expired delegation', DelegationIdentity.fromDelegation(session, expired), /expir/i],
      ['ingress_expiry an hour ahead', farExpiry, /^Invalid request expiry: /],
    ]) {
      const r = recordingFetch();
      const res = await rejects(canister(await makeAgent(identity, r, noRetry)).inc());
      assert.equal(res.ok, false, `${what}: the call was accepted`);
      const refused = r.log.filter((e) => /\/call$/.test(e.path));
      assert.ok(refused.length > 0 && refused.every((e) => e.status >= 400 && e.status < 500 && expect.test(e.text)), `${what}: ${JSON.stringify(r.log)}`);
      console.log(`# ${lib.name} ${what}: ${summary(refused)}`);
    }
    assert.equal(await canister(agent).counter(), before, 'a refused request executed');
  });

  test(`${lib.name}: a valid identity that is not a controller cannot install, upgrade or read the status`, async () => {
    const a = await makeAgent(stranger);
    const m = mgmt(a);
    const up = await rejects(m.install_code({
      mode: { upgrade: [] }, canister_id: canisterId, wasm_module: module, arg: new Uint8Array(IDL.encode([], [])), sender_canister_version: [],
    }));
    assert.equal(up.ok, false, 'a non-controller upgraded the canister');
    assert.match(`${up.error.rejectMessage} ${up.error.message}`, /controller/i, JSON.stringify(up.error));
    console.log(`# ${lib.name} non-controller install_code: ${JSON.stringify(up.error.rejectErrorCode)} ${JSON.stringify(up.error.rejectMessage)}`);
    const st = await rejects(m.canister_status({ canister_id: canisterId }));
    assert.equal(st.ok, false, 'a non-controller read canister_status');
    assert.match(`${st.error.rejectMessage}`, /controller/i, JSON.stringify(st.error));
    // The counter survived: nothing was reinstalled.
    assert.equal(await canister(agent).counter(), 5n);
  });

  test(`${lib.name}: the controller upgrades; stable memory keeps the greeting, the heap is reset`, async () => {
    const m = mgmt(agent);
    await m.install_code({
      mode: { upgrade: [{ skip_pre_upgrade: [], wasm_memory_persistence: [] }] },
      canister_id: canisterId,
      wasm_module: module,
      arg: new Uint8Array(IDL.encode([], [])),
      sender_canister_version: [],
    });
    const c = canister(agent);
    assert.equal(await c.greeting(), `hello from ${lib.name}`);
    assert.equal(await c.counter(), 0n);
    assert.equal(await c.inc(), 1n);
  });

  test(`${lib.name}: a query method called as an update runs replicated, replies, and commits nothing`, async () => {
    // The IC accepts query methods in update calls (replicated execution); their changes are discarded.
    const asUpdate = Actor.createActor(({ IDL: I }) => I.Service({
      replicated_in_query: I.Func([], [I.Bool], []),
      counter: I.Func([], [I.Nat64], []),
      set_in_query: I.Func([I.Text, I.Text], [I.Opt(I.Text)], []),
    }), { agent, canisterId });
    const r = await rejects(asUpdate.replicated_in_query());
    assert.ok(r.ok, `a query method called as an update was refused: ${JSON.stringify(r.error)}`);
    assert.equal(r.value, true, 'ic0.in_replicated_execution in a query method called as an update');
    assert.equal(await asUpdate.counter(), 1n);
    assert.deepEqual(await asUpdate.set_in_query('q', 'changed'), ['changed']);
    assert.deepEqual(await canister(agent).get('q'), [], 'a query method called as an update committed its change');
    const asQuery = Actor.createActor(({ IDL: I }) => I.Service({ replicated_in_query: I.Func([], [I.Bool], ['query']) }), { agent, canisterId });
    assert.equal(await asQuery.replicated_in_query(), false);
  });
}
