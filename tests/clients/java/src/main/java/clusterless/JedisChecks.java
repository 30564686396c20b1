package clusterless;

import static clusterless.Common.RUN;
import static clusterless.Common.errorOf;
import static clusterless.Common.eventually;
import static clusterless.Common.expect;
import static clusterless.Common.fail;
import static clusterless.Common.ok;
import static clusterless.Common.slot;
import static clusterless.Common.step;

import java.util.ArrayList;
import java.util.Collections;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.TimeUnit;
import redis.clients.jedis.AbstractPipeline;
import redis.clients.jedis.AbstractTransaction;
import redis.clients.jedis.DefaultJedisClientConfig;
import redis.clients.jedis.JedisPubSub;
import redis.clients.jedis.Protocol;
import redis.clients.jedis.RedisClient;
import redis.clients.jedis.RedisProtocol;
import redis.clients.jedis.Response;
import redis.clients.jedis.exceptions.JedisDataException;
import redis.clients.jedis.exceptions.JedisNoScriptException;
import redis.clients.jedis.params.ScanParams;
import redis.clients.jedis.resps.ScanResult;
import redis.clients.jedis.util.KeyValue;
import redis.clients.jedis.util.SafeEncoder;

/**
 * Jedis against clusterless: `RedisClient.create(host, port)` with its defaults (Jedis 8's
 * pooled standalone client: RESP3 through HELLO 3, CLIENT SETINFO lib-name and lib-ver on every new
 * connection). With `--protocol 2`: `DefaultJedisClientConfig.protocol(RESP2)` (no HELLO).
 * Usage: java -cp ... clusterless.JedisChecks --addr HOST:PORT --nodes P1,P2,P3 [--protocol 2]
 */
public final class JedisChecks {
  public static void main(String[] argv) {
    Common.runMain("unexpected", argv, JedisChecks::run);
  }

  private static String text(Object reply) {
    return reply instanceof byte[] b ? SafeEncoder.encode(b) : String.valueOf(reply);
  }

  private static void run(String[] argv) throws Exception {
    Common o = Common.args(argv);
    long started = System.currentTimeMillis();
    RedisClient r = o.protocol == 2
        ? RedisClient.builder()
            .hostAndPort(o.host, o.port)
            .clientConfig(DefaultJedisClientConfig.builder().protocol(RedisProtocol.RESP2).build())
            .build()
        : RedisClient.create(o.host, o.port);
    int resp = o.protocol == 2 ? 2 : 3;
    String p = "jedis";

    // Handshake: HELLO 3 and CLIENT SETINFO on each new pooled connection, then a PING.
    expect("handshake PING", step("handshake", r::ping), "PONG");
    String info = step("handshake", () -> text(r.sendCommand(Protocol.Command.CLIENT, "INFO")));
    if (!info.contains(" resp=" + resp + " ")) fail("handshake RESP version", info);
    // The same connect through a recording relay: what Jedis sends and what the proxy answers.
    Common.Relay relay = new Common.Relay(o.host, o.port);
    RedisClient viaRelay = o.protocol == 2
        ? RedisClient.builder()
            .hostAndPort("127.0.0.1", relay.port())
            .clientConfig(DefaultJedisClientConfig.builder().protocol(RedisProtocol.RESP2).build())
            .build()
        : RedisClient.create("127.0.0.1", relay.port());
    expect("handshake PING via relay", viaRelay.ping(), "PONG");
    List<String> transcript = relay.transcript("handshake transcript", "PING");
    viaRelay.close();
    List<String> shaken = new ArrayList<>();
    for (String line : transcript) shaken.add(line.replaceAll(" version [^ ]+ ", " version V ").replaceAll(" id \\d+ ", " id N "));
    expect("handshake transcript", shaken, List.of(
        resp == 3 ? "HELLO 3 -> map of 7" : "HELLO 2 -> server redis version V proto 2 id N mode standalone role master modules []",
        "CLIENT SETINFO LIB-NAME jedis -> OK",
        "CLIENT SETINFO LIB-VER 8.0.2 -> OK",
        "PING -> PONG"));
    ok("handshake", "connect sends HELLO " + resp + " (" + (resp == 3 ? "a map" : "mode standalone") + "), CLIENT SETINFO LIB-NAME and LIB-VER (OK); PING PONG, CLIENT INFO resp=" + resp);

    // Pipeline over keys on every master, one failing command in the middle.
    List<String> keys = o.perMaster(p + ":pipe:" + RUN);
    List<Response<?>> responses = new ArrayList<>();
    List<String> want = new ArrayList<>();
    try (AbstractPipeline pl = r.pipelined()) {
      for (int i = 0; i < keys.size(); i++) {
        responses.add(pl.set(keys.get(i), String.valueOf(i * 10)));
        responses.add(pl.incrBy(keys.get(i), 5));
        want.add("OK");
        want.add(String.valueOf(i * 10 + 5));
      }
      responses.add(pl.hset(keys.get(0) + ":h", "f", "v"));
      responses.add(pl.incr(keys.get(0) + ":h"));
      want.add("1");
      want.add("error: WRONGTYPE Operation against a key holding the wrong kind of value");
      for (int i = 0; i < keys.size(); i++) {
        responses.add(pl.get(keys.get(i)));
        want.add(String.valueOf(i * 10 + 5));
      }
      pl.sync();
    }
    List<String> got = new ArrayList<>();
    for (Response<?> reply : responses) {
      try {
        got.add(String.valueOf(reply.get()));
      } catch (JedisDataException e) {
        got.add("error: " + e.getMessage());
      }
    }
    expect("pipeline", got, want);
    ok("pipeline", want.size() + " commands over " + keys.size() + " masters, sync(), replies in order, one WRONGTYPE in place");

    // MULTI/EXEC on one slot.
    String tag = "{" + p + ":tx:" + RUN + "}";
    List<Object> tx = step("transaction", () -> {
      try (AbstractTransaction t = r.multi()) {
        t.set(tag + "a", "1");
        t.incr(tag + "a");
        t.rpush(tag + "l", "x", "y");
        t.get(tag + "a");
        return t.exec();
      }
    });
    expect("transaction", tx, List.of("OK", 2L, 2L, "2"));
    ok("transaction", "multi() ... exec() on one slot: [OK, 2, 2, \"2\"]");

    // MULTI over two slots: CROSSSLOT at queue time, EXECABORT at EXEC, nothing written.
    String ka = keys.get(0) + ":x";
    String kb = keys.get(1) + ":x";
    Exception abort = errorOf("cross-slot transaction", () -> {
      try (AbstractTransaction t = r.multi()) {
        t.set(ka, "1");
        t.set(kb, "1");
        return t.exec();
      }
    });
    expect("cross-slot transaction", abort.getMessage(), "EXECABORT Transaction discarded because of previous errors.");
    expect("cross-slot transaction wrote nothing", r.exists(ka, kb), 0L);
    ok("cross-slot transaction", "EXECABORT, nothing written (as Redis Cluster)");

    // WATCH: transaction(false) holds one pooled connection; commands before multi() run at
    // once on it. The first attempt sees the key change (exec() null).
    String wk = tag + "counter";
    r.set(wk, "10");
    List<String> outcomes = new ArrayList<>();
    for (int attempt = 1; attempt <= 3; attempt++) {
      final int n = attempt;
      List<Object> res = step("watch", () -> {
        try (AbstractTransaction t = r.transaction(false)) {
          t.watch(wk);
          long v = Long.parseLong(t.get(wk).get());
          if (n == 1) r.incrBy(wk, 100);
          t.multi();
          t.set(wk, String.valueOf(v + 1));
          return t.exec();
        }
      });
      outcomes.add(res == null ? "null (key changed)" : res.toString());
      if (res != null) break;
    }
    expect("watch attempts", outcomes, List.of("null (key changed)", "[OK]"));
    expect("watch result", r.get(wk), "111");
    ok("watch", "transaction(false) watch/get/multi/exec retry loop: attempt 1 null (key changed), attempt 2 committed, 111");

    // Pub/sub: subscribe() blocks a thread on one pooled connection; a channel in each master's
    // slots, a pattern, messages, unsubscribe. The proxy holds one subscription connection on one
    // master, and a PUBLISH counts the receivers on the channel slot's master.
    List<String> chans = o.perMaster(p + ":ch:" + RUN);
    String pat = p + ":pat:" + RUN + ":*";
    String pch = p + ":pat:" + RUN + ":x";
    List<String> events = new CopyOnWriteArrayList<>();
    JedisPubSub sub = new JedisPubSub() {
      @Override
      public void onMessage(String channel, String message) {
        events.add("message " + channel + " " + message);
      }

      @Override
      public void onPMessage(String pattern, String channel, String message) {
        events.add("pmessage " + pattern + " " + channel + " " + message);
      }

      @Override
      public void onSubscribe(String channel, int count) {
        events.add("subscribe " + channel + " " + count);
      }

      @Override
      public void onPSubscribe(String pattern, int count) {
        events.add("psubscribe " + pattern + " " + count);
      }

      @Override
      public void onUnsubscribe(String channel, int count) {
        events.add("unsubscribe " + channel + " " + count);
      }

      @Override
      public void onPUnsubscribe(String pattern, int count) {
        events.add("punsubscribe " + pattern + " " + count);
      }
    };
    CompletableFuture<Void> listening = CompletableFuture.runAsync(() -> r.subscribe(sub, chans.toArray(new String[0])));
    List<String> wantEvents = new ArrayList<>();
    for (int i = 0; i < chans.size(); i++) wantEvents.add("subscribe " + chans.get(i) + " " + (i + 1));
    eventually("pubsub subscribe confirmations", () -> new Object[] {events.size() >= 3, events});
    sub.psubscribe(pat);
    wantEvents.add("psubscribe " + pat + " 4");
    eventually("pubsub psubscribe confirmation", () -> new Object[] {events.size() >= 4, events});
    expect("pubsub subscribe confirmations", new ArrayList<>(events), wantEvents);
    List<String> numsub = new ArrayList<>();
    List<String> wantNumsub = new ArrayList<>();
    for (Object x : (List<?>) r.sendCommand(Protocol.Command.PUBSUB, "NUMSUB", chans.get(0), chans.get(1), chans.get(2))) numsub.add(text(x));
    for (String c : chans) {
      wantNumsub.add(c);
      wantNumsub.add("1");
    }
    expect("PUBSUB NUMSUB through the proxy", numsub, wantNumsub);
    List<Long> counts = new ArrayList<>();
    List<Long> wantCounts = new ArrayList<>();
    List<String> wantMessages = new ArrayList<>();
    for (int i = 0; i < chans.size(); i++) {
      String ch = chans.get(i);
      wantCounts.add(Common.numsubOn(o.owner(slot(ch)), ch));
      counts.add(r.publish(ch, "hello" + i));
      wantMessages.add("message " + ch + " hello" + i);
    }
    expect("PUBLISH counts (receivers on each channel slot's master)", counts, wantCounts);
    expect("PUBLISH counts add up to the one subscriber", counts.stream().mapToLong(Long::longValue).sum(), 1L);
    r.publish(pch, "world");
    wantMessages.add("pmessage " + pat + " " + pch + " world");
    eventually("pubsub messages", () -> new Object[] {events.size() >= 4 + wantMessages.size(), events});
    List<String> messages = new ArrayList<>(events.subList(4, events.size()));
    Collections.sort(messages);
    Collections.sort(wantMessages);
    expect("pubsub messages", messages, wantMessages);
    events.clear();
    sub.unsubscribe();
    sub.punsubscribe();
    step("pubsub listener ends", () -> listening.get(5, TimeUnit.SECONDS));
    List<String> unsub = new ArrayList<>(events);
    Collections.sort(unsub);
    List<String> wantUnsub = new ArrayList<>();
    // UNSUBSCRIBE without arguments: the order of the channels is the server's.
    for (String c : chans) wantUnsub.add("unsubscribe " + c + " ");
    wantUnsub.add("punsubscribe " + pat + " 0");
    List<String> unsubNoCount = new ArrayList<>();
    List<Integer> remaining = new ArrayList<>();
    for (String e : unsub) {
      int sp = e.lastIndexOf(' ');
      unsubNoCount.add(e.startsWith("unsubscribe") ? e.substring(0, sp + 1) : e);
      if (e.startsWith("unsubscribe")) remaining.add(Integer.parseInt(e.substring(sp + 1)));
    }
    Collections.sort(wantUnsub);
    expect("pubsub unsubscribe confirmations", unsubNoCount, wantUnsub);
    Collections.sort(remaining);
    expect("pubsub unsubscribe counts", remaining, List.of(1, 2, 3));
    eventually("pubsub gone from the nodes", () -> {
      String s = o.subscriptionsOnNodes(chans);
      return new Object[] {s.equals("0/0"), "numsub/numpat " + s};
    });
    ok("pubsub", "subscribe to 3 channels (one per master) 1 2 3, psubscribe 4, PUBLISH counts " + counts + ", 3 messages + pmessage, unsubscribe 3 2 1, punsubscribe 0, listener returns, gone from the nodes");

    // BLPOP on a pooled connection in another thread while the client pushes.
    String bk = keys.get(2) + ":q";
    CompletableFuture<KeyValue<String, String>> popped = CompletableFuture.supplyAsync(() -> r.blpop(10.0, bk));
    eventually("blpop blocked on a node", () -> {
      Object[] b = o.blockedOnNodes();
      return new Object[] {(Long) b[0] == 1L, b[1]};
    });
    r.rpush(bk, "job1");
    KeyValue<String, String> kv = step("blpop", () -> popped.get(5, TimeUnit.SECONDS));
    expect("blpop", kv.getKey() + " " + kv.getValue(), bk + " job1");
    expect("blpop timeout", step("blpop timeout", () -> r.blpop(0.1, bk)), null);
    ok("blpop", "blocked on the node, woken by another connection's RPUSH, [key job1]; empty list times out to null");

    // Scripts: EVALSHA with the application's NOSCRIPT fallback to EVAL (Jedis has no helper of
    // its own). After SCRIPT FLUSH the first EVALSHA is NOSCRIPT; the EVAL that follows teaches
    // the proxy the script, which then loads it on a master that answers NOSCRIPT.
    String lua = "return redis.call('INCRBY', KEYS[1], ARGV[1])";
    String sha = r.scriptLoad(lua);
    expect("SCRIPT FLUSH", r.scriptFlush(), "OK");
    expect("SCRIPT FLUSH reached every master", o.scriptOnEveryNode(sha), List.of(0L, 0L, 0L));
    List<Object> sums = new ArrayList<>();
    List<String> paths = new ArrayList<>();
    for (String k : keys) {
      for (int n = 0; n < 2; n++) {
        String key = k + ":s";
        Object v;
        try {
          v = r.evalsha(sha, 1, key, "7");
          paths.add("evalsha");
        } catch (JedisNoScriptException e) {
          expect("NOSCRIPT error", e.getMessage(), "NOSCRIPT No matching script. Please use EVAL.");
          v = r.eval(lua, 1, key, "7");
          paths.add("noscript+eval");
        }
        sums.add(v);
      }
    }
    expect("script results", sums, List.of(7L, 14L, 7L, 14L, 7L, 14L));
    expect("script paths", paths, List.of("noscript+eval", "evalsha", "evalsha", "evalsha", "evalsha", "evalsha"));
    expect("SCRIPT EXISTS through the proxy", text(((List<?>) r.sendCommand(Protocol.Command.SCRIPT, "EXISTS", sha)).get(0)), "1");
    expect("script loaded on every master", o.scriptOnEveryNode(sha), List.of(1L, 1L, 1L));
    ok("scripts", "after SCRIPT FLUSH: EVALSHA NOSCRIPT -> EVAL once, then EVALSHA on each master 7 then 14; loaded everywhere");

    // SCAN loop over 300 keys on every master.
    String pattern = p + ":scan:" + RUN + ":*";
    List<String> fill = new ArrayList<>();
    List<String> wantKeys = new ArrayList<>();
    for (int i = 0; i < 300; i++) {
      String k = p + ":scan:" + RUN + ":" + i;
      fill.add(k);
      fill.add(String.valueOf(i));
      wantKeys.add(k);
    }
    expect("scan setup", r.mset(fill.toArray(new String[0])), "OK");
    List<Integer> per = o.keysOnNodes(pattern);
    if (per.contains(0)) fail("scan setup", "keys per master " + per);
    List<String> seen = new ArrayList<>();
    ScanParams params = new ScanParams().match(pattern).count(25);
    String cursor = ScanParams.SCAN_POINTER_START;
    int calls = 0;
    do {
      ScanResult<String> page = r.scan(cursor, params);
      seen.addAll(page.getResult());
      cursor = page.getCursor();
      if (++calls > 1000) fail("scan", "more than 1000 calls, cursor " + cursor);
    } while (!cursor.equals(ScanParams.SCAN_POINTER_START));
    Map<String, Integer> times = new HashMap<>();
    for (String k : seen) times.merge(k, 1, Integer::sum);
    times.values().removeIf(n -> n == 1);
    if (!times.isEmpty()) fail("scan", "seen more than once: " + times);
    Collections.sort(wantKeys);
    Collections.sort(seen);
    expect("scan keys", seen, wantKeys);
    ok("scan", "SCAN MATCH COUNT 25 until cursor 0 (" + calls + " calls): all 300 keys once (per master " + per + ")");

    // MSET/MGET/DEL across slots.
    String missing = p + ":missing:" + RUN;
    String m0 = keys.get(0) + ":m";
    String m1 = keys.get(1) + ":m";
    String m2 = keys.get(2) + ":m";
    expect("mset", r.mset(m0, "a", m1, "b", m2, "c"), "OK");
    expect("mget", r.mget(m2, missing, m0, m1), java.util.Arrays.asList("c", null, "a", "b"));
    expect("del", r.del(m0, m1, m2, missing), 3L);
    expect("exists after del", r.exists(m0, m1, m2), 0L);
    ok("cross-slot", "MSET over 3 masters OK, MGET in request order with null, DEL 3, EXISTS 0");

    r.close();
    java.util.Properties pom = new java.util.Properties();
    try (var in = RedisClient.class.getResourceAsStream("/META-INF/maven/redis.clients/jedis/pom.properties")) {
      pom.load(in);
    }
    String version = pom.getProperty("version");
    System.out.printf("jedis %s resp%d ok in %.1fs%n", version, resp, (System.currentTimeMillis() - started) / 1000.0);
    System.exit(0);
  }
}
