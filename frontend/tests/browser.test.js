// The page in a real browser (Debian's Chromium, headless, driven by playwright-core) through
// the HTTP gateway of `ic-host serve`: opened at http://<canister-id>.localhost:PORT/ on a walsh
// canister with char-tiny uploaded, "ROMEO:" greedy for 40 tokens gives the reference text in
// several chunks; Stop ends a running generation and the session is gone from the canister; a
// canister without a model says so; an unreachable network says so. Screenshots go to
// frontend/test-results/. Run with `npm test` after `npm run build`, scripts/build_canister.sh
// and `cargo build -p ic-host -p host-compressor` (tests/run.sh does all of it).
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { chromium } from 'playwright-core';
import { charTiny, controller, frontendDir, installWalsh, paths, startReplica, upload } from './lib/replica.js';

const CHROMIUM = process.env.CHROMIUM_BIN || '/usr/bin/chromium';
const artifacts = path.join(frontendDir, 'test-results');
const data = charTiny();
const skip = data ? false : `no char-tiny in ${paths.testdata}`;
if (skip && process.env.CI) throw new Error(`the browser tests need ${paths.testdata}/char-tiny`);

let replica;
let browser;
let admin;
let walsh; // with char-tiny
let empty; // without a model

before(async () => {
  if (skip) return;
  fs.mkdirSync(artifacts, { recursive: true });
  replica = await startReplica();
  admin = await controller(replica.url);
  walsh = await installWalsh(admin);
  await upload(walsh.actor, 'Model', data.model);
  await upload(walsh.actor, 'Tokenizer', data.tokenizer);
  empty = await installWalsh(admin);
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    // As this machine runs Chromium: no sandbox as root, nothing reaching out to the network.
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
});

after(async () => {
  await browser?.close();
  await replica?.stop();
});

/** A fresh visitor (its own identity in its own storage) on `url`; browser errors fail the test. */
async function visit(url, { viewport = { width: 1000, height: 900 } } = {}) {
  const context = await browser.newContext({ viewport });
  const page = await context.newPage();
  const problems = [];
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  page.on('console', (m) => {
    if (m.type() === 'error') problems.push(`console error: ${m.text()}`);
  });
  await page.goto(url);
  return { page, context, problems };
}

const chunks = (page) => page.$$eval('#output .chunk', (spans) => spans.map((s) => s.textContent));
const state = (page) => page.evaluate(() => document.body.dataset.state);

/** Slows the page's update calls, as the IC's rounds do (a call takes a second or two there). */
async function roundsOf(page, millis) {
  await page.route(/\/api\/v\d\/canister\/[^/]+\/call$/, async (route) => {
    await new Promise((r) => setTimeout(r, millis));
    await route.continue();
  });
}

async function fill(page, { prompt, maxTokens, temperature, callBudget }) {
  await page.fill('#prompt', prompt);
  await page.click('#parameters summary');
  await page.fill('#max-tokens', String(maxTokens));
  await page.fill('#temperature', String(temperature));
  await page.fill('#top-k', '');
  await page.fill('#top-p', '1');
  await page.fill('#seed', '1');
  await page.fill('#call-budget', String(callBudget));
}

test('the page shows the model and streams the reference greedy continuation in chunks', { skip }, async () => {
  const { page, context, problems } = await visit(`http://${walsh.id}.localhost:${replica.port}/`);
  await page.waitForFunction(() => document.body.dataset.state === 'ready', null, { timeout: 60_000 });
  const field = (name) => page.textContent(`#model-info dd[data-field="${name}"]`);
  assert.match(await field('layers'), /^2 × 8 heads, width 64/);
  assert.equal(await field('context'), '64 tokens');
  assert.equal(await field('vocabulary'), '65 tokens');
  assert.match(await field('tokenizer'), /^tokenizer\.json \(65 tokens, /);
  assert.equal(await page.textContent('#canister'), walsh.id);
  // 1 M instructions per call: char-tiny's 40 tokens take several calls.
  await fill(page, { prompt: 'ROMEO:', maxTokens: 40, temperature: 0, callBudget: 1_000_000 });
  await roundsOf(page, 120);
  await page.click('#generate');
  await page.waitForFunction(() => document.querySelectorAll('#output .chunk').length >= 3 && document.body.dataset.state === 'generating', null, { timeout: 60_000 });
  await page.screenshot({ path: path.join(artifacts, 'page-mid-generation.png'), fullPage: true });
  await page.waitForFunction(() => document.body.dataset.state !== 'generating', null, { timeout: 120_000 });
  assert.equal(await state(page), 'done', await page.textContent('#error'));
  const pieces = await chunks(page);
  assert.ok(pieces.length >= 2, `the text came in ${pieces.length} chunk(s)`);
  assert.equal(pieces.join(''), data.reference.walsh.decoded_text);
  assert.equal(await page.textContent('#output .prompt'), 'ROMEO:');
  assert.match(await page.textContent('#status'), /^Done: 40 tokens · [\d.]+ [MB] instructions · [\d.]+ tokens\/s — reached the token limit\.$/);
  await page.screenshot({ path: path.join(artifacts, 'page-done.png'), fullPage: true });
  // Fast mode: the same text from one query.
  await page.check('#fast');
  await page.click('#generate');
  await page.waitForFunction(() => document.body.dataset.state === 'done', null, { timeout: 60_000 });
  assert.deepEqual(await chunks(page), [data.reference.walsh.decoded_text]);
  assert.deepEqual(problems, []);
  await context.close();
});

test('Stop ends a running generation and cancels its session on the canister', { skip }, async () => {
  const { page, context, problems } = await visit(`http://${walsh.id}.localhost:${replica.port}/`);
  await page.waitForFunction(() => document.body.dataset.state === 'ready', null, { timeout: 60_000 });
  await fill(page, { prompt: 'ROMEO:', maxTokens: 58, temperature: 0, callBudget: 1_000_000 });
  await roundsOf(page, 400);
  // Other visitors' finished sessions may still be kept (until their next start): count ours.
  const before = (await walsh.actor.stats()).sessions;
  await page.click('#generate');
  await page.waitForFunction(() => document.querySelectorAll('#output .chunk').length >= 1, null, { timeout: 60_000 });
  assert.equal(await state(page), 'generating');
  const running = await walsh.actor.stats();
  assert.equal(running.sessions, before + 1n, 'the session runs on the canister');
  await page.click('#stop');
  await page.waitForFunction(() => document.body.dataset.state === 'stopped', null, { timeout: 60_000 });
  const stoppedAt = (await chunks(page)).join('');
  assert.ok(stoppedAt.length > 0 && stoppedAt.length < 58, `${stoppedAt.length} characters before the stop`);
  assert.match(await page.textContent('#status'), /^Stopped after \d+ tokens/);
  assert.equal((await walsh.actor.stats()).sessions, before, 'the session was cancelled on the canister');
  await new Promise((r) => setTimeout(r, 1500));
  assert.equal((await chunks(page)).join(''), stoppedAt, 'no text arrives after the stop');
  assert.equal(await page.isEnabled('#generate'), true);
  assert.deepEqual(problems, []);
  await context.close();
});

test('a canister without a model says so, on a phone-sized screen', { skip }, async () => {
  const { page, context, problems } = await visit(`http://${empty.id}.localhost:${replica.port}/`, { viewport: { width: 390, height: 844 } });
  await page.waitForFunction(() => document.body.dataset.state === 'no-model', null, { timeout: 60_000 });
  assert.match(await page.textContent('#notice'), /^No model has been uploaded to this canister yet\./);
  assert.equal(await page.isDisabled('#generate'), true);
  // Nothing is wider than the screen.
  assert.ok(await page.evaluate(() => document.documentElement.scrollWidth <= window.innerWidth), 'the page scrolls sideways on a phone');
  await page.screenshot({ path: path.join(artifacts, 'page-no-model-phone.png'), fullPage: true });
  assert.deepEqual(problems, []);
  await context.close();
});

test('the page also works at /?canisterId= and says when the network is down', { skip }, async () => {
  const { page, context } = await visit(`http://127.0.0.1:${replica.port}/?canisterId=${walsh.id}`);
  await page.waitForFunction(() => document.body.dataset.state === 'ready', null, { timeout: 60_000 });
  await page.route(/\/api\//, (route) => route.abort('internetdisconnected'));
  await page.fill('#prompt', 'ROMEO:');
  await page.click('#generate');
  await page.waitForFunction(() => document.body.dataset.state === 'error', null, { timeout: 60_000 }).catch(async (e) => {
    throw new Error(`${e.message}; state ${await state(page)}, status ${await page.textContent('#status')}, error ${await page.textContent('#error')}`);
  });
  assert.equal(await page.getAttribute('#error', 'data-kind'), 'Network');
  assert.match(await page.textContent('#error'), /^Cannot reach the Internet Computer/);
  await context.close();
});
