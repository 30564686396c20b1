// Shared by the Node.js client programs: argument parsing, check reporting, key slots, and a
// tiny independent RESP2 client that asks the cluster's masters directly (never through the
// proxy) what the proxy could get wrong: where a slot is served, whether a client is blocked,
// where a subscription sits, whether a script is loaded, how many keys each master holds.
'use strict';
const net = require('net');

const WATCHDOG_MS = 60_000;

function args() {
  const out = { addr: '', nodes: [], protocol: undefined };
  const a = process.argv.slice(2);
  for (let i = 0; i < a.length; i++) {
    if (a[i] === '--addr') out.addr = a[++i];
    else if (a[i] === '--nodes') out.nodes = a[++i].split(',').filter(Boolean).map(Number);
    else if (a[i] === '--protocol') out.protocol = Number(a[++i]);
    else if (a[i] === '--package') out.package = a[++i];
    else throw new Error(`unknown argument ${a[i]}`);
  }
  if (!out.addr || out.nodes.length === 0) throw new Error('--addr and --nodes are required');
  const [host, port] = out.addr.split(':');
  out.host = host;
  out.port = Number(port);
  setTimeout(() => fail('watchdog', `still running after ${WATCHDOG_MS} ms`), WATCHDOG_MS).unref();
  return out;
}

function fail(check, got) {
  console.log(`FAIL ${check}: ${got}`);
  process.exit(1);
}

function ok(check, detail) {
  console.log(`ok ${check}: ${detail}`);
}

function expect(check, got, want) {
  const g = JSON.stringify(got);
  const w = JSON.stringify(want);
  if (g !== w) fail(check, `got ${g}, want ${w}`);
}

// Runs fn; a thrown error fails the check with its message.
async function step(check, fn) {
  try {
    return await fn();
  } catch (e) {
    fail(check, `error: ${e && e.stack ? e.stack : e}`);
  }
}

// Rejects with fn's outcome expected as an error: returns its message.
async function errorOf(check, fn) {
  try {
    const v = await fn();
    fail(check, `no error; got ${JSON.stringify(v)}`);
  } catch (e) {
    return e.message;
  }
}

async function eventually(check, cond) {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const [done, last] = await cond();
    if (done) return;
    if (Date.now() > deadline) fail(check, `never true; last: ${last}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

function within(check, promise, ms) {
  let t;
  return Promise.race([
    promise.finally(() => clearTimeout(t)),
    new Promise((_, rej) => {
      t = setTimeout(() => rej(new Error(`${check}: no answer in ${ms} ms`)), ms);
    }),
  ]);
}

function crc16(buf) {
  let crc = 0;
  for (const b of buf) {
    crc ^= b << 8;
    for (let i = 0; i < 8; i++) crc = crc & 0x8000 ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff;
  }
  return crc;
}

function slot(key) {
  let k = key;
  const s = k.indexOf('{');
  if (s >= 0) {
    const e = k.indexOf('}', s + 1);
    if (e > s + 1) k = k.slice(s + 1, e);
  }
  return crc16(Buffer.from(k)) % 16384;
}

// One RESP2 command to 127.0.0.1:port on a fresh connection. Replies: strings, numbers, null,
// arrays; an error reply rejects.
function direct(port, ...cmd) {
  return new Promise((resolve, reject) => {
    const sock = net.createConnection({ host: '127.0.0.1', port });
    let buf = Buffer.alloc(0);
    sock.setTimeout(5000, () => {
      sock.destroy();
      reject(new Error(`node ${port}: no reply to ${cmd[0]}`));
    });
    sock.on('error', reject);
    sock.on('data', (d) => {
      buf = Buffer.concat([buf, d]);
      const r = parse(buf, 0);
      if (r) {
        sock.destroy();
        if (r.value instanceof Error) reject(r.value);
        else resolve(r.value);
      }
    });
    const parts = [`*${cmd.length}\r\n`];
    for (const c of cmd) parts.push(`$${Buffer.byteLength(String(c))}\r\n${c}\r\n`);
    sock.write(parts.join(''));
  });
}

function parse(buf, i) {
  const eol = buf.indexOf('\r\n', i);
  if (eol < 0) return null;
  const t = String.fromCharCode(buf[i]);
  const line = buf.toString('utf8', i + 1, eol);
  const next = eol + 2;
  if (t === '+') return { value: line, end: next };
  if (t === '-') return { value: new Error(line), end: next };
  if (t === ':') return { value: Number(line), end: next };
  if (t === '$') {
    const n = Number(line);
    if (n < 0) return { value: null, end: next };
    if (buf.length < next + n + 2) return null;
    return { value: buf.toString('utf8', next, next + n), end: next + n + 2 };
  }
  if (t === '*') {
    const n = Number(line);
    if (n < 0) return { value: null, end: next };
    const out = [];
    let at = next;
    for (let k = 0; k < n; k++) {
      const r = parse(buf, at);
      if (!r) return null;
      out.push(r.value);
      at = r.end;
    }
    return { value: out, end: at };
  }
  throw new Error(`unexpected reply type ${t}`);
}

// The master (port) serving a slot, by the cluster's own CLUSTER SLOTS.
async function owner(nodes, s) {
  const ranges = await direct(nodes[0], 'CLUSTER', 'SLOTS');
  for (const r of ranges) if (r[0] <= s && s <= r[1]) return r[2][1];
  fail('CLUSTER SLOTS on a node', `nobody serves slot ${s}`);
}

// One key per master, named prefix:i.
async function perMaster(nodes, prefix) {
  const seen = new Set();
  const keys = [];
  for (let i = 0; keys.length < nodes.length; i++) {
    const k = `${prefix}:${i}`;
    const o = await owner(nodes, slot(k));
    if (!seen.has(o)) {
      seen.add(o);
      keys.push(k);
    }
    if (i > 1000) fail('keys per master', 'could not place a key on every master');
  }
  return keys;
}

async function blockedOnNodes(nodes) {
  let total = 0;
  const parts = [];
  for (const p of nodes) {
    const info = await direct(p, 'INFO', 'clients');
    const m = /blocked_clients:(\d+)/.exec(info);
    total += Number(m[1]);
    parts.push(`${p}=${m[1]}`);
  }
  return [total, parts.join(' ')];
}

async function numsubOn(port, channel) {
  const r = await direct(port, 'PUBSUB', 'NUMSUB', channel);
  return r[1];
}

async function scriptOnEveryNode(nodes, sha) {
  const out = [];
  for (const p of nodes) out.push((await direct(p, 'SCRIPT', 'EXISTS', sha))[0]);
  return out;
}

async function keysOnNodes(nodes, pattern) {
  const out = [];
  for (const p of nodes) out.push((await direct(p, 'KEYS', pattern)).length);
  return out;
}

const RUN = Date.now().toString(36);

module.exports = {
  args, fail, ok, expect, step, errorOf, eventually, within, slot, direct, owner, perMaster,
  blockedOnNodes, numsubOn, scriptOnEveryNode, keysOnNodes, RUN,
};
