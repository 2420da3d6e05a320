// @dfinity/agent 3.4.3 against `ic-host serve` (v3 call, v2 query and read_state); installs gzipped.
import * as agent from '@dfinity/agent';
import { IDL } from '@dfinity/candid';
import { Principal } from '@dfinity/principal';
import { Ed25519KeyIdentity, ECDSAKeyIdentity, DelegationChain, DelegationIdentity } from '@dfinity/identity';
import { agentSuite } from './lib/agent_suite.js';

agentSuite({
  name: '@dfinity/agent 3.4.3',
  agent, IDL, Principal, Ed25519KeyIdentity, ECDSAKeyIdentity, DelegationChain, DelegationIdentity,
  gzip: true,
  callPath: /^\/api\/v3\/canister\/[^/]+\/call$/,
});
