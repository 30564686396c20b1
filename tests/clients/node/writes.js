// The failover write loop of tests/clients/go/writes.go for the Node.js clients, each with its
// defaults: `--client ioredis` is `new Redis({host, port})` (ioredis 6: RESP3, offline queue,
// reconnect with backoff, 20 retries per request, no command timeout), `--client node-redis` is
// `createClient({url})` (node-redis 5: RESP2, reconnect with backoff, no command timeout), and
// `--client node-redis6` the same with node-redis 6 (`redis6` in package.json; RESP3).
// Usage: node writes.js --client ioredis|node-redis|node-redis6 --addr HOST:PORT
//
// One client RPUSHes a sequence number to 60 keys in turn, one command at a time, while the test
// kills a master. It prints "running" after 100 acknowledged writes and one line per error
// ("error SEQ TEXT"); the client's own error events are printed as "client-event TEXT" (they are
// not write errors). Standard input drives it: on the line "mark" (the test saw the new master) it
// writes 200 more times and stops; "stop" or EOF stops at once. Then it reads every key back and
// prints "lost N [...]" (acknowledged but not there), "failed-but-written N [...]" (failed in the
// client but there: it ran), "duplicates N [...]", "slowest Dms" (the longest write) and last
// "writes ok=N errors=M after-mark-errors=K".
'use strict';
const readline = require('readline');

function parseArgs() {
  const out = { client: '', addr: '' };
  const a = process.argv.slice(2);
  for (let i = 0; i < a.length; i++) {
    if (a[i] === '--client') out.client = a[++i];
    else if (a[i] === '--addr') out.addr = a[++i];
    else throw new Error(`unknown argument ${a[i]}`);
  }
  if (!out.addr) throw new Error('--addr is required');
  const [host, port] = out.addr.split(':');
  return { ...out, host, port: Number(port) };
}

// { push(key, seq), lrange(key), close() } for one client with its defaults.
async function connect(o) {
  if (o.client === 'ioredis') {
    const Redis = require('ioredis');
    const r = new Redis({ host: o.host, port: o.port });
    r.on('error', (e) => console.log(`client-event ${e.message}`));
    return {
      push: (k, seq) => r.rpush(k, String(seq)),
      lrange: (k) => r.lrange(k, 0, -1),
      close: () => r.quit(),
    };
  }
  if (o.client === 'node-redis' || o.client === 'node-redis6') {
    const { createClient } = require(o.client === 'node-redis' ? 'redis' : 'redis6');
    const r = createClient({ url: `redis://${o.addr}` });
    // Without a listener an 'error' event would throw.
    r.on('error', (e) => console.log(`client-event ${e.message}`));
    await r.connect();
    return {
      push: (k, seq) => r.rPush(k, String(seq)),
      lrange: (k) => r.lRange(k, 0, -1),
      close: () => r.quit(),
    };
  }
  throw new Error(`unknown --client ${o.client}`);
}

async function main() {
  const o = parseArgs();
  const c = await connect(o);
  const run = Date.now().toString(36);
  const keys = [];
  for (let i = 0; i < 60; i++) keys.push(`wr:${run}:${i}`);
  const control = [];
  const rl = readline.createInterface({ input: process.stdin });
  rl.on('line', (l) => control.push(l));
  rl.on('close', () => control.push('stop'));
  let okCount = 0;
  let errCount = 0;
  let afterMarkErrs = 0;
  let marked = false;
  let left = 0;
  let slowest = 0;
  const acked = [];
  const failed = [];
  const deadline = Date.now() + 90_000;
  for (let seq = 0; ; seq++) {
    const cmd = control.shift();
    if (cmd === 'mark') {
      marked = true;
      left = 200;
    } else if (cmd !== undefined) {
      break;
    }
    if ((marked && left === 0) || Date.now() > deadline) break;
    const sent = process.hrtime.bigint();
    try {
      await c.push(keys[seq % keys.length], seq);
      okCount++;
      acked.push(seq);
      if (okCount === 100) console.log('running');
    } catch (e) {
      errCount++;
      if (marked) afterMarkErrs++;
      failed.push(seq);
      console.log(`error ${seq} ${e.message}`);
    }
    slowest = Math.max(slowest, Number(process.hrtime.bigint() - sent) / 1e6);
    if (marked) left--;
  }
  rl.close();
  // Each acknowledged sequence number must be in its key's list (else "lost"), and every one at
  // most once (a client retry of a write the proxy still held would show up twice).
  const counts = new Map();
  for (const k of keys) {
    for (const v of await c.lrange(k)) counts.set(v, (counts.get(v) || 0) + 1);
  }
  const lost = acked.filter((seq) => !counts.has(String(seq)));
  console.log(`lost ${lost.length} [${lost.join(' ')}]`);
  const written = failed.filter((seq) => counts.has(String(seq)));
  console.log(`failed-but-written ${written.length} [${written.join(' ')}]`);
  const dups = [...counts].filter(([, n]) => n > 1).map(([v, n]) => `${v} x${n}`);
  console.log(`duplicates ${dups.length} [${dups.join(' ')}]`);
  console.log(`slowest ${Math.round(slowest)}ms`);
  console.log(`writes ok=${okCount} errors=${errCount} after-mark-errors=${afterMarkErrs}`);
  await c.close();
}

main().then(
  () => process.exit(0),
  (e) => {
    console.log(`FAIL writes: ${e && e.stack ? e.stack : e}`);
    process.exit(1);
  },
);
