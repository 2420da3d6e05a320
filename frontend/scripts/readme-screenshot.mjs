// The README's screenshot: the page mid-generation through ic-host serve's gateway, on
// author-512 (a 1 MB char-level Shakespeare model) at 100 M instructions per call, so that its
// text arrives in pieces as a larger model's does at the default 2 B. Paths as in tests/lib/replica.js.
//   node scripts/readme-screenshot.mjs [OUT.png]     (default ../docs/frontend.png)
import fs from 'node:fs';
import path from 'node:path';
import { chromium } from 'playwright-core';
import { controller, frontendDir, installWalsh, paths, startReplica, tokenizerOf, upload } from '../tests/lib/replica.js';

const out = path.resolve(process.argv[2] || path.join(frontendDir, '../docs/frontend.png'));
const set = path.join(paths.testdata, 'author-512');
const replica = await startReplica();
try {
  const admin = await controller(replica.url);
  const walsh = await installWalsh(admin);
  await upload(walsh.actor, 'Model', fs.readFileSync(path.join(set, 'model.walsh')));
  await upload(walsh.actor, 'Tokenizer', tokenizerOf(set));
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM_BIN || '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  const page = await (await browser.newContext({ viewport: { width: 900, height: 1000 }, deviceScaleFactor: 1 })).newPage();
  await page.goto(`http://${walsh.id}.localhost:${replica.port}/`);
  await page.waitForFunction(() => document.body.dataset.state === 'ready', null, { timeout: 60_000 });
  await page.fill('#prompt', 'ROMEO:');
  await page.click('#parameters summary');
  await page.fill('#max-tokens', '240');
  await page.fill('#seed', '7');
  await page.fill('#call-budget', '100000000');
  // A call takes a second or two on the IC; here a few milliseconds.
  await page.route(/\/api\/v\d\/canister\/[^/]+\/call$/, async (route) => {
    await new Promise((r) => setTimeout(r, 700));
    await route.continue();
  });
  await page.click('#generate');
  await page.waitForFunction(() => document.querySelectorAll('#output .chunk').length >= 10, null, { timeout: 300_000 });
  await page.screenshot({ path: out, fullPage: true });
  await page.click('#stop');
  await page.waitForFunction(() => document.body.dataset.state === 'stopped', null, { timeout: 300_000 });
  console.log(`wrote ${out}: ${await page.textContent('#status')}`);
  await browser.close();
} finally {
  await replica.stop();
}
