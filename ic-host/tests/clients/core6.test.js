// @icp-sdk/core 6.1.0 against `ic-host serve` (v4 call, v3 query and read_state).
import * as agent from '@icp-sdk/core/agent';
import { IDL } from '@icp-sdk/core/candid';
import { Principal } from '@icp-sdk/core/principal';
import { Ed25519KeyIdentity, ECDSAKeyIdentity, DelegationChain, DelegationIdentity } from '@icp-sdk/core/identity';
import { agentSuite } from './lib/agent_suite.js';

agentSuite({
  name: '@icp-sdk/core 6.1.0',
  agent, IDL, Principal, Ed25519KeyIdentity, ECDSAKeyIdentity, DelegationChain, DelegationIdentity,
  gzip: false,
  callPath: /^\/api\/v4\/canister\/[^/]+\/call$/,
});
