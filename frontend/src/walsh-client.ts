// walsh-client: generation from a Walsh canister as an async iterator of text chunks.
//
//   const walsh = createActor(canisterId, { agent });            // bindings from walsh.did
//   const stop = new AbortController();
//   for await (const chunk of generate(walsh, { prompt: 'ROMEO:', max_tokens: 40 }, { signal: stop.signal })) {
//     output.textContent += chunk.text;
//   }
//
// Each chunk is one `session_start` / `session_continue` update call, which runs for at most
// `callBudget` instructions (default 2 B: about one round of the IC, ~60 tokens of a 27 MB
// model), so text arrives every round or two instead of once per 20 B. Aborting the signal (or
// leaving the loop) ends the iteration after the call in flight and cancels the session on the
// canister. Failures throw a `WalshError` whose `message` is in words (errors.ts).
// `generateOnce` is the fast mode: one `generate` query, as many tokens as fit in a query.
// Copy this file with errors.ts, or import it; it needs only the generated bindings.
import type { CallOptions, GenerateRequest, Generation, SessionChunk, Walsh } from './bindings/walsh';
import { WalshError, unwrap, fromThrown } from './errors';

export { WalshError };

/** About one round of the IC (2 B instructions per slice). */
export const DEFAULT_CALL_BUDGET = 2_000_000_000n;

export interface GenerateOptions {
  /** Ends the generation after the call in flight; the session is cancelled on the canister. */
  signal?: AbortSignal;
  /** Instructions each call may use (the canister caps it by its controller's setting). */
  callBudget?: bigint;
}

export interface Chunk {
  session: bigint;
  /** Text completed by this call (never half a character). */
  text: string;
  ids: Uint32Array;
  /** Prompt tokens still to process before the first new token. */
  promptRemaining: bigint;
  instructions: bigint;
  /** Set on the last chunk: why the generation ended. */
  stop?: SessionChunk['stop'];
  /** Wall time of the call, in milliseconds. */
  millis: number;
}

function chunkOf(c: SessionChunk, millis: number): Chunk {
  return { session: c.session, text: c.text, ids: c.ids, promptRemaining: c.prompt_remaining, instructions: c.instructions, stop: c.stop, millis };
}

async function timed<T>(call: () => Promise<T>): Promise<[T, number]> {
  const start = performance.now();
  try {
    const value = await call();
    return [value, performance.now() - start];
  } catch (e) {
    throw fromThrown(e);
  }
}

/** The continuation of `request`, chunk by chunk, through an update session. */
export async function* generate(walsh: Walsh, request: GenerateRequest, options: GenerateOptions = {}): AsyncGenerator<Chunk, void, undefined> {
  const budget: CallOptions = { call_budget: options.callBudget ?? DEFAULT_CALL_BUDGET };
  options.signal?.throwIfAborted();
  const [started, millis] = await timed(() => walsh.session_start(request, budget));
  let chunk = chunkOf(unwrap(started), millis);
  try {
    yield chunk;
    while (!chunk.stop && !options.signal?.aborted) {
      const session = chunk.session;
      const [next, millis] = await timed(() => walsh.session_continue(session, null));
      chunk = chunkOf(unwrap(next), millis);
      // Text of a call that returned after the abort is not shown: the visitor asked to stop.
      if (options.signal?.aborted) break;
      yield chunk;
    }
  } finally {
    // Aborted, left early or failed: the canister frees the session (its key/value cache) now
    // instead of at its idle timeout.
    if (!chunk.stop) await cancel(walsh, chunk.session);
  }
}

/** Cancels a session; one that already ended is not an error. */
export async function cancel(walsh: Walsh, session: bigint): Promise<void> {
  const [result] = await timed(() => walsh.session_cancel(session));
  if (result.__kind__ === 'Err' && result.Err.__kind__ !== 'UnknownSession') unwrap(result);
}

/** Fast mode: one `generate` query, as many tokens as fit in the query's instruction limit. */
export async function generateOnce(walsh: Walsh, request: GenerateRequest): Promise<Generation & { millis: number }> {
  const [result, millis] = await timed(() => walsh.generate(request));
  return { ...unwrap(result), millis };
}
