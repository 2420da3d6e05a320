// Every failure in words: the canister's typed errors (walsh.did `Error`) and what the network
// or the agent throws. A visitor never sees a raw Candid value.
import { AgentError, CertifiedRejectErrorCode, HttpErrorCode, HttpFetchErrorCode, UncertifiedRejectErrorCode, UncertifiedRejectUpdateErrorCode } from '@icp-sdk/core/agent';
import type { Error_ } from './bindings/walsh';

export type ErrorKind = Error_['__kind__'] | 'Network' | 'Rejected' | 'Unexpected';

export class WalshError extends Error {
  constructor(
    readonly kind: ErrorKind,
    message: string,
    readonly detail?: unknown,
  ) {
    super(message);
    this.name = 'WalshError';
  }
}

/** The value of an `Ok`, or a `WalshError` for an `Err`. */
export function unwrap<T>(result: { __kind__: 'Ok'; Ok: T } | { __kind__: 'Err'; Err: Error_ }): T {
  if (result.__kind__ === 'Ok') return result.Ok;
  throw new WalshError(result.Err.__kind__, describe(result.Err), result.Err);
}

const n = (v: bigint | number) => Number(v).toLocaleString('en-US');

/** A canister error, for a visitor (the controller-only upload errors, for a controller). */
export function describe(e: Error_): string {
  switch (e.__kind__) {
    case 'NoModel':
      return 'No model has been uploaded to this canister yet. Its controller can upload one (walsh upload, or scripts/upload_model.sh).';
    case 'NoTokenizer':
      return 'This canister has a model but no tokenizer yet; its controller needs to upload one.';
    case 'EmptyPrompt':
      return 'Type a prompt first — one made of characters this model knows.';
    case 'PromptTooLong':
      return `The prompt is ${n(e.PromptTooLong.tokens)} tokens long, and this model's context holds ${n(e.PromptTooLong.limit)}. Shorten it.`;
    case 'PromptNeedsSession':
      return 'This prompt is too long for fast mode (one query); turn fast mode off to generate through a session.';
    case 'TooManySessions':
      return `Too many generations are running at once (the limit is ${n(e.TooManySessions.limit)}). Stop one, or try again in a moment.`;
    case 'UnknownSession':
      return 'The generation is no longer on the canister (it was idle too long, or the canister was upgraded). Start it again.';
    case 'NotYourSession':
      return 'That generation belongs to another visitor.';
    case 'InvalidArgument':
      return `The canister refused the request: ${e.InvalidArgument}.`;
    case 'NotAuthorized':
      return 'Only the canister’s controllers may do that.';
    case 'Incompatible':
      return `The tokenizer does not fit the model: ${e.Incompatible}.`;
    case 'InvalidModel':
      return `The model file was refused: ${e.InvalidModel}.`;
    case 'InvalidTokenizer':
      return `The tokenizer was refused: ${e.InvalidTokenizer}.`;
    case 'UploadNotStarted':
      return 'No upload is in progress.';
    case 'ChunkTooLarge':
      return `An upload chunk may hold at most ${n(e.ChunkTooLarge.max)} bytes.`;
    case 'ChunkOutOfOrder':
      return `The upload must continue at byte ${n(e.ChunkOutOfOrder.expected_offset)}.`;
    case 'ChunkMismatch':
      return `A resent upload chunk differs from the bytes received at ${n(e.ChunkMismatch.offset)}.`;
    case 'BlobTooLarge':
      return `The file is larger than the canister accepts (${n(e.BlobTooLarge.max)} bytes).`;
    case 'SizeMismatch':
      return `The upload is ${n(e.SizeMismatch.received)} bytes, not the ${n(e.SizeMismatch.expected)} announced.`;
    case 'HashMismatch':
      return 'The uploaded bytes do not match their sha256.';
    case 'StableMemoryFull':
      return 'The canister’s stable memory cannot grow to hold the file.';
    case 'AnonymousCaller':
      return 'Generations belong to a signed-in caller, and this page called anonymously. Reload the page (it makes a key for you).';
    case 'HeapBudgetExceeded':
      return `The canister is busy: its memory for generations is taken (${n(e.HeapBudgetExceeded.available)} bytes free, this one may need ${n(e.HeapBudgetExceeded.needed)}). Try again in a moment, or ask for fewer tokens.`;
    case 'Internal':
      return `The canister failed on its side: ${e.Internal}.`;
  }
}

/** Whatever a call threw, as a `WalshError` in words. */
export function fromThrown(e: unknown): WalshError {
  if (e instanceof WalshError) return e;
  if (e instanceof AgentError) {
    if (e.hasCode(HttpFetchErrorCode)) {
      return new WalshError('Network', 'Cannot reach the Internet Computer: the network is down or the replica is not running. Try again.', e);
    }
    const code = e.cause.code;
    if (code instanceof CertifiedRejectErrorCode || code instanceof UncertifiedRejectErrorCode || code instanceof UncertifiedRejectUpdateErrorCode) {
      if (code.rejectCode === 3) {
        return new WalshError('Rejected', 'This canister does not exist on this network, or has no code installed.', e);
      }
      if (code.rejectErrorCode === 'IC0207' || /out of cycles/i.test(code.rejectMessage)) {
        return new WalshError('Rejected', 'The canister is out of cycles; its controller needs to top it up.', e);
      }
      return new WalshError('Rejected', `The canister refused the call: ${firstLine(code.rejectMessage)}`, e);
    }
    if (code instanceof HttpErrorCode) {
      return new WalshError('Network', `The Internet Computer answered HTTP ${code.status} ${code.statusText}. Try again.`, e);
    }
    return new WalshError('Unexpected', `The call failed: ${firstLine(e.message)}`, e);
  }
  if (e instanceof TypeError && /fetch/i.test(e.message)) {
    return new WalshError('Network', 'Cannot reach the Internet Computer: the network is down or the replica is not running. Try again.', e);
  }
  return new WalshError('Unexpected', `Something went wrong: ${firstLine(e instanceof Error ? e.message : String(e))}`, e);
}

function firstLine(text: string): string {
  const line = text.split('\n').find((l) => l.trim()) ?? text;
  return line.length > 200 ? `${line.slice(0, 200)}…` : line;
}
