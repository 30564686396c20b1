package clusterless;

import java.io.BufferedInputStream;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.Socket;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Objects;
import java.util.Set;
import java.util.function.Supplier;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * Shared by the Java client programs: argument parsing, check reporting, key slots, and a tiny
 * independent RESP2 client that asks the cluster's masters directly (never through the proxy)
 * what the proxy could get wrong: where a slot is served, whether a client is blocked, where a
 * subscription sits, whether a script is loaded, how many keys each master holds.
 */
final class Common {
  static final long WATCHDOG_MS = 60_000;
  static final String RUN = Long.toString(System.currentTimeMillis(), 36);

  final String host;
  final int port;
  final List<Integer> nodes = new ArrayList<>();
  /** `--protocol 2|3`, or 0: the library's default (no setting). */
  int protocol;

  private Common(String host, int port) {
    this.host = host;
    this.port = port;
  }

  /**
   * `--addr HOST:PORT --nodes P1,P2,P3 [--protocol 2|3]`; starts a watchdog that fails the run
   * past 60 s.
   */
  static Common args(String[] a) {
    String addr = null;
    String nodes = null;
    int protocol = 0;
    for (int i = 0; i < a.length; i++) {
      switch (a[i]) {
        case "--addr" -> addr = a[++i];
        case "--nodes" -> nodes = a[++i];
        case "--protocol" -> protocol = Integer.parseInt(a[++i]);
        default -> throw new IllegalArgumentException("unknown argument " + a[i]);
      }
    }
    if (addr == null || nodes == null) throw new IllegalArgumentException("--addr and --nodes are required");
    int colon = addr.lastIndexOf(':');
    Common c = new Common(addr.substring(0, colon), Integer.parseInt(addr.substring(colon + 1)));
    c.protocol = protocol;
    for (String p : nodes.split(",")) if (!p.isEmpty()) c.nodes.add(Integer.parseInt(p));
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
    return c;
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
    if (!Objects.equals(got, want)) fail(check, "got " + show(got) + ", want " + show(want));
  }

  static String show(Object v) {
    if (v == null) return "null";
    if (v instanceof String s) return '"' + s + '"';
    if (v instanceof List<?> l) {
      List<String> parts = new ArrayList<>();
      for (Object o : l) parts.add(show(o));
      return "[" + String.join(", ", parts) + "]";
    }
    return v.toString();
  }

  interface Program {
    void run(String[] argv) throws Exception;
  }

  /** A program's main: whatever it throws fails `check` with the stack trace (a FAIL line, exit 1). */
  static void runMain(String check, String[] argv, Program program) {
    try {
      program.run(argv);
    } catch (Throwable e) {
      java.io.StringWriter trace = new java.io.StringWriter();
      e.printStackTrace(new java.io.PrintWriter(trace));
      fail(check, trace);
    }
  }

  interface Body<T> {
    T run() throws Exception;
  }

  /** Runs body; a thrown exception fails the check with its class and message. */
  static <T> T step(String check, Body<T> body) {
    try {
      return body.run();
    } catch (Exception e) {
      fail(check, "error: " + e);
      return null;
    }
  }

  /** Runs body expecting it to throw; returns the exception (fails the check on success). */
  static Exception errorOf(String check, Body<?> body) {
    try {
      Object v = body.run();
      fail(check, "no error; got " + show(v));
      return null;
    } catch (Exception e) {
      return e;
    }
  }

  /** Polls cond (its result: done, and what to print if it never is) for up to 10 s. */
  static void eventually(String check, Supplier<Object[]> cond) {
    long deadline = System.currentTimeMillis() + 10_000;
    for (;;) {
      Object[] r = cond.get();
      if ((Boolean) r[0]) return;
      if (System.currentTimeMillis() > deadline) fail(check, "never true; last: " + r[1]);
      try {
        Thread.sleep(20);
      } catch (InterruptedException e) {
        fail(check, "interrupted");
      }
    }
  }

  static int crc16(byte[] buf) {
    int crc = 0;
    for (byte b : buf) {
      crc ^= (b & 0xff) << 8;
      for (int i = 0; i < 8; i++) crc = (crc & 0x8000) != 0 ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff;
    }
    return crc;
  }

  static int slot(String key) {
    String k = key;
    int s = k.indexOf('{');
    if (s >= 0) {
      int e = k.indexOf('}', s + 1);
      if (e > s + 1) k = k.substring(s + 1, e);
    }
    return crc16(k.getBytes(StandardCharsets.UTF_8)) % 16384;
  }

  /** A node's error reply. */
  static final class ErrorReply extends RuntimeException {
    ErrorReply(String msg) {
      super(msg);
    }
  }

  /**
   * One RESP2 command to 127.0.0.1:port on a fresh connection. Replies: String, Long, null,
   * List; an error reply throws ErrorReply.
   */
  static Object direct(int port, Object... cmd) {
    try (Socket s = new Socket("127.0.0.1", port)) {
      s.setSoTimeout(5000);
      ByteArrayOutputStream req = new ByteArrayOutputStream();
      req.write(("*" + cmd.length + "\r\n").getBytes(StandardCharsets.UTF_8));
      for (Object c : cmd) {
        byte[] b = String.valueOf(c).getBytes(StandardCharsets.UTF_8);
        req.write(("$" + b.length + "\r\n").getBytes(StandardCharsets.UTF_8));
        req.write(b);
        req.write("\r\n".getBytes(StandardCharsets.UTF_8));
      }
      OutputStream out = s.getOutputStream();
      out.write(req.toByteArray());
      out.flush();
      Object r = parse(new BufferedInputStream(s.getInputStream()));
      if (r instanceof ErrorReply e) throw e;
      return r;
    } catch (IOException e) {
      throw new RuntimeException("node " + port + ": " + e, e);
    }
  }

  private static String line(InputStream in) throws IOException {
    ByteArrayOutputStream b = new ByteArrayOutputStream();
    int prev = -1;
    for (;;) {
      int c = in.read();
      if (c < 0) throw new IOException("connection closed");
      if (prev == '\r' && c == '\n') {
        byte[] all = b.toByteArray();
        return new String(all, 0, all.length - 1, StandardCharsets.UTF_8);
      }
      b.write(c);
      prev = c;
    }
  }

  private static Object parse(InputStream in) throws IOException {
    String l = line(in);
    char t = l.charAt(0);
    String rest = l.substring(1);
    switch (t) {
      case '+':
        return rest;
      case '-':
        return new ErrorReply(rest);
      case ':':
        return Long.parseLong(rest);
      case '$': {
        int n = Integer.parseInt(rest);
        if (n < 0) return null;
        byte[] b = in.readNBytes(n + 2);
        return new String(b, 0, n, StandardCharsets.UTF_8);
      }
      case '*': {
        int n = Integer.parseInt(rest);
        if (n < 0) return null;
        List<Object> out = new ArrayList<>();
        for (int i = 0; i < n; i++) out.add(parse(in));
        return out;
      }
      default:
        throw new IOException("unexpected reply type " + t);
    }
  }

  /** The master (port) serving a slot, by the cluster's own CLUSTER SLOTS. */
  int owner(int slot) {
    List<?> ranges = (List<?>) direct(nodes.get(0), "CLUSTER", "SLOTS");
    for (Object o : ranges) {
      List<?> r = (List<?>) o;
      if ((Long) r.get(0) <= slot && slot <= (Long) r.get(1)) return ((Long) ((List<?>) r.get(2)).get(1)).intValue();
    }
    fail("CLUSTER SLOTS on a node", "nobody serves slot " + slot);
    return -1;
  }

  /** One key per master, named prefix:i. */
  List<String> perMaster(String prefix) {
    Set<Integer> seen = new HashSet<>();
    List<String> keys = new ArrayList<>();
    for (int i = 0; keys.size() < nodes.size(); i++) {
      String k = prefix + ":" + i;
      if (seen.add(owner(slot(k)))) keys.add(k);
      if (i > 1000) fail("keys per master", "could not place a key on every master");
    }
    return keys;
  }

  private static final Pattern BLOCKED = Pattern.compile("blocked_clients:(\\d+)");

  /** Blocked clients summed over the masters, and the per-node counts. */
  Object[] blockedOnNodes() {
    long total = 0;
    List<String> parts = new ArrayList<>();
    for (int p : nodes) {
      Matcher m = BLOCKED.matcher((String) direct(p, "INFO", "clients"));
      if (!m.find()) fail("INFO clients", "no blocked_clients on node " + p);
      total += Long.parseLong(m.group(1));
      parts.add(p + "=" + m.group(1));
    }
    return new Object[] {total, String.join(" ", parts)};
  }

  static long numsubOn(int port, String channel) {
    return (Long) ((List<?>) direct(port, "PUBSUB", "NUMSUB", channel)).get(1);
  }

  static long numpatOn(int port) {
    return (Long) direct(port, "PUBSUB", "NUMPAT");
  }

  List<Long> scriptOnEveryNode(String sha) {
    List<Long> out = new ArrayList<>();
    for (int p : nodes) out.add((Long) ((List<?>) direct(p, "SCRIPT", "EXISTS", sha)).get(0));
    return out;
  }

  List<Integer> keysOnNodes(String pattern) {
    List<Integer> out = new ArrayList<>();
    for (int p : nodes) out.add(((List<?>) direct(p, "KEYS", pattern)).size());
    return out;
  }

  /** Subscribers of the channels and patterns summed over every master, as "numsub/numpat". */
  String subscriptionsOnNodes(List<String> channels) {
    long sub = 0;
    long pat = 0;
    for (int p : nodes) {
      for (String c : channels) sub += numsubOn(p, c);
      pat += numpatOn(p);
    }
    return sub + "/" + pat;
  }

  /**
   * A loopback relay in front of the proxy that records the first connection through it, both
   * ways: what a library sends when it connects, and what the proxy answers.
   */
  static final class Relay {
    private final java.net.ServerSocket server;
    private final ByteArrayOutputStream up = new ByteArrayOutputStream();
    private final ByteArrayOutputStream down = new ByteArrayOutputStream();

    Relay(String host, int port) throws IOException {
      server = new java.net.ServerSocket(0, 50, java.net.InetAddress.getLoopbackAddress());
      Thread accept = new Thread(() -> {
        boolean first = true;
        try {
          for (;;) {
            Socket client = server.accept();
            Socket proxy = new Socket(host, port);
            pump(client.getInputStream(), proxy.getOutputStream(), first ? up : null);
            pump(proxy.getInputStream(), client.getOutputStream(), first ? down : null);
            first = false;
          }
        } catch (IOException e) {
          // closed
        }
      });
      accept.setDaemon(true);
      accept.start();
    }

    int port() {
      return server.getLocalPort();
    }

    private static void pump(InputStream in, OutputStream out, ByteArrayOutputStream record) {
      Thread t = new Thread(() -> {
        byte[] buf = new byte[8192];
        try {
          for (int n; (n = in.read(buf)) > 0; ) {
            if (record != null) {
              synchronized (record) {
                record.write(buf, 0, n);
              }
            }
            out.write(buf, 0, n);
            out.flush();
          }
        } catch (IOException e) {
          // either side closed
        }
      });
      t.setDaemon(true);
      t.start();
    }

    /**
     * The recorded connection as "COMMAND args -> reply" lines, once every command has its reply
     * and the last command is `lastCommand` (fails the check after 10 s otherwise).
     */
    List<String> transcript(String check, String lastCommand) {
      List<String> lines = new ArrayList<>();
      eventually(check, () -> {
        byte[] u;
        byte[] d;
        synchronized (up) {
          u = up.toByteArray();
        }
        synchronized (down) {
          d = down.toByteArray();
        }
        List<String> cmds = new ArrayList<>();
        List<String> replies = new ArrayList<>();
        try {
          InputStream ui = new java.io.ByteArrayInputStream(u);
          while (ui.available() > 0) cmds.add(render(parse3(ui)));
          InputStream di = new java.io.ByteArrayInputStream(d);
          while (di.available() > 0) replies.add(render(parse3(di)));
        } catch (IOException e) {
          return new Object[] {false, "partial: " + cmds + " / " + replies};
        }
        boolean done = !cmds.isEmpty() && cmds.size() == replies.size() && cmds.get(cmds.size() - 1).equals(lastCommand);
        lines.clear();
        for (int i = 0; i < cmds.size(); i++) lines.add(cmds.get(i) + " -> " + (i < replies.size() ? replies.get(i) : "?"));
        return new Object[] {done, lines};
      });
      return lines;
    }

    private static String render(Object v) {
      if (v instanceof ErrorReply e) return "-" + e.getMessage();
      if (v instanceof List<?> l) {
        List<String> parts = new ArrayList<>();
        for (Object o : l) parts.add(String.valueOf(o));
        return String.join(" ", parts);
      }
      return String.valueOf(v);
    }

    /** RESP2 and RESP3: aggregates other than arrays are summarised by their type and size. */
    private static Object parse3(InputStream in) throws IOException {
      String l = line(in);
      char t = l.charAt(0);
      String rest = l.substring(1);
      switch (t) {
        case '+', ':', ',', '(', '#':
          return rest;
        case '_':
          return "(null)";
        case '-':
          return new ErrorReply(rest);
        case '$', '=', '!': {
          int n = Integer.parseInt(rest);
          if (n < 0) return "(null)";
          byte[] b = in.readNBytes(n + 2);
          if (b.length < n + 2) throw new IOException("short");
          String v = new String(b, 0, n, StandardCharsets.UTF_8);
          return t == '!' ? new ErrorReply(v) : v;
        }
        case '*', '~', '>', '%', '|': {
          int n = Integer.parseInt(rest);
          if (n < 0) return "(null)";
          int items = t == '%' || t == '|' ? 2 * n : n;
          List<Object> out = new ArrayList<>();
          for (int i = 0; i < items; i++) out.add(parse3(in));
          if (t == '|') return parse3(in);
          if (t == '*') return out;
          return (t == '%' ? "map of " : t == '~' ? "set of " : "push of ") + n;
        }
        default:
          throw new IOException("unexpected reply type " + t);
      }
    }
  }
}
