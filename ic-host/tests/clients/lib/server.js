// Starts and stops `ic-host serve` for the client tests. The binary is $IC_HOST_BIN, else the
// repository's target/release/ic-host. Each server's pid is also written to $IC_HOST_PID_DIR (when
// set, by run.sh) so that run.sh's trap can stop servers a crashed test left behind.
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const here = path.dirname(fileURLToPath(import.meta.url));
export const repoRoot = path.resolve(here, '../../../..');

export function icHostBin() {
  return process.env.IC_HOST_BIN || path.join(repoRoot, 'target/release/ic-host');
}

/** Starts a server on a free port; resolves once it has printed its address and root key. */
export async function startServer({ stateDir, controller, extraArgs = [], timeoutMs = 60_000 } = {}) {
  const args = ['serve', '--port', '0'];
  if (stateDir) args.push('--state-dir', stateDir);
  if (controller) args.push('--controller', controller);
  args.push(...extraArgs);
  const proc = spawn(icHostBin(), args, { stdio: ['ignore', 'pipe', 'pipe'] });
  if (process.env.IC_HOST_PID_DIR && proc.pid) {
    fs.writeFileSync(path.join(process.env.IC_HOST_PID_DIR, String(proc.pid)), '');
  }
  let stdout = '';
  let stderr = '';
  const log = [];
  proc.stdout.setEncoding('utf8');
  proc.stderr.setEncoding('utf8');
  proc.stderr.on('data', (d) => {
    stderr += d;
    log.push(d);
    if (process.env.IC_HOST_VERBOSE) process.stderr.write(`[ic-host] ${d}`);
  });
  const ready = new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`ic-host serve printed no address in ${timeoutMs} ms; stdout:\n${stdout}\nstderr:\n${stderr}`)), timeoutMs);
    proc.on('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`ic-host serve exited (${code ?? signal}) before it was ready; stdout:\n${stdout}\nstderr:\n${stderr}`));
    });
    proc.on('error', (e) => {
      clearTimeout(timer);
      reject(new Error(`cannot run ${icHostBin()}: ${e.message}`));
    });
    proc.stdout.on('data', (d) => {
      stdout += d;
      log.push(d);
      const url = stdout.match(/ic-host serve: listening on (http:\/\/\S+)/);
      const subnet = stdout.match(/subnet (\S+)\s+\(root key ([0-9a-f]+)\)/);
      if (url && subnet) {
        clearTimeout(timer);
        resolve({ url: url[1].replace(/\/$/, ''), subnetId: subnet[1], rootKeyHex: subnet[2] });
      }
    });
  });
  let info;
  try {
    info = await ready;
  } catch (e) {
    proc.kill('SIGKILL');
    throw e;
  }
  const exited = once(proc, 'exit');
  return {
    ...info,
    proc,
    output: () => log.join(''),
    /** SIGTERM, then waits for the exit (SIGKILL after 10 s); returns the exit code or signal. */
    async stop() {
      if (proc.exitCode !== null || proc.signalCode !== null) return proc.exitCode ?? proc.signalCode;
      proc.kill('SIGTERM');
      const timer = setTimeout(() => proc.kill('SIGKILL'), 10_000);
      const [code, signal] = await exited;
      clearTimeout(timer);
      if (process.env.IC_HOST_PID_DIR) fs.rmSync(path.join(process.env.IC_HOST_PID_DIR, String(proc.pid)), { force: true });
      return code ?? signal;
    },
  };
}

/** The root key's DER: 37-byte BLS12-381 G2 prefix + 96-byte key (spec §2.3). */
export const ROOT_KEY_DER_PREFIX = '308182301d060d2b0601040182dc7c0503010201060c2b0601040182dc7c05030201036100';
