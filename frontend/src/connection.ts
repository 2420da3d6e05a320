// Where the page runs and who it is: the canister id and the network come from the page's own
// origin (https://<canister-id>.icp0.io on the IC, http://<canister-id>.localhost:<port> on a local
// replica), else from `?canisterId=` (a gateway that serves /?canisterId=…), else from the
// build's VITE_CANISTER_ID (development). The visitor signs with an ephemeral Ed25519 identity
// made on the first visit and kept in this browser, so that sessions belong to one visitor.
import { HttpAgent } from '@icp-sdk/core/agent';
import { Ed25519KeyIdentity } from '@icp-sdk/core/identity';
import { Principal } from '@icp-sdk/core/principal';
import { createActor, type Walsh } from './bindings/walsh';

export interface Connection {
  canisterId: string;
  /** The API host the agent talks to. */
  host: string;
  local: boolean;
  identity: Ed25519KeyIdentity;
  walsh: Walsh;
}

const IDENTITY_KEY = 'walsh.identity.v1';
const MAINNET_API = 'https://icp-api.io';

function isPrincipal(text: string): boolean {
  try {
    Principal.fromText(text);
    return true;
  } catch {
    return false;
  }
}

/** A local replica: localhost, *.localhost, 127.0.0.1, ::1. */
export function isLocal(hostname: string): boolean {
  return hostname === 'localhost' || hostname.endsWith('.localhost') || hostname === '127.0.0.1' || hostname === '[::1]';
}

/** The canister this page belongs to, or null when nothing names one. */
export function canisterIdOf(location: Location): string | null {
  const first = location.hostname.split('.')[0];
  if (location.hostname.includes('.') && isPrincipal(first)) return first;
  const param = new URLSearchParams(location.search).get('canisterId');
  if (param && isPrincipal(param)) return param;
  const built = import.meta.env.VITE_CANISTER_ID as string | undefined;
  return built && isPrincipal(built) ? built : null;
}

/** The visitor's identity: the one kept in this browser, or a new one (then kept). */
export function visitorIdentity(storage: Storage | null = globalThis.localStorage ?? null): Ed25519KeyIdentity {
  const kept = storage?.getItem(IDENTITY_KEY);
  if (kept) {
    try {
      return Ed25519KeyIdentity.fromJSON(kept);
    } catch {
      // A damaged entry: start over with a new identity.
    }
  }
  const identity = Ed25519KeyIdentity.generate();
  try {
    storage?.setItem(IDENTITY_KEY, JSON.stringify(identity.toJSON()));
  } catch {
    // Storage refused (private mode): the identity lasts as long as the page.
  }
  return identity;
}

export async function connect(canisterId: string, location: Location): Promise<Connection> {
  const local = isLocal(location.hostname);
  const override = import.meta.env.VITE_IC_HOST as string | undefined;
  // Locally the API is the page's own origin (ic-host serve and the Vite dev proxy both serve it).
  const host = override || (local ? location.origin : MAINNET_API);
  const identity = visitorIdentity();
  // Only a local replica's root key is fetched; the IC's is built into the agent.
  const agent = await HttpAgent.create({ host, identity, shouldFetchRootKey: isLocal(new URL(host).hostname) });
  return { canisterId, host, local, identity, walsh: createActor(canisterId, { agent }) };
}
