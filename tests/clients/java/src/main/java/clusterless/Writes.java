package clusterless;

import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ConcurrentLinkedQueue;

/**
 * The failover write loop of tests/clients/go/writes.go for the Java clients, each with its
 * defaults as in LettuceChecks and JedisChecks: `--client lettuce` is
 * `RedisClient.create(RedisURI.create(host, port))` with one connection's sync API (Lettuce 7:
 * RESP3, auto-reconnect, 60 s command timeout), `--client jedis` is Jedis 8's pooled
 * `RedisClient.create(host, port)` (RESP3, 2 s socket timeout).
 * Usage: java -cp ... clusterless.Writes --client lettuce|jedis --addr HOST:PORT
 *
 * <p>One client RPUSHes a sequence number to 60 keys in turn, one command at a time, while the
 * test kills a master. It prints "running" after 100 acknowledged writes and one line per error
 * ("error SEQ TEXT"). Standard input drives it: on the line "mark" (the test saw the new master)
 * it writes 200 more times and stops; "stop" or EOF stops at once. Then it reads every key back
 * and prints "lost N [...]" (acknowledged but not there), "failed-but-written N [...]" (failed in
 * the client but there: it ran), "duplicates N [...]", "slowest Dms" (the longest write) and last "writes ok=N errors=M after-mark-errors=K".
 */
public final class Writes {
  interface Client {
    void push(String key, int seq);

    List<String> lrange(String key);

    void close();
  }

  static Client lettuce(String host, int port) {
    io.lettuce.core.RedisClient client =
        io.lettuce.core.RedisClient.create(io.lettuce.core.RedisURI.create(host, port));
    io.lettuce.core.api.StatefulRedisConnection<String, String> conn = client.connect();
    io.lettuce.core.api.sync.RedisCommands<String, String> r = conn.sync();
    return new Client() {
      public void push(String key, int seq) {
        r.rpush(key, Integer.toString(seq));
      }

      public List<String> lrange(String key) {
        return r.lrange(key, 0, -1);
      }

      public void close() {
        conn.close();
        client.shutdown();
      }
    };
  }

  static Client jedis(String host, int port) {
    redis.clients.jedis.RedisClient r = redis.clients.jedis.RedisClient.create(host, port);
    return new Client() {
      public void push(String key, int seq) {
        r.rpush(key, Integer.toString(seq));
      }

      public List<String> lrange(String key) {
        return r.lrange(key, 0, -1);
      }

      public void close() {
        r.close();
      }
    };
  }

  public static void main(String[] argv) {
    Common.runMain("writes", argv, Writes::run);
    System.out.flush();
    System.exit(0);
  }

  private static void run(String[] argv) throws Exception {
    String which = "";
    String addr = null;
    for (int i = 0; i < argv.length; i++) {
      switch (argv[i]) {
        case "--client" -> which = argv[++i];
        case "--addr" -> addr = argv[++i];
        default -> throw new IllegalArgumentException("unknown argument " + argv[i]);
      }
    }
    if (addr == null) throw new IllegalArgumentException("--addr is required");
    int colon = addr.lastIndexOf(':');
    String host = addr.substring(0, colon);
    int port = Integer.parseInt(addr.substring(colon + 1));
    Client c = switch (which) {
      case "lettuce" -> lettuce(host, port);
      case "jedis" -> jedis(host, port);
      default -> throw new IllegalArgumentException("unknown --client " + which);
    };
    String run = Long.toString(System.currentTimeMillis(), 36);
    List<String> keys = new ArrayList<>();
    for (int i = 0; i < 60; i++) keys.add("wr:" + run + ":" + i);
    ConcurrentLinkedQueue<String> control = new ConcurrentLinkedQueue<>();
    Thread reader = new Thread(() -> {
      try (BufferedReader in = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8))) {
        for (String line; (line = in.readLine()) != null; ) control.add(line);
      } catch (Exception e) {
        // EOF or a closed pipe: stop, as below.
      }
      control.add("stop");
    });
    reader.setDaemon(true);
    reader.start();
    int okCount = 0;
    int errCount = 0;
    int afterMarkErrs = 0;
    boolean marked = false;
    int left = 0;
    long slowest = 0;
    List<Integer> acked = new ArrayList<>();
    List<Integer> failed = new ArrayList<>();
    long deadline = System.currentTimeMillis() + 90_000;
    for (int seq = 0; ; seq++) {
      String cmd = control.poll();
      if ("mark".equals(cmd)) {
        marked = true;
        left = 200;
      } else if (cmd != null) {
        break;
      }
      if ((marked && left == 0) || System.currentTimeMillis() > deadline) break;
      long sent = System.nanoTime();
      try {
        c.push(keys.get(seq % keys.size()), seq);
        okCount++;
        acked.add(seq);
        if (okCount == 100) System.out.println("running");
      } catch (RuntimeException e) {
        errCount++;
        if (marked) afterMarkErrs++;
        failed.add(seq);
        String text = e.getClass().getSimpleName() + ": " + e.getMessage();
        for (Throwable t = e.getCause(); t != null; t = t.getCause()) {
          text += " / " + t.getClass().getSimpleName() + ": " + t.getMessage();
        }
        System.out.println("error " + seq + " " + text.replace('\n', ' '));
      }
      slowest = Math.max(slowest, System.nanoTime() - sent);
      if (marked) left--;
    }
    // Each acknowledged sequence number must be in its key's list (else "lost"), and every one at
    // most once (a client retry of a write the proxy still held would show up twice).
    Map<String, Integer> counts = new HashMap<>();
    for (String k : keys) for (String v : c.lrange(k)) counts.merge(v, 1, Integer::sum);
    List<Integer> lost = new ArrayList<>();
    for (int seq : acked) if (!counts.containsKey(Integer.toString(seq))) lost.add(seq);
    System.out.println("lost " + lost.size() + " " + lost.toString().replace(",", ""));
    List<Integer> written = new ArrayList<>();
    for (int seq : failed) if (counts.containsKey(Integer.toString(seq))) written.add(seq);
    System.out.println("failed-but-written " + written.size() + " " + written.toString().replace(",", ""));
    List<String> dups = new ArrayList<>();
    counts.forEach((v, n) -> {
      if (n > 1) dups.add(v + " x" + n);
    });
    System.out.println("duplicates " + dups.size() + " " + dups.toString().replace(",", ""));
    System.out.println("slowest " + slowest / 1_000_000 + "ms");
    System.out.println("writes ok=" + okCount + " errors=" + errCount + " after-mark-errors=" + afterMarkErrs);
    c.close();
  }
}
