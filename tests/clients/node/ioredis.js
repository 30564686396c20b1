// ioredis against clusterless: `new Redis({host, port})` with its defaults (ioredis 6: RESP3,
// ready check, CLIENT SETINFO, offline queue, 20 retries per request), or `--protocol 2` as
// ioredis 5 and older speak. Usage: node ioredis.js --addr HOST:PORT --nodes P1,P2,P3 [--protocol 2|3]
'use strict';
const Redis = require('ioredis');
const {
  args, fail, ok, expect, step, errorOf, eventually, within, slot, owner, perMaster, blockedOnNodes,
  numsubOn, scriptOnEveryNode, keysOnNodes, RUN,
} = require('./common');

async function main() {
  const o = args();
  const started = Date.now();
  const options = { host: o.host, port: o.port };
  if (o.protocol) options.protocol = o.protocol;
  const resp = o.protocol || 3;
  const r = new Redis(options);
  const other = new Redis(options);
  const p = `io${resp}`;

  // Handshake: HELLO (RESP3), CLIENT SETINFO, the INFO ready check, then a PING.
  await step('handshake', () => within('ready', new Promise((res, rej) => {
    r.once('ready', res);
    r.once('error', rej);
  }), 10_000));
  expect('handshake PING', await step('handshake', () => r.ping()), 'PONG');
  const info = await step('handshake', () => r.client('INFO'));
  if (!info.includes(` resp=${resp} `)) fail('handshake RESP version', info);
  ok('handshake', `ready check (INFO) passed, CLIENT SETINFO accepted, PING PONG, CLIENT INFO resp=${resp}`);

  // Pipeline over keys on every master, one failing command in the middle.
  const keys = await perMaster(o.nodes, `${p}:pipe:${RUN}`);
  let pl = r.pipeline();
  const want = [];
  keys.forEach((k, i) => {
    pl = pl.set(k, i * 10).incrby(k, 5);
    want.push([null, 'OK'], [null, i * 10 + 5]);
  });
  pl = pl.hset(`${keys[0]}:h`, 'f', 'v').incr(`${keys[0]}:h`);
  want.push([null, 1], ['WRONGTYPE Operation against a key holding the wrong kind of value', null]);
  keys.forEach((k, i) => {
    pl = pl.get(k);
    want.push([null, String(i * 10 + 5)]);
  });
  const got = (await step('pipeline', () => pl.exec())).map(([e, v]) => [e ? e.message : null, e ? null : v]);
  expect('pipeline', got, want);
  ok('pipeline', `${want.length} commands over ${keys.length} masters, replies in order, one WRONGTYPE in place`);

  // MULTI/EXEC on one slot.
  const tag = `{${p}:tx:${RUN}}`;
  const tx = await step('transaction', () => r.multi().set(`${tag}a`, '1').incr(`${tag}a`).rpush(`${tag}l`, 'x', 'y').get(`${tag}a`).exec());
  expect('transaction', tx, [[null, 'OK'], [null, 2], [null, 2], [null, '2']]);
  ok('transaction', 'multi().exec() on one slot: OK 2 2 "2"');

  // MULTI over two slots: CROSSSLOT at queue time, EXECABORT at EXEC, nothing written.
  const [ka, kb] = [`${keys[0]}:x`, `${keys[1]}:x`];
  const abort = await errorOf('cross-slot transaction', () => r.multi().set(ka, '1').set(kb, '1').exec());
  expect('cross-slot transaction', abort, 'EXECABORT Transaction discarded because of previous errors.');
  expect('cross-slot transaction wrote nothing', await r.exists(ka, kb), 0);
  ok('cross-slot transaction', 'EXECABORT, nothing written (as Redis Cluster)');

  // WATCH on a connection of its own: the first attempt sees the key change (exec() null).
  const wk = `${tag}counter`;
  await r.set(wk, '10');
  const w = r.duplicate();
  const outcomes = [];
  for (let attempt = 1; attempt <= 3; attempt++) {
    await step('watch', () => w.watch(wk));
    const v = Number(await w.get(wk));
    if (attempt === 1) await other.incrby(wk, 100);
    const res = await step('watch', () => w.multi().set(wk, String(v + 1)).exec());
    outcomes.push(res === null ? 'null (key changed)' : JSON.stringify(res));
    if (res !== null) break;
  }
  expect('watch attempts', outcomes, ['null (key changed)', '[[null,"OK"]]']);
  expect('watch result', await r.get(wk), '111');
  w.disconnect();
  ok('watch', 'watch/multi/exec retry loop: attempt 1 null (key changed), attempt 2 committed, 111');

  // Pub/sub on a duplicate: a channel in each master's slots, a pattern, messages, unsubscribe.
  // The proxy holds one subscription connection on one master, and a PUBLISH counts the
  // receivers on the channel slot's master: exactly one of the three counts is 1.
  const chans = await perMaster(o.nodes, `${p}:ch:${RUN}`);
  const pat = `${p}:pat:${RUN}:*`;
  const pch = `${p}:pat:${RUN}:x`;
  const sub = r.duplicate();
  const events = [];
  sub.on('message', (c, m) => events.push(`message ${c} ${m}`));
  sub.on('pmessage', (pt, c, m) => events.push(`pmessage ${pt} ${c} ${m}`));
  expect('pubsub subscribe', await step('pubsub subscribe', () => sub.subscribe(...chans)), 3);
  expect('pubsub psubscribe', await step('pubsub psubscribe', () => sub.psubscribe(pat)), 4);
  expect('PUBSUB NUMSUB through the proxy', await other.pubsub('NUMSUB', ...chans), [chans[0], 1, chans[1], 1, chans[2], 1]);
  const counts = [];
  const wantCounts = [];
  const wantEvents = [];
  for (const [i, ch] of chans.entries()) {
    wantCounts.push(await numsubOn(await owner(o.nodes, slot(ch)), ch));
    counts.push(await other.publish(ch, `hello${i}`));
    wantEvents.push(`message ${ch} hello${i}`);
  }
  expect("PUBLISH counts (receivers on each channel slot's master)", counts, wantCounts);
  expect('PUBLISH counts add up to the one subscriber', counts[0] + counts[1] + counts[2], 1);
  await other.publish(pch, 'world');
  wantEvents.push(`pmessage ${pat} ${pch} world`);
  await eventually('pubsub messages', async () => [events.length >= wantEvents.length, JSON.stringify(events)]);
  expect('pubsub messages', events.sort(), wantEvents.sort());
  expect('pubsub unsubscribe', await step('pubsub unsubscribe', () => sub.unsubscribe(...chans)), 1);
  expect('pubsub punsubscribe', await step('pubsub punsubscribe', () => sub.punsubscribe(pat)), 0);
  sub.disconnect();
  await eventually('pubsub gone from the nodes', async () => {
    const n = await other.pubsub('NUMSUB', ...chans);
    const np = await other.pubsub('NUMPAT');
    return [n[1] + n[3] + n[5] === 0 && np === 0, `NUMSUB ${n} NUMPAT ${np}`];
  });
  ok('pubsub', `subscribe to 3 channels (one per master), psubscribe, PUBLISH counts ${counts}, 3 messages + pmessage, unsubscribe, punsubscribe`);

  // BLPOP on a duplicate while another client pushes.
  const bk = `${keys[2]}:q`;
  const blocker = r.duplicate();
  const popped = blocker.blpop(bk, 10);
  await eventually('blpop blocked on a node', async () => {
    const [n, detail] = await blockedOnNodes(o.nodes);
    return [n === 1, detail];
  });
  await other.rpush(bk, 'job1');
  expect('blpop', await step('blpop', () => within('blpop', popped, 5000)), [bk, 'job1']);
  expect('blpop timeout', await step('blpop timeout', () => blocker.blpop(bk, 0.1)), null);
  blocker.disconnect();
  ok('blpop', 'blocked on the node, woken by another client\'s RPUSH, [key job1]; empty list times out to null');

  // Scripts: defineCommand sends EVALSHA, then EVAL on NOSCRIPT.
  await r.script('FLUSH');
  const lua = "return redis.call('INCRBY', KEYS[1], ARGV[1])";
  r.defineCommand('incrByScript', { numberOfKeys: 1, lua });
  const sha = await other.script('LOAD', lua);
  await r.script('FLUSH');
  expect('SCRIPT FLUSH reached every master', await scriptOnEveryNode(o.nodes, sha), [0, 0, 0]);
  const sums = [];
  for (const k of keys) {
    sums.push(await step('script', () => r.incrByScript(`${k}:s`, 7)));
    sums.push(await step('script', () => r.incrByScript(`${k}:s`, 7)));
  }
  expect('script', sums, [7, 14, 7, 14, 7, 14]);
  expect('SCRIPT EXISTS through the proxy', await r.script('EXISTS', sha), [1]);
  expect('script loaded on every master', await scriptOnEveryNode(o.nodes, sha), [1, 1, 1]);
  ok('scripts', 'after SCRIPT FLUSH: defineCommand (EVALSHA, NOSCRIPT, EVAL) on each master 7 then 14; loaded everywhere');

  // scanStream over 300 keys on every master.
  const pattern = `${p}:scan:${RUN}:*`;
  const wantKeys = [];
  let fill = r.pipeline();
  for (let i = 0; i < 300; i++) {
    const k = `${p}:scan:${RUN}:${i}`;
    wantKeys.push(k);
    fill = fill.set(k, i);
  }
  for (const [e] of await fill.exec()) if (e) fail('scan setup', e.message);
  const per = await keysOnNodes(o.nodes, pattern);
  if (per.some((n) => n === 0)) fail('scan setup', `keys per master ${per}`);
  const seen = await step('scan', () => new Promise((res, rej) => {
    const all = [];
    const s = r.scanStream({ match: pattern, count: 25 });
    s.on('data', (ks) => all.push(...ks));
    s.on('end', () => res(all));
    s.on('error', rej);
  }));
  const times = {};
  for (const k of seen) times[k] = (times[k] || 0) + 1;
  const twice = Object.entries(times).filter(([, n]) => n !== 1);
  if (twice.length) fail('scan', `seen more than once: ${JSON.stringify(twice)}`);
  expect('scan keys', seen.sort(), wantKeys.sort());
  ok('scan', `scanStream MATCH COUNT 25: all 300 keys once (per master ${per})`);

  // MSET/MGET/DEL across slots.
  const missing = `${p}:missing:${RUN}`;
  expect('mset', await r.mset(`${keys[0]}:m`, 'a', `${keys[1]}:m`, 'b', `${keys[2]}:m`, 'c'), 'OK');
  expect('mget', await r.mget(`${keys[2]}:m`, missing, `${keys[0]}:m`, `${keys[1]}:m`), ['c', null, 'a', 'b']);
  expect('del', await r.del(`${keys[0]}:m`, `${keys[1]}:m`, `${keys[2]}:m`, missing), 3);
  expect('exists after del', await r.exists(`${keys[0]}:m`, `${keys[1]}:m`, `${keys[2]}:m`), 0);
  ok('cross-slot', 'MSET over 3 masters OK, MGET in request order with null, DEL 3, EXISTS 0');

  r.disconnect();
  other.disconnect();
  console.log(`ioredis resp${resp} ok in ${((Date.now() - started) / 1000).toFixed(1)}s`);
}

main().catch((e) => fail('unexpected', e && e.stack ? e.stack : e));
