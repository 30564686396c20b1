package clusterless;

import static clusterless.Common.RUN;
import static clusterless.Common.errorOf;
import static clusterless.Common.eventually;
import static clusterless.Common.expect;
import static clusterless.Common.fail;
import static clusterless.Common.ok;
import static clusterless.Common.slot;
import static clusterless.Common.step;

import io.lettuce.core.ClientOptions;
import io.lettuce.core.KeyValue;
import io.lettuce.core.RedisClient;
import io.lettuce.core.RedisFuture;
import io.lettuce.core.RedisNoScriptException;
import io.lettuce.core.RedisURI;
import io.lettuce.core.ScanArgs;
import io.lettuce.core.ScanIterator;
import io.lettuce.core.ScriptOutputType;
import io.lettuce.core.TransactionResult;
import io.lettuce.core.api.StatefulRedisConnection;
import io.lettuce.core.protocol.ProtocolVersion;
import io.lettuce.core.api.async.RedisAsyncCommands;
import io.lettuce.core.api.sync.RedisCommands;
import io.lettuce.core.pubsub.RedisPubSubAdapter;
import io.lettuce.core.pubsub.StatefulRedisPubSubConnection;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Collections;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;

/**
 * Lettuce against clusterless: `RedisClient.create(RedisURI.create(host, port))` with its
 * defaults (Lettuce 7: RESP3 through HELLO 3, CLIENT SETINFO lib-name and lib-ver on connect).
 * With `--protocol 2`: `ClientOptions.protocolVersion(RESP2)` (no HELLO).
 * Usage: java -cp ... clusterless.LettuceChecks --addr HOST:PORT --nodes P1,P2,P3 [--protocol 2]
 */
public final class LettuceChecks {
  public static void main(String[] argv) {
    Common.runMain("unexpected", argv, LettuceChecks::run);
  }

  private static void run(String[] argv) throws Exception {
    Common o = Common.args(argv);
    long started = System.currentTimeMillis();
    RedisClient client = RedisClient.create(RedisURI.create(o.host, o.port));
    if (o.protocol == 2) client.setOptions(ClientOptions.builder().protocolVersion(ProtocolVersion.RESP2).build());
    int resp = o.protocol == 2 ? 2 : 3;
    String p = "lettuce";

    // Handshake: HELLO 3 (RESP3 only) and CLIENT SETINFO on connect, then a PING.
    StatefulRedisConnection<String, String> conn = step("handshake", client::connect);
    RedisCommands<String, String> r = conn.sync();
    StatefulRedisConnection<String, String> otherConn = step("handshake", client::connect);
    RedisCommands<String, String> other = otherConn.sync();
    expect("handshake PING", step("handshake", r::ping), "PONG");
    String info = step("handshake", r::clientInfo);
    if (!info.contains(" resp=" + resp + " ")) fail("handshake RESP version", info);
    // The same connect through a recording relay: what Lettuce sends and what the proxy answers.
    Common.Relay relay = new Common.Relay(o.host, o.port);
    RedisClient viaRelay = RedisClient.create(RedisURI.create("127.0.0.1", relay.port()));
    viaRelay.setOptions(client.getOptions());
    StatefulRedisConnection<String, String> recorded = step("handshake", viaRelay::connect);
    expect("handshake PING via relay", recorded.sync().ping(), "PONG");
    List<String> transcript = relay.transcript("handshake transcript", "PING");
    String version = io.lettuce.core.LettuceVersion.getVersion();
    // CLIENT MAINT_NOTIFICATIONS (Redis 8's maintenance events) gets Redis 7's answer, which
    // Lettuce ignores, as from any server before Redis 8.
    expect("handshake transcript", transcript, List.of(
        resp == 3 ? "HELLO 3 -> map of 7" : "PING -> PONG",
        "CLIENT SETINFO lib-name Lettuce -> OK",
        "CLIENT SETINFO lib-ver " + version + " -> OK",
        "CLIENT MAINT_NOTIFICATIONS on moving-endpoint-type internal-ip -> -ERR unknown subcommand 'MAINT_NOTIFICATIONS'. Try CLIENT HELP.",
        "PING -> PONG"));
    recorded.close();
    viaRelay.shutdown(Duration.ZERO, Duration.ofSeconds(2));
    ok("handshake", "connect sends " + (resp == 3 ? "HELLO 3 (a map)" : "PING") + ", CLIENT SETINFO lib-name and lib-ver (OK), CLIENT MAINT_NOTIFICATIONS (Redis 7's unknown subcommand, ignored); PING PONG, CLIENT INFO resp=" + resp);

    // Pipeline (auto-flush off on a connection of its own) over keys on every master, one
    // failing command in the middle.
    List<String> keys = o.perMaster(p + ":pipe:" + RUN);
    StatefulRedisConnection<String, String> pipeConn = client.connect();
    RedisAsyncCommands<String, String> a = pipeConn.async();
    pipeConn.setAutoFlushCommands(false);
    List<RedisFuture<?>> futures = new ArrayList<>();
    List<String> want = new ArrayList<>();
    for (int i = 0; i < keys.size(); i++) {
      futures.add(a.set(keys.get(i), String.valueOf(i * 10)));
      futures.add(a.incrby(keys.get(i), 5));
      want.add("OK");
      want.add(String.valueOf(i * 10 + 5));
    }
    futures.add(a.hset(keys.get(0) + ":h", "f", "v"));
    futures.add(a.incr(keys.get(0) + ":h"));
    want.add("true");
    want.add("error: WRONGTYPE Operation against a key holding the wrong kind of value");
    for (int i = 0; i < keys.size(); i++) {
      futures.add(a.get(keys.get(i)));
      want.add(String.valueOf(i * 10 + 5));
    }
    pipeConn.flushCommands();
    List<String> got = new ArrayList<>();
    for (RedisFuture<?> f : futures) {
      try {
        got.add(String.valueOf(f.get(10, TimeUnit.SECONDS)));
      } catch (ExecutionException e) {
        got.add("error: " + e.getCause().getMessage());
      }
    }
    expect("pipeline", got, want);
    pipeConn.close();
    ok("pipeline", want.size() + " commands over " + keys.size() + " masters in one flush, replies in order, one WRONGTYPE in place");

    // MULTI/EXEC on one slot.
    String tag = "{" + p + ":tx:" + RUN + "}";
    TransactionResult tx = step("transaction", () -> {
      r.multi();
      r.set(tag + "a", "1");
      r.incr(tag + "a");
      r.rpush(tag + "l", "x", "y");
      r.get(tag + "a");
      return r.exec();
    });
    expect("transaction discarded", tx.wasDiscarded(), false);
    expect("transaction", new ArrayList<Object>(tx.stream().toList()), List.of("OK", 2L, 2L, "2"));
    ok("transaction", "multi() ... exec() on one slot: [OK, 2, 2, \"2\"]");

    // MULTI over two slots: CROSSSLOT at queue time, EXECABORT at EXEC, nothing written.
    String ka = keys.get(0) + ":x";
    String kb = keys.get(1) + ":x";
    Exception abort = errorOf("cross-slot transaction", () -> {
      r.multi();
      r.set(ka, "1");
      r.set(kb, "1");
      return r.exec();
    });
    expect("cross-slot transaction", abort.getMessage(), "EXECABORT Transaction discarded because of previous errors.");
    expect("cross-slot transaction wrote nothing", r.exists(ka, kb), 0L);
    ok("cross-slot transaction", "EXECABORT, nothing written (as Redis Cluster)");

    // WATCH on a connection of its own: the first attempt sees the key change (discarded).
    String wk = tag + "counter";
    r.set(wk, "10");
    StatefulRedisConnection<String, String> wConn = client.connect();
    RedisCommands<String, String> w = wConn.sync();
    List<String> outcomes = new ArrayList<>();
    for (int attempt = 1; attempt <= 3; attempt++) {
      step("watch", () -> w.watch(wk));
      long v = Long.parseLong(w.get(wk));
      if (attempt == 1) other.incrby(wk, 100);
      TransactionResult res = step("watch", () -> {
        w.multi();
        w.set(wk, String.valueOf(v + 1));
        return w.exec();
      });
      outcomes.add(res.wasDiscarded() ? "discarded (key changed)" : res.stream().toList().toString());
      if (!res.wasDiscarded()) break;
    }
    expect("watch attempts", outcomes, List.of("discarded (key changed)", "[OK]"));
    expect("watch result", r.get(wk), "111");
    wConn.close();
    ok("watch", "watch/multi/exec retry loop: attempt 1 discarded (key changed), attempt 2 committed, 111");

    // Pub/sub on a connection of its own: a channel in each master's slots, a pattern, messages,
    // a command while subscribed (RESP3), unsubscribe. The proxy holds one subscription
    // connection on one master, and a PUBLISH counts the receivers on the channel slot's master.
    List<String> chans = o.perMaster(p + ":ch:" + RUN);
    String pat = p + ":pat:" + RUN + ":*";
    String pch = p + ":pat:" + RUN + ":x";
    StatefulRedisPubSubConnection<String, String> sub = client.connectPubSub();
    List<String> events = new CopyOnWriteArrayList<>();
    sub.addListener(new RedisPubSubAdapter<>() {
      @Override
      public void message(String channel, String message) {
        events.add("message " + channel + " " + message);
      }

      @Override
      public void message(String pattern, String channel, String message) {
        events.add("pmessage " + pattern + " " + channel + " " + message);
      }

      @Override
      public void subscribed(String channel, long count) {
        events.add("subscribe " + channel + " " + count);
      }

      @Override
      public void psubscribed(String pattern, long count) {
        events.add("psubscribe " + pattern + " " + count);
      }

      @Override
      public void unsubscribed(String channel, long count) {
        events.add("unsubscribe " + channel + " " + count);
      }

      @Override
      public void punsubscribed(String pattern, long count) {
        events.add("punsubscribe " + pattern + " " + count);
      }
    });
    step("pubsub subscribe", () -> {
      sub.sync().subscribe(chans.toArray(new String[0]));
      return null;
    });
    step("pubsub psubscribe", () -> {
      sub.sync().psubscribe(pat);
      return null;
    });
    List<String> wantEvents = new ArrayList<>();
    for (int i = 0; i < chans.size(); i++) wantEvents.add("subscribe " + chans.get(i) + " " + (i + 1));
    wantEvents.add("psubscribe " + pat + " 4");
    // The listeners run on Lettuce's event loop, possibly just after the command returned.
    eventually("pubsub subscribe confirmations", () -> new Object[] {events.size() >= wantEvents.size(), events});
    expect("pubsub subscribe confirmations", new ArrayList<>(events), wantEvents);
    if (resp == 3) expect("command while subscribed (RESP3)", step("pubsub", () -> sub.sync().get(keys.get(0))), "5");
    Map<String, Long> numsub = other.pubsubNumsub(chans.toArray(new String[0]));
    Map<String, Long> wantNumsub = new HashMap<>();
    for (String c : chans) wantNumsub.put(c, 1L);
    expect("PUBSUB NUMSUB through the proxy", numsub, wantNumsub);
    List<Long> counts = new ArrayList<>();
    List<Long> wantCounts = new ArrayList<>();
    List<String> wantMessages = new ArrayList<>();
    for (int i = 0; i < chans.size(); i++) {
      String ch = chans.get(i);
      wantCounts.add(Common.numsubOn(o.owner(slot(ch)), ch));
      counts.add(other.publish(ch, "hello" + i));
      wantMessages.add("message " + ch + " hello" + i);
    }
    expect("PUBLISH counts (receivers on each channel slot's master)", counts, wantCounts);
    expect("PUBLISH counts add up to the one subscriber", counts.stream().mapToLong(Long::longValue).sum(), 1L);
    other.publish(pch, "world");
    wantMessages.add("pmessage " + pat + " " + pch + " world");
    int before = wantEvents.size();
    eventually("pubsub messages", () -> new Object[] {events.size() >= before + wantMessages.size(), events});
    List<String> messages = new ArrayList<>(events.subList(before, events.size()));
    Collections.sort(messages);
    Collections.sort(wantMessages);
    expect("pubsub messages", messages, wantMessages);
    events.clear();
    step("pubsub unsubscribe", () -> {
      sub.sync().unsubscribe(chans.toArray(new String[0]));
      sub.sync().punsubscribe(pat);
      return null;
    });
    eventually("pubsub unsubscribe confirmations", () -> new Object[] {events.size() >= 4, events});
    List<String> wantUnsub = new ArrayList<>();
    for (int i = 0; i < chans.size(); i++) wantUnsub.add("unsubscribe " + chans.get(i) + " " + (3 - i));
    wantUnsub.add("punsubscribe " + pat + " 0");
    expect("pubsub unsubscribe confirmations", new ArrayList<>(events), wantUnsub);
    sub.close();
    eventually("pubsub gone from the nodes", () -> {
      String s = o.subscriptionsOnNodes(chans);
      return new Object[] {s.equals("0/0"), "numsub/numpat " + s};
    });
    ok("pubsub", "subscribe to 3 channels (one per master) 1 2 3, psubscribe 4, " + (resp == 3 ? "GET while subscribed, " : "") + "PUBLISH counts " + counts + ", 3 messages + pmessage, unsubscribe 2 1 0, punsubscribe 0, gone from the nodes");

    // BLPOP on a connection of its own while another connection pushes.
    String bk = keys.get(2) + ":q";
    StatefulRedisConnection<String, String> blocker = client.connect();
    RedisFuture<KeyValue<String, String>> popped = blocker.async().blpop(10, bk);
    eventually("blpop blocked on a node", () -> {
      Object[] b = o.blockedOnNodes();
      return new Object[] {(Long) b[0] == 1L, b[1]};
    });
    other.rpush(bk, "job1");
    KeyValue<String, String> kv = step("blpop", () -> popped.get(5, TimeUnit.SECONDS));
    expect("blpop", kv.getKey() + " " + kv.getValue(), bk + " job1");
    expect("blpop timeout", step("blpop timeout", () -> blocker.sync().blpop(0.1, bk)), null);
    blocker.close();
    ok("blpop", "blocked on the node, woken by another connection's RPUSH, [key job1]; empty list times out to null");

    // Scripts: EVALSHA with the application's NOSCRIPT fallback to EVAL (Lettuce has no helper
    // of its own). After SCRIPT FLUSH the first EVALSHA is NOSCRIPT; the EVAL that follows
    // teaches the proxy the script, which then loads it on a master that answers NOSCRIPT.
    String lua = "return redis.call('INCRBY', KEYS[1], ARGV[1])";
    String sha = r.digest(lua);
    expect("SCRIPT LOAD", other.scriptLoad(lua), sha);
    expect("SCRIPT FLUSH", r.scriptFlush(), "OK");
    expect("SCRIPT FLUSH reached every master", o.scriptOnEveryNode(sha), List.of(0L, 0L, 0L));
    List<Long> sums = new ArrayList<>();
    List<String> paths = new ArrayList<>();
    for (String k : keys) {
      for (int n = 0; n < 2; n++) {
        String key = k + ":s";
        Long v;
        try {
          v = r.evalsha(sha, ScriptOutputType.INTEGER, new String[] {key}, "7");
          paths.add("evalsha");
        } catch (RedisNoScriptException e) {
          expect("NOSCRIPT error", e.getMessage(), "NOSCRIPT No matching script. Please use EVAL.");
          v = r.eval(lua, ScriptOutputType.INTEGER, new String[] {key}, "7");
          paths.add("noscript+eval");
        }
        sums.add(v);
      }
    }
    expect("script results", sums, List.of(7L, 14L, 7L, 14L, 7L, 14L));
    expect("script paths", paths, List.of("noscript+eval", "evalsha", "evalsha", "evalsha", "evalsha", "evalsha"));
    expect("SCRIPT EXISTS through the proxy", r.scriptExists(sha), List.of(true));
    expect("script loaded on every master", o.scriptOnEveryNode(sha), List.of(1L, 1L, 1L));
    ok("scripts", "after SCRIPT FLUSH: EVALSHA NOSCRIPT -> EVAL once, then EVALSHA on each master 7 then 14; loaded everywhere");

    // ScanIterator over 300 keys on every master.
    String pattern = p + ":scan:" + RUN + ":*";
    Map<String, String> fill = new LinkedHashMap<>();
    for (int i = 0; i < 300; i++) fill.put(p + ":scan:" + RUN + ":" + i, String.valueOf(i));
    expect("scan setup", r.mset(fill), "OK");
    List<Integer> per = o.keysOnNodes(pattern);
    if (per.contains(0)) fail("scan setup", "keys per master " + per);
    List<String> seen = new ArrayList<>();
    ScanIterator<String> it = ScanIterator.scan(r, ScanArgs.Builder.matches(pattern).limit(25));
    while (it.hasNext()) seen.add(it.next());
    Map<String, Integer> times = new HashMap<>();
    for (String k : seen) times.merge(k, 1, Integer::sum);
    times.values().removeIf(n -> n == 1);
    if (!times.isEmpty()) fail("scan", "seen more than once: " + times);
    List<String> wantKeys = new ArrayList<>(fill.keySet());
    Collections.sort(wantKeys);
    Collections.sort(seen);
    expect("scan keys", seen, wantKeys);
    ok("scan", "ScanIterator MATCH COUNT 25: all 300 keys once (per master " + per + ")");

    // MSET/MGET/DEL across slots.
    String missing = p + ":missing:" + RUN;
    Map<String, String> m = new LinkedHashMap<>();
    m.put(keys.get(0) + ":m", "a");
    m.put(keys.get(1) + ":m", "b");
    m.put(keys.get(2) + ":m", "c");
    expect("mset", r.mset(m), "OK");
    List<String> values = new ArrayList<>();
    for (KeyValue<String, String> e : r.mget(keys.get(2) + ":m", missing, keys.get(0) + ":m", keys.get(1) + ":m")) {
      values.add(e.getKey() + "=" + (e.hasValue() ? e.getValue() : "(nil)"));
    }
    expect("mget", values, List.of(keys.get(2) + ":m=c", missing + "=(nil)", keys.get(0) + ":m=a", keys.get(1) + ":m=b"));
    expect("del", r.del(keys.get(0) + ":m", keys.get(1) + ":m", keys.get(2) + ":m", missing), 3L);
    expect("exists after del", r.exists(keys.get(0) + ":m", keys.get(1) + ":m", keys.get(2) + ":m"), 0L);
    ok("cross-slot", "MSET over 3 masters OK, MGET in request order with nil, DEL 3, EXISTS 0");

    conn.close();
    otherConn.close();
    client.shutdown(Duration.ZERO, Duration.ofSeconds(2));
    System.out.printf("lettuce %s resp%d ok in %.1fs%n", io.lettuce.core.LettuceVersion.getVersion().split("/")[0], resp, (System.currentTimeMillis() - started) / 1000.0);
    System.exit(0);
  }
}
