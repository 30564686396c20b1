// node-redis (the `redis` package) against clusterless: `createClient({url})` with its defaults
// (RESP2 in v5, RESP3 in v6, or as --protocol sets `RESP`; CLIENT SETINFO on connect). Usage:
//   node node_redis.js --addr HOST:PORT --nodes P1,P2,P3 [--protocol 2|3] [--package redis|redis6]
// `redis` is v5 (package.json pins it); `redis6` is v6 under an npm alias.
'use strict';
const {
  args, fail, ok, expect, step, errorOf, eventually, within, slot, owner, perMaster, blockedOnNodes,
  numsubOn, scriptOnEveryNode, keysOnNodes, RUN,
} = require('./common');

async function main() {
  const o = args();
  const pkg = o.package || 'redis';
  const { createClient, defineScript } = require(pkg);
  const version = require(`${pkg}/package.json`).version;
  const started = Date.now();
  const lua = "return redis.call('INCRBY', KEYS[1], ARGV[1])";
  const options = {
    url: `redis://${o.addr}`,
    scripts: {
      incrByScript: defineScript({
        SCRIPT: lua,
        NUMBER_OF_KEYS: 1,
        parseCommand(parser, key, n) {
          parser.pushKey(key);
          parser.push(String(n));
        },
        transformReply: undefined,
      }),
    },
  };
  if (o.protocol) options.RESP = o.protocol;
  // The library's own default: RESP2 in v5, RESP3 from v6 on.
  const resp = o.protocol || (Number(version.split('.')[0]) >= 6 ? 3 : 2);
  const p = `nr${version.split('.')[0]}r${resp}`;
  const r = createClient(options);
  r.on('error', (e) => fail('client error event', e.message));
  await step('handshake', () => within('connect', r.connect(), 10_000));
  const other = r.duplicate();
  other.on('error', (e) => fail('client error event', e.message));
  await other.connect();

  // Handshake: (HELLO 3 with RESP: 3) CLIENT SETINFO on connect, then a PING.
  expect('handshake PING', await step('handshake', () => r.ping()), 'PONG');
  const info = await step('handshake', () => r.sendCommand(['CLIENT', 'INFO']));
  if (!String(info).includes(` resp=${resp} `)) fail('handshake RESP version', info);
  ok('handshake', `redis ${version} connected, CLIENT SETINFO accepted, PING PONG, CLIENT INFO resp=${resp}`);

  // Pipelines: multi().execAsPipeline() over keys on every master, then commands issued in one
  // tick (node-redis writes them as one pipeline) with a failing one in the middle.
  const keys = await perMaster(o.nodes, `${p}:pipe:${RUN}`);
  let pl = r.multi();
  const want = [];
  keys.forEach((k, i) => {
    pl = pl.set(k, String(i * 10)).incrBy(k, 5);
    want.push('OK', i * 10 + 5);
  });
  keys.forEach((k, i) => {
    pl = pl.get(k);
    want.push(String(i * 10 + 5));
  });
  expect('pipeline execAsPipeline', await step('pipeline', () => pl.execAsPipeline()), want);
  const settled = await Promise.allSettled([
    ...keys.map((k) => r.incrBy(k, 1)),
    r.hSet(`${keys[0]}:h`, 'f', 'v'),
    r.incr(`${keys[0]}:h`),
    ...keys.map((k) => r.get(k)),
  ]);
  expect('pipeline in one tick', settled.map((x) => (x.status === 'fulfilled' ? x.value : `err:${x.reason.message}`)), [
    ...keys.map((_, i) => i * 10 + 6),
    1,
    'err:WRONGTYPE Operation against a key holding the wrong kind of value',
    ...keys.map((_, i) => String(i * 10 + 6)),
  ]);
  ok('pipeline', `execAsPipeline of ${want.length} and ${settled.length} commands in one tick over ${keys.length} masters, replies in order, one WRONGTYPE in place`);

  // MULTI/EXEC on one slot.
  const tag = `{${p}:tx:${RUN}}`;
  const tx = await step('transaction', () => r.multi().set(`${tag}a`, '1').incr(`${tag}a`).rPush(`${tag}l`, ['x', 'y']).get(`${tag}a`).exec());
  expect('transaction', tx, ['OK', 2, 2, '2']);
  ok('transaction', 'multi().exec() on one slot: OK 2 2 "2"');

  // MULTI over two slots: CROSSSLOT at queue time, EXECABORT at EXEC, nothing written.
  const [ka, kb] = [`${keys[0]}:x`, `${keys[1]}:x`];
  const abort = await errorOf('cross-slot transaction', () => r.multi().set(ka, '1').set(kb, '1').exec());
  // node-redis reports the queue-time error of the EXECABORTed transaction.
  expect('cross-slot transaction', abort, "CROSSSLOT Keys in request don't hash to the same slot");
  expect('cross-slot transaction wrote nothing', await r.exists([ka, kb]), 0);
  ok('cross-slot transaction', 'CROSSSLOT (queue time, then EXECABORT), nothing written (as Redis Cluster)');

  // WATCH on a connection of its own (a duplicate): the first attempt sees the key change.
  const wk = `${tag}counter`;
  await r.set(wk, '10');
  const w = r.duplicate();
  await w.connect();
  const outcomes = [];
  for (let attempt = 1; attempt <= 3; attempt++) {
    await step('watch', () => w.watch(wk));
    const v = Number(await w.get(wk));
    if (attempt === 1) await other.incrBy(wk, 100);
    try {
      const res = await w.multi().set(wk, String(v + 1)).exec();
      outcomes.push(JSON.stringify(res));
      break;
    } catch (e) {
      outcomes.push(`${e.constructor.name}: ${e.message}`);
      if (e.constructor.name !== 'WatchError') break;
    }
  }
  expect('watch attempts', outcomes, ['WatchError: One (or more) of the watched keys has been changed', '["OK"]']);
  expect('watch result', await r.get(wk), '111');
  await w.quit();
  ok('watch', 'watch/multi/exec retry loop: attempt 1 WatchError (key changed), attempt 2 committed, 111');

  // Pub/sub on a duplicate: a channel in each master's slots, a pattern, messages, unsubscribe.
  // The proxy holds one subscription connection on one master, and a PUBLISH counts the
  // receivers on the channel slot's master: exactly one of the three counts is 1.
  const chans = await perMaster(o.nodes, `${p}:ch:${RUN}`);
  const pat = `${p}:pat:${RUN}:*`;
  const pch = `${p}:pat:${RUN}:x`;
  const sub = r.duplicate();
  sub.on('error', (e) => fail('subscriber error event', e.message));
  await sub.connect();
  const events = [];
  await step('pubsub subscribe', () => sub.subscribe(chans, (m, c) => events.push(`message ${c} ${m}`)));
  await step('pubsub psubscribe', () => sub.pSubscribe(pat, (m, c) => events.push(`pmessage ${pat} ${c} ${m}`)));
  expect('PUBSUB NUMSUB through the proxy', await other.pubSubNumSub(chans), { [chans[0]]: 1, [chans[1]]: 1, [chans[2]]: 1 });
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
  await step('pubsub unsubscribe', () => sub.unsubscribe(chans));
  await step('pubsub punsubscribe', () => sub.pUnsubscribe(pat));
  await eventually('pubsub gone from the nodes', async () => {
    const n = await other.pubSubNumSub(chans);
    const np = await other.pubSubNumPat();
    return [n[chans[0]] + n[chans[1]] + n[chans[2]] === 0 && np === 0, `NUMSUB ${JSON.stringify(n)} NUMPAT ${np}`];
  });
  await sub.quit();
  ok('pubsub', `subscribe to 3 channels (one per master), pSubscribe, PUBLISH counts ${counts}, 3 messages + pmessage, unsubscribe, pUnsubscribe`);

  // BLPOP on a duplicate while another client pushes.
  const bk = `${keys[2]}:q`;
  const blocker = r.duplicate();
  await blocker.connect();
  const popped = blocker.blPop(bk, 10);
  await eventually('blpop blocked on a node', async () => {
    const [n, detail] = await blockedOnNodes(o.nodes);
    return [n === 1, detail];
  });
  await other.rPush(bk, 'job1');
  expect('blpop', await step('blpop', () => within('blpop', popped, 5000)), { key: bk, element: 'job1' });
  expect('blpop timeout', await step('blpop timeout', () => blocker.blPop(bk, 0.1)), null);
  await blocker.quit();
  ok('blpop', "blocked on the node, woken by another client's RPUSH, {key, element: job1}; empty list times out to null");

  // Scripts: defineScript sends EVALSHA, then EVAL on NOSCRIPT.
  const sha = await other.scriptLoad(lua);
  await r.scriptFlush();
  expect('SCRIPT FLUSH reached every master', await scriptOnEveryNode(o.nodes, sha), [0, 0, 0]);
  const sums = [];
  for (const k of keys) {
    sums.push(await step('script', () => r.incrByScript(`${k}:s`, 7)));
    sums.push(await step('script', () => r.incrByScript(`${k}:s`, 7)));
  }
  expect('script', sums, [7, 14, 7, 14, 7, 14]);
  expect('SCRIPT EXISTS through the proxy', await r.scriptExists(sha), [1]);
  expect('script loaded on every master', await scriptOnEveryNode(o.nodes, sha), [1, 1, 1]);
  ok('scripts', 'after SCRIPT FLUSH: defineScript (EVALSHA, NOSCRIPT, EVAL) on each master 7 then 14; loaded everywhere');

  // scanIterator over 300 keys on every master.
  const pattern = `${p}:scan:${RUN}:*`;
  const wantKeys = [];
  const fills = [];
  for (let i = 0; i < 300; i++) {
    const k = `${p}:scan:${RUN}:${i}`;
    wantKeys.push(k);
    fills.push(r.set(k, String(i)));
  }
  await step('scan setup', () => Promise.all(fills));
  const per = await keysOnNodes(o.nodes, pattern);
  if (per.some((n) => n === 0)) fail('scan setup', `keys per master ${per}`);
  const seen = [];
  await step('scan', async () => {
    for await (const batch of r.scanIterator({ MATCH: pattern, COUNT: 25 })) seen.push(...batch);
  });
  const times = {};
  for (const k of seen) times[k] = (times[k] || 0) + 1;
  const twice = Object.entries(times).filter(([, n]) => n !== 1);
  if (twice.length) fail('scan', `seen more than once: ${JSON.stringify(twice)}`);
  expect('scan keys', seen.sort(), wantKeys.sort());
  ok('scan', `scanIterator MATCH COUNT 25: all 300 keys once (per master ${per})`);

  // MSET/MGET/DEL across slots.
  const missing = `${p}:missing:${RUN}`;
  expect('mset', await r.mSet([`${keys[0]}:m`, 'a', `${keys[1]}:m`, 'b', `${keys[2]}:m`, 'c']), 'OK');
  expect('mget', await r.mGet([`${keys[2]}:m`, missing, `${keys[0]}:m`, `${keys[1]}:m`]), ['c', null, 'a', 'b']);
  expect('del', await r.del([`${keys[0]}:m`, `${keys[1]}:m`, `${keys[2]}:m`, missing]), 3);
  expect('exists after del', await r.exists([`${keys[0]}:m`, `${keys[1]}:m`, `${keys[2]}:m`]), 0);
  ok('cross-slot', 'MSET over 3 masters OK, MGET in request order with null, DEL 3, EXISTS 0');

  console.log(`node-redis ${version} resp${resp} ok in ${((Date.now() - started) / 1000).toFixed(1)}s`);
  await r.quit();
  await other.quit();
}

main().catch((e) => fail('unexpected', e && e.stack ? e.stack : e));
