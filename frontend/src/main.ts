// The page: the model, a prompt, sampling parameters, and the continuation as it is generated.
// `document.body.dataset.state` says where it is (loading, ready, no-model, generating, done,
// stopped, error), for people who script it (the browser test does).
import './style.css';
import type { GenerateRequest, ModelInfo } from './bindings/walsh';
import { canisterIdOf, connect, type Connection } from './connection';
import { WalshError, describe, fromThrown } from './errors';
import { generate, generateOnce } from './walsh-client';

type State = 'loading' | 'ready' | 'no-model' | 'generating' | 'done' | 'stopped' | 'error';

const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;
const form = $<HTMLFormElement>('form');
const promptBox = $<HTMLTextAreaElement>('prompt');
const generateButton = $<HTMLButtonElement>('generate');
const stopButton = $<HTMLButtonElement>('stop');
const output = $<HTMLPreElement>('output');
const status = $<HTMLParagraphElement>('status');
const errorBox = $<HTMLParagraphElement>('error');
const notice = $<HTMLParagraphElement>('notice');

let connection: Connection | null = null;
let running: AbortController | null = null;

function setState(state: State) {
  document.body.dataset.state = state;
  generateButton.disabled = state === 'loading' || state === 'no-model' || state === 'generating' || connection === null;
  stopButton.disabled = state !== 'generating';
}

function showError(e: unknown) {
  const error = fromThrown(e);
  errorBox.textContent = error.message;
  errorBox.dataset.kind = error.kind;
  errorBox.hidden = false;
}

function clearError() {
  errorBox.hidden = true;
  errorBox.textContent = '';
  delete errorBox.dataset.kind;
}

const bytes = (v: bigint) => {
  const b = Number(v);
  return b >= 1e6 ? `${(b / 1e6).toFixed(1)} MB` : b >= 1e3 ? `${(b / 1e3).toFixed(1)} kB` : `${b} B`;
};
const hex = (b: Uint8Array) => Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
const count = (v: bigint | number) => Number(v).toLocaleString('en-US');
/** Instructions: 2.41 B, 35.2 M, 9,512. */
const instructionsText = (v: bigint) => {
  const x = Number(v);
  return x >= 1e9 ? `${(x / 1e9).toFixed(2)} B` : x >= 1e6 ? `${(x / 1e6).toFixed(1)} M` : count(x);
};

/** A name for the model: its header's `name` when it has one, else a short sha256. */
function modelName(info: ModelInfo): string {
  try {
    const header = JSON.parse(info.config_json) as Record<string, unknown>;
    for (const key of ['name', 'model_name']) {
      const value = header[key] ?? (header.config as Record<string, unknown> | undefined)?.[key];
      if (typeof value === 'string' && value) return value;
    }
  } catch {
    // Not JSON: the name falls back to the hash.
  }
  return `walsh-${hex(info.model_sha256).slice(0, 12)}`;
}

function showModel(info: ModelInfo) {
  const rows: [string, string][] = [
    ['Name', modelName(info)],
    ['Size', bytes(info.model_bytes)],
    ['Layers', `${info.n_layer} × ${info.n_head} heads, width ${info.n_embd}${info.head_mixing ? ', head mixing' : ''}`],
    ['Context', `${count(info.block_size)} tokens`],
    ['Vocabulary', `${count(info.vocab_size)} tokens`],
    ['Tokenizer', info.tokenizer ? `${info.tokenizer.kind} (${count(info.tokenizer.vocab_size)} tokens, ${bytes(info.tokenizer.bytes)})` : 'none uploaded'],
  ];
  const list = $<HTMLDListElement>('model-info');
  list.replaceChildren();
  for (const [name, value] of rows) {
    const dt = document.createElement('dt');
    dt.textContent = name;
    const dd = document.createElement('dd');
    dd.textContent = value;
    dd.dataset.field = name.toLowerCase();
    list.append(dt, dd);
  }
  // At most a context's worth of tokens (the canister stops there anyway).
  const max = $<HTMLInputElement>('max-tokens');
  max.max = String(Math.min(4096, info.block_size));
  if (Number(max.value) > Number(max.max)) max.value = max.max;
}

function number(id: string): number | undefined {
  const text = $<HTMLInputElement>(id).value.trim();
  return text === '' ? undefined : Number(text);
}

function request(): GenerateRequest {
  const seed = number('seed');
  const topK = number('top-k');
  return {
    prompt: promptBox.value,
    max_tokens: Math.max(1, Math.floor(number('max-tokens') ?? 100)),
    temperature: number('temperature') ?? 0.8,
    top_k: topK === undefined ? undefined : Math.floor(topK),
    top_p: number('top-p'),
    seed: seed === undefined ? undefined : BigInt(Math.floor(seed)),
  };
}

function callBudget(): bigint {
  const budget = number('call-budget');
  return BigInt(Math.floor(budget && budget >= 1e6 ? budget : 2e9));
}

const stopWords: Record<string, string> = {
  MaxTokens: 'reached the token limit',
  EndOfText: 'the model ended the text',
  ContextFull: "the model's context is full",
  Budget: 'the query’s instruction limit was reached (turn fast mode off for more)',
};

function report(tokens: number, instructions: bigint, millis: number, how: string) {
  const perSecond = millis > 0 ? (tokens * 1000) / millis : 0;
  status.textContent = `${how} ${count(tokens)} tokens · ${instructionsText(instructions)} instructions · ${perSecond.toFixed(1)} tokens/s`;
}

function appendChunk(text: string) {
  const span = document.createElement('span');
  span.className = 'chunk';
  span.textContent = text;
  output.append(span);
}

async function run(event: SubmitEvent) {
  event.preventDefault();
  if (!connection || running) return;
  clearError();
  const req = request();
  output.replaceChildren();
  const prompt = document.createElement('span');
  prompt.className = 'prompt';
  prompt.textContent = req.prompt;
  output.append(prompt);
  const abort = new AbortController();
  running = abort;
  setState('generating');
  const started = performance.now();
  let tokens = 0;
  let instructions = 0n;
  let stop: string | undefined;
  try {
    if ($<HTMLInputElement>('fast').checked) {
      status.textContent = 'Generating in one query…';
      const g = await generateOnce(connection.walsh, req);
      appendChunk(g.text);
      tokens = g.ids.length;
      instructions = g.instructions;
      stop = g.stop;
    } else {
      status.textContent = 'Reading the prompt…';
      for await (const chunk of generate(connection.walsh, req, { signal: abort.signal, callBudget: callBudget() })) {
        if (chunk.text) appendChunk(chunk.text);
        tokens += chunk.ids.length;
        instructions += chunk.instructions;
        stop = chunk.stop;
        if (chunk.promptRemaining > 0n) status.textContent = `Reading the prompt (${count(chunk.promptRemaining)} tokens)…`;
        else report(tokens, instructions, performance.now() - started, 'Generating:');
      }
    }
    const millis = performance.now() - started;
    if (abort.signal.aborted) {
      report(tokens, instructions, millis, 'Stopped after');
      setState('stopped');
    } else {
      report(tokens, instructions, millis, 'Done:');
      status.textContent += stop ? ` — ${stopWords[stop] ?? stop}.` : '.';
      setState('done');
    }
  } catch (e) {
    showError(e);
    if (tokens > 0) report(tokens, instructions, performance.now() - started, 'Interrupted after');
    else status.textContent = '';
    setState(e instanceof WalshError && e.kind === 'NoModel' ? 'no-model' : 'error');
  } finally {
    running = null;
    if (document.body.dataset.state === 'generating') setState('done');
    else setState(document.body.dataset.state as State);
  }
}

function stopGeneration() {
  if (!running) return;
  running.abort();
  stopButton.disabled = true;
  status.textContent = 'Stopping after the call in flight…';
}

async function start() {
  setState('loading');
  const canisterId = canisterIdOf(window.location);
  if (!canisterId) {
    $('network').textContent = 'No canister';
    notice.textContent = 'This page does not know which canister to use. Open it at https://<canister-id>.icp0.io, http://<canister-id>.localhost:<port>, or add ?canisterId=<canister-id> to the address.';
    notice.hidden = false;
    setState('error');
    return;
  }
  $('canister').textContent = canisterId;
  try {
    connection = await connect(canisterId, window.location);
  } catch (e) {
    $('network').textContent = 'Offline';
    showError(e);
    setState('error');
    return;
  }
  $('network').textContent = connection.local ? 'Local replica' : 'Internet Computer';
  $('principal').textContent = connection.identity.getPrincipal().toText();
  try {
    const info = await connection.walsh.model_info();
    if (info.__kind__ === 'Err') {
      notice.textContent = describe(info.Err);
      notice.hidden = false;
      setState(info.Err.__kind__ === 'NoModel' ? 'no-model' : 'error');
      return;
    }
    showModel(info.Ok);
    if (!info.Ok.tokenizer) {
      notice.textContent = 'This canister has a model but no tokenizer yet; its controller needs to upload one.';
      notice.hidden = false;
      setState('no-model');
      return;
    }
    setState('ready');
  } catch (e) {
    showError(e);
    setState('error');
  }
}

form.addEventListener('submit', (e) => void run(e));
stopButton.addEventListener('click', stopGeneration);
void start();
