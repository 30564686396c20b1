package clusterless.spring;

import io.lettuce.core.RedisClient;
import io.lettuce.core.RedisURI;
import io.lettuce.core.api.StatefulRedisConnection;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeSet;
import java.util.concurrent.ConcurrentHashMap;
import org.springframework.boot.SpringApplication;
import org.springframework.boot.WebApplicationType;
import org.springframework.boot.autoconfigure.SpringBootApplication;
import org.springframework.context.ConfigurableApplicationContext;
import org.springframework.context.event.EventListener;
import org.springframework.data.redis.core.StringRedisTemplate;
import org.springframework.session.Session;
import org.springframework.session.data.redis.RedisIndexedSessionRepository;
import org.springframework.session.data.redis.config.annotation.web.http.EnableRedisIndexedHttpSession;
import org.springframework.session.events.SessionCreatedEvent;
import org.springframework.session.events.SessionExpiredEvent;
import org.springframework.stereotype.Component;

/**
 * A minimal Spring Boot application against clusterless, configured only with
 * spring.data.redis.host and spring.data.redis.port: StringRedisTemplate set/get, and Spring
 * Session's indexed Redis repository (which runs `CONFIG SET notify-keyspace-events` itself and
 * listens for `__keyevent@*__:expired`) with sessions that expire after 2 s (room to read each
 * back first), one at least on every master; every session's SessionExpiredEvent must arrive.
 * Prints one line per check and exits non-zero on the first failure.
 * Usage: java -cp ... clusterless.spring.SpringApp --addr HOST:PORT --nodes P1,P2,P3
 */
@SpringBootApplication
@EnableRedisIndexedHttpSession(maxInactiveIntervalInSeconds = 2)
public class SpringApp {
  static final long WATCHDOG_MS = 60_000;

  /** Session events as the application sees them, by session id. */
  @Component
  static class Events {
    final Set<String> created = ConcurrentHashMap.newKeySet();
    final Set<String> expired = ConcurrentHashMap.newKeySet();

    @EventListener
    public void onCreated(SessionCreatedEvent e) {
      created.add(e.getSessionId());
    }

    @EventListener
    public void onExpired(SessionExpiredEvent e) {
      expired.add(e.getSessionId());
    }
  }

  static void fail(String check, Object got) {
    System.out.println("FAIL " + check + ": " + got);
    System.out.flush();
    Runtime.getRuntime().halt(1);
  }

  static void ok(String check, String detail) {
    System.out.println("ok " + check + ": " + detail);
  }

  static void expect(String check, Object got, Object want) {
    if (!java.util.Objects.equals(got, want)) fail(check, "got " + got + ", want " + want);
  }

  interface Cond {
    Object[] get();
  }

  static void eventually(String check, long ms, Cond cond) throws InterruptedException {
    long deadline = System.currentTimeMillis() + ms;
    for (;;) {
      Object[] r = cond.get();
      if ((Boolean) r[0]) return;
      if (System.currentTimeMillis() > deadline) fail(check, "never true in " + ms + " ms; last: " + r[1]);
      Thread.sleep(20);
    }
  }

  public static void main(String[] argv) {
    try {
      run(argv);
    } catch (Throwable e) {
      java.io.StringWriter trace = new java.io.StringWriter();
      e.printStackTrace(new java.io.PrintWriter(trace));
      fail("unexpected", trace);
    }
  }

  private static void run(String[] argv) throws Exception {
    String addr = null;
    List<Integer> nodes = new ArrayList<>();
    for (int i = 0; i < argv.length; i++) {
      switch (argv[i]) {
        case "--addr" -> addr = argv[++i];
        case "--nodes" -> {
          for (String p : argv[++i].split(",")) nodes.add(Integer.parseInt(p));
        }
        default -> throw new IllegalArgumentException("unknown argument " + argv[i]);
      }
    }
    if (addr == null || nodes.isEmpty()) throw new IllegalArgumentException("--addr and --nodes are required");
    Thread watchdog = new Thread(() -> {
      try {
        Thread.sleep(WATCHDOG_MS);
      } catch (InterruptedException e) {
        return;
      }
      fail("watchdog", "still running after " + WATCHDOG_MS + " ms");
    });
    watchdog.setDaemon(true);
    watchdog.start();
    long started = System.currentTimeMillis();
    int colon = addr.lastIndexOf(':');

    // The nodes, asked directly (never through the proxy).
    Map<Integer, StatefulRedisConnection<String, String>> direct = new HashMap<>();
    RedisClient nodeClient = RedisClient.create();
    for (int p : nodes) direct.put(p, nodeClient.connect(RedisURI.create("127.0.0.1", p)));

    SpringApplication app = new SpringApplication(SpringApp.class);
    app.setWebApplicationType(WebApplicationType.NONE);
    Map<String, Object> props = new HashMap<>();
    props.put("spring.data.redis.host", addr.substring(0, colon));
    props.put("spring.data.redis.port", addr.substring(colon + 1));
    props.put("spring.main.banner-mode", "off");
    props.put("logging.level.root", "WARN");
    app.setDefaultProperties(props);
    ConfigurableApplicationContext ctx = app.run();
    ok("startup", "application context up in " + (System.currentTimeMillis() - started) + " ms");

    // RedisTemplate.
    StringRedisTemplate t = ctx.getBean(StringRedisTemplate.class);
    String key = "spring:template:" + Long.toString(started, 36);
    t.opsForValue().set(key, "value-1");
    expect("RedisTemplate get", t.opsForValue().get(key), "value-1");
    expect("RedisTemplate delete", t.delete(key), true);
    expect("RedisTemplate get after delete", t.opsForValue().get(key), null);
    ok("template", "StringRedisTemplate set, get value-1, delete true, get null");

    // Spring Session's own CONFIG SET notify-keyspace-events (it adds Egx to what CONFIG GET
    // answered), on every node.
    List<String> flags = new ArrayList<>();
    for (int p : nodes) {
      String v = direct.get(p).sync().configGet("notify-keyspace-events").get("notify-keyspace-events");
      Set<Character> set = new TreeSet<>();
      for (char c : v.toCharArray()) set.add(c);
      flags.add(set.toString());
    }
    List<String> want = new ArrayList<>();
    for (int i = 0; i < nodes.size(); i++) want.add("[E, g, x]");
    expect("notify-keyspace-events on every node", flags, want);
    ok("keyspace events", "Spring Session's CONFIG SET reached every node: notify-keyspace-events Egx on " + nodes);

    // Sessions with a 1 s lifetime until their expiry keys sit on every master.
    RedisIndexedSessionRepository repo = ctx.getBean(RedisIndexedSessionRepository.class);
    Events events = ctx.getBean(Events.class);
    Map<String, Integer> sessionNode = new HashMap<>();
    Set<Integer> covered = new HashSet<>();
    for (int n = 0; covered.size() < nodes.size(); n++) {
      if (n > 100) fail("sessions", "expiry keys never on every master: " + sessionNode);
      RedisIndexedSessionRepository.RedisSession s = repo.createSession();
      s.setAttribute("user", "alice" + n);
      repo.save(s);
      String expiresKey = "spring:session:sessions:expires:" + s.getId();
      int holder = -1;
      for (int p : nodes) {
        try {
          if (direct.get(p).sync().exists(expiresKey) == 1) holder = p;
        } catch (io.lettuce.core.RedisCommandExecutionException e) {
          if (!e.getMessage().startsWith("MOVED ")) throw e;
        }
      }
      if (holder < 0) fail("session saved", "no master holds " + expiresKey);
      Session loaded = repo.findById(s.getId());
      if (loaded == null) fail("session read back", "findById(" + s.getId() + ") null");
      expect("session attribute", loaded.getAttribute("user"), "alice" + n);
      sessionNode.put(s.getId(), holder);
      covered.add(holder);
    }
    ok("sessions", sessionNode.size() + " sessions saved and read back, expiry keys on masters " + new TreeSet<>(sessionNode.values()));
    eventually("SessionCreatedEvent for every session", 10_000, () -> new Object[] {events.created.containsAll(sessionNode.keySet()), events.created});
    ok("created events", "SessionCreatedEvent for all " + sessionNode.size());

    // Each expiry is a keyspace event on the master that holds the key; the proxy subscribes to
    // `__keyevent@*__:expired` on every master, so every session's SessionExpiredEvent arrives.
    eventually("SessionExpiredEvent for every session", 20_000, () -> {
      Set<Integer> missing = new TreeSet<>();
      for (Map.Entry<String, Integer> e : sessionNode.entrySet()) {
        if (!events.expired.contains(e.getKey())) missing.add(e.getValue());
      }
      return new Object[] {missing.isEmpty(), "still waiting for sessions on masters " + missing + ", expired " + events.expired.size()};
    });
    for (String id : sessionNode.keySet()) {
      if (repo.findById(id) != null) fail("expired session gone", "findById(" + id + ") still answers");
    }
    ok("expired events", "SessionExpiredEvent for all " + sessionNode.size() + " sessions (masters " + new TreeSet<>(sessionNode.values()) + "), findById null after");

    ctx.close();
    for (StatefulRedisConnection<String, String> c : direct.values()) c.close();
    nodeClient.shutdown();
    System.out.printf("spring-boot %s ok in %.1fs%n", SpringApplication.class.getPackage().getImplementationVersion(), (System.currentTimeMillis() - started) / 1000.0);
    System.exit(0);
  }
}
