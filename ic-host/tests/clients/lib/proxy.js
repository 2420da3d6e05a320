// A recording reverse proxy in front of `ic-host serve`: every exchange (method, path, the
// request's decoded content, status, the decoded reply or error text) goes to a list, so a failing
// client step can show exactly what was sent and answered. Used by icp_cli.test.js.
import http from 'node:http';
import { Cbor } from '@icp-sdk/core/agent';
import { Principal } from '@icp-sdk/core/principal';

const PRINCIPAL_KEYS = new Set(['canister_id', 'sender', 'identity']);
const show = (v, key) => {
  if (v instanceof Uint8Array) {
    if (PRINCIPAL_KEYS.has(key) && v.length <= 29) return `principal ${Principal.fromUint8Array(v).toText()}`;
    const text = Buffer.from(v).toString('utf8');
    if (key === 'label' && /^[\x20-\x7e]+$/.test(text)) return text;
    const h = Buffer.from(v).toString('hex');
    return v.length > 48 ? `blob(${v.length}) ${h.slice(0, 64)}…` : `blob ${h}`;
  }
  if (typeof v === 'bigint') return v.toString();
  if (Array.isArray(v)) return v.map((x) => show(x, key === 'paths' || key === 'label' ? 'label' : undefined));
  if (v && typeof v === 'object') {
    const o = {};
    for (const [k, x] of Object.entries(v)) {
      o[k] = k === 'tree' ? '(tree)' : ['signature', 'sender_sig', 'sender_pubkey'].includes(k) ? `(${x?.length} B)` : show(x, k);
    }
    return o;
  }
  return v;
};

function decode(buf, contentType) {
  if (!buf.length) return null;
  if (/cbor/.test(contentType ?? '') || buf[0] === 0xd9) {
    try { return show(Cbor.decode(new Uint8Array(buf))); } catch (e) { return `undecodable CBOR (${e.message})`; }
  }
  return buf.toString('utf8').slice(0, 2000);
}

export async function startProxy(target) {
  const exchanges = [];
  const up = new URL(target);
  const server = http.createServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      const entry = { method: req.method, path: req.url, request: decode(body, req.headers['content-type']), status: null, response: null };
      exchanges.push(entry);
      const fwd = http.request({
        host: up.hostname, port: up.port, method: req.method, path: req.url,
        headers: { ...req.headers, host: up.host },
      }, (r) => {
        const out = [];
        r.on('data', (c) => out.push(c));
        r.on('end', () => {
          const rb = Buffer.concat(out);
          entry.status = r.statusCode;
          entry.response = decode(rb, r.headers['content-type']);
          res.writeHead(r.statusCode, r.headers);
          res.end(rb);
        });
      });
      fwd.on('error', (e) => {
        entry.status = 'proxy error';
        entry.response = e.message;
        res.writeHead(502);
        res.end(`proxy: ${e.message}`);
      });
      fwd.end(body);
    });
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${server.address().port}`,
    exchanges,
    close: () => new Promise((resolve) => { server.closeAllConnections?.(); server.close(resolve); }),
  };
}

/** One line per exchange: `POST /api/v4/canister/…/call {method_name…} → 200 {status…}`. */
export function formatExchanges(list) {
  return list.map((e) => {
    const c = e.request?.content ?? e.request;
    const req = c && typeof c === 'object'
      ? JSON.stringify({ request_type: c.request_type, canister_id: c.canister_id, method_name: c.method_name, paths: c.paths, arg: c.arg })
      : JSON.stringify(c);
    return `${e.method} ${e.path} ${req} → ${e.status} ${JSON.stringify(e.response)}`;
  }).join('\n');
}
