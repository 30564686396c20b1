// Real Go clients against clusterless, each in its default standalone (non-cluster)
// configuration, as an application that moved from one Redis to a cluster behind the proxy.
//
// Usage: clients -client go-redis|rueidis -addr 127.0.0.1:PORT -nodes P1,P2,P3
//
//	clients -client go-redis|rueidis -mode writes -addr ... (the failover write loop; see writes.go)
//
// -nodes are the cluster's master ports. They are asked directly, never through the proxy, for
// facts the proxy could get wrong: where a key or a subscription sits, whether a client is
// blocked, whether a script is loaded. Each check prints one line ("ok NAME: detail"); the
// first failure prints "FAIL NAME: what was got" and exits 1. A watchdog ends a hung run.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

const watchdog = 60 * time.Second

var (
	addr  string
	nodes []string
	run   = strconv.FormatInt(time.Now().UnixNano()%1_000_000_000, 36)
)

func main() {
	client := flag.String("client", "", "go-redis or rueidis")
	mode := flag.String("mode", "checks", "checks, or writes")
	flag.StringVar(&addr, "addr", "", "the proxy's address")
	nodesFlag := flag.String("nodes", "", "the masters' ports, comma separated")
	flag.Parse()
	for _, p := range strings.Split(*nodesFlag, ",") {
		if p != "" {
			nodes = append(nodes, "127.0.0.1:"+p)
		}
	}
	if *mode == "writes" {
		if *client == "rueidis" {
			writesRueidis()
		} else {
			writes()
		}
		return
	}
	if addr == "" || len(nodes) == 0 {
		fail("usage", "-addr and -nodes are required")
	}
	time.AfterFunc(watchdog, func() {
		buf := make([]byte, 1<<20)
		n := runtime.Stack(buf, true)
		fail("watchdog", fmt.Sprintf("still running after %v\n%s", watchdog, buf[:n]))
	})
	start := time.Now()
	switch *client {
	case "go-redis":
		goRedis()
	case "rueidis":
		rueidisChecks()
	default:
		fail("usage", "unknown -client "+*client)
	}
	fmt.Printf("%s ok in %.1fs\n", *client, time.Since(start).Seconds())
}

func fail(check, got string) {
	fmt.Printf("FAIL %s: %s\n", check, got)
	os.Exit(1)
}

func ok(check, detail string) {
	fmt.Printf("ok %s: %s\n", check, detail)
}

// expect fails the check unless got equals want (compared by their %#v rendering).
func expect(check string, got, want any) {
	if g, w := fmt.Sprintf("%#v", got), fmt.Sprintf("%#v", want); g != w {
		fail(check, fmt.Sprintf("got %s, want %s", g, w))
	}
}

func must(check string, err error) {
	if err != nil {
		fail(check, "error: "+err.Error())
	}
}

// eventually polls cond every 20 ms for up to 10 s (a condition the proxy reaches
// asynchronously, such as a node forgetting a subscription).
func eventually(check string, cond func() (bool, string)) {
	deadline := time.Now().Add(10 * time.Second)
	for {
		done, last := cond()
		if done {
			return
		}
		if time.Now().After(deadline) {
			fail(check, "never true; last: "+last)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// --- slots and the cluster's own view ---------------------------------------------------------

func crc16(b []byte) uint16 {
	var crc uint16
	for _, c := range b {
		crc ^= uint16(c) << 8
		for i := 0; i < 8; i++ {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return crc
}

func slot(key string) int {
	k := key
	if s := strings.IndexByte(k, '{'); s >= 0 {
		if e := strings.IndexByte(k[s+1:], '}'); e > 0 {
			k = k[s+1 : s+1+e]
		}
	}
	return int(crc16([]byte(k)) % 16384)
}

// direct opens a plain RESP2 connection to one node, no retries.
func direct(node string) *redis.Client {
	return redis.NewClient(&redis.Options{Addr: node, Protocol: 2, MaxRetries: -1, DisableIdentity: true})
}

// owner names the master serving the slot, by the cluster's own CLUSTER SLOTS.
func owner(ctx context.Context, s int) string {
	c := direct(nodes[0])
	defer c.Close()
	ranges, err := c.ClusterSlots(ctx).Result()
	must("CLUSTER SLOTS on a node", err)
	for _, r := range ranges {
		if r.Start <= s && s <= r.End {
			return r.Nodes[0].Addr
		}
	}
	fail("CLUSTER SLOTS on a node", fmt.Sprintf("nobody serves slot %d", s))
	return ""
}

// perMaster returns one key per master (named prefix:RUN:i), each on a different master.
func perMaster(ctx context.Context, prefix string) []string {
	seen := map[string]bool{}
	var keys []string
	for i := 0; len(keys) < len(nodes); i++ {
		k := fmt.Sprintf("%s:%s:%d", prefix, run, i)
		if o := owner(ctx, slot(k)); !seen[o] {
			seen[o] = true
			keys = append(keys, k)
		}
		if i > 1000 {
			fail("keys per master", "could not place a key on every master")
		}
	}
	return keys
}

// blockedOnNodes sums blocked_clients over the masters (asked directly).
func blockedOnNodes(ctx context.Context) (int, string) {
	total := 0
	var parts []string
	for _, n := range nodes {
		c := direct(n)
		info, err := c.Info(ctx, "clients").Result()
		c.Close()
		must("INFO clients on "+n, err)
		for _, line := range strings.Split(info, "\r\n") {
			if v, found := strings.CutPrefix(line, "blocked_clients:"); found {
				b, _ := strconv.Atoi(v)
				total += b
				parts = append(parts, n+"="+v)
			}
		}
	}
	return total, strings.Join(parts, " ")
}

// numsubOn is PUBSUB NUMSUB channel asked of one node directly.
func numsubOn(ctx context.Context, node, channel string) int64 {
	c := direct(node)
	defer c.Close()
	m, err := c.PubSubNumSub(ctx, channel).Result()
	must("PUBSUB NUMSUB on "+node, err)
	return m[channel]
}

// scriptOnEveryNode is SCRIPT EXISTS sha asked of each master directly.
func scriptOnEveryNode(ctx context.Context, sha string) []bool {
	var out []bool
	for _, n := range nodes {
		c := direct(n)
		e, err := c.ScriptExists(ctx, sha).Result()
		c.Close()
		must("SCRIPT EXISTS on "+n, err)
		out = append(out, e[0])
	}
	return out
}

// keysOnNodes counts the keys matching pattern on each master, asked directly.
func keysOnNodes(ctx context.Context, pattern string) []int {
	var out []int
	for _, n := range nodes {
		c := direct(n)
		keys, err := c.Keys(ctx, pattern).Result()
		c.Close()
		must("KEYS on "+n, err)
		out = append(out, len(keys))
	}
	return out
}
