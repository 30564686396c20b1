package main

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/redis/rueidis"
)

// rueidisChecks runs every check with rueidis.NewClient and its defaults, client-side caching
// included: rueidis speaks RESP3 only and turns caching on by default (CLIENT TRACKING ON OPTIN
// in its handshake, then CLIENT CACHING YES before each DoCache read), which the proxy serves
// with invalidations from every master. NewClient first asks CLUSTER SLOTS, and on the proxy's
// "cluster support disabled" falls back to its single-node client, as against a plain Redis.
func rueidisChecks() {
	ctx := context.Background()
	newClient := func() rueidis.Client {
		c, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{addr}})
		must("handshake", err)
		return c
	}
	c := newClient()
	defer c.Close()
	other := newClient()
	defer other.Close()
	b := c.B()

	pong, err := c.Do(ctx, b.Ping().Build()).ToString()
	must("handshake", err)
	expect("handshake PING", pong, "PONG")
	info, err := c.Do(ctx, b.ClientInfo().Build()).ToString()
	must("handshake CLIENT INFO", err)
	if !strings.Contains(info, " resp=3 ") {
		fail("handshake RESP version", info)
	}
	ok("handshake", "CLUSTER SLOTS refused -> single client, HELLO 3 + CLIENT SETINFO accepted, PING PONG, CLIENT INFO resp=3")

	// Client-side caching (the default): a DoCache GET on each master is cached (the second is a
	// cache hit); another client's SET through the proxy, and a SET straight on the key's node,
	// reach the cache, whose next DoCache GET returns the new value.
	for i, k := range perMaster(ctx, "ru:cache") {
		must("cache SET", c.Do(ctx, b.Set().Key(k).Value("v1").Build()).Error())
		v, err := c.DoCache(ctx, b.Get().Key(k).Cache(), time.Minute).ToString()
		must("cache GET", err)
		expect("cache GET", v, "v1")
		if r := c.DoCache(ctx, b.Get().Key(k).Cache(), time.Minute); !r.IsCacheHit() {
			fail("cache hit", "the second DoCache GET of "+k+" was not served from the cache")
		}
		must("cache change", other.Do(ctx, other.B().Set().Key(k).Value("v2").Build()).Error())
		cached := func(want string) func() (bool, string) {
			return func() (bool, string) {
				v, err := c.DoCache(ctx, b.Get().Key(k).Cache(), time.Minute).ToString()
				return err == nil && v == want, fmt.Sprintf("%q %v", v, err)
			}
		}
		eventually("cache invalidated by another client", cached("v2"))
		node := direct(owner(ctx, slot(k)))
		must("cache change on the node", node.Set(ctx, k, fmt.Sprint("v3-", i), 0).Err())
		node.Close()
		eventually("cache invalidated by a write on the node", cached(fmt.Sprint("v3-", i)))
	}
	ok("client-side caching", "DoCache GET cached (second a hit) on every master; another client's SET and a SET on the node reach the cache")

	// Pipeline (DoMulti) over keys on every master, one failing command in the middle.
	keys := perMaster(ctx, "ru:pipe")
	var cmds rueidis.Commands
	var want []string
	for i, k := range keys {
		cmds = append(cmds, b.Set().Key(k).Value(fmt.Sprint(i*10)).Build(), b.Incrby().Key(k).Increment(5).Build())
		want = append(want, "OK", fmt.Sprint(i*10+5))
	}
	cmds = append(cmds, b.Hset().Key(keys[0]+":h").FieldValue().FieldValue("f", "v").Build(), b.Incr().Key(keys[0]+":h").Build())
	want = append(want, "1", "err:WRONGTYPE Operation against a key holding the wrong kind of value")
	for i, k := range keys {
		cmds = append(cmds, b.Get().Key(k).Build())
		want = append(want, fmt.Sprint(i*10+5))
	}
	expect("pipeline", results(c.DoMulti(ctx, cmds...)), want)
	ok("pipeline", fmt.Sprintf("DoMulti of %d commands over %d masters, replies in order, one WRONGTYPE in place", len(want), len(keys)))

	// MULTI/EXEC on one slot, in one DoMulti.
	tag := "{ru:tx:" + run + "}"
	res := c.DoMulti(ctx,
		b.Multi().Build(),
		b.Set().Key(tag+"a").Value("1").Build(),
		b.Incr().Key(tag+"a").Build(),
		b.Get().Key(tag+"a").Build(),
		b.Exec().Build())
	expect("transaction", results(res), []string{"OK", "QUEUED", "QUEUED", "QUEUED", "[OK 2 2]"})
	ok("transaction", "DoMulti MULTI SET INCR GET EXEC on one slot: [OK 2 2]")

	// MULTI over two slots: CROSSSLOT at queue time, EXECABORT at EXEC, nothing written.
	ka, kb := keys[0]+":x", keys[1]+":x"
	res = c.DoMulti(ctx,
		b.Multi().Build(),
		b.Set().Key(ka).Value("1").Build(),
		b.Set().Key(kb).Value("1").Build(),
		b.Exec().Build())
	expect("cross-slot transaction", results(res), []string{
		"OK", "QUEUED", "err:CROSSSLOT Keys in request don't hash to the same slot",
		"err:EXECABORT Transaction discarded because of previous errors.",
	})
	n, err := c.Do(ctx, b.Exists().Key(ka, kb).Build()).AsInt64()
	must("cross-slot transaction", err)
	expect("cross-slot transaction wrote nothing", n, int64(0))
	ok("cross-slot transaction", "CROSSSLOT then EXECABORT, nothing written (as Redis Cluster)")

	// WATCH on a dedicated connection: the first attempt sees the key change (EXEC nil), the retry wins.
	wk := tag + "counter"
	must("watch", c.Do(ctx, b.Set().Key(wk).Value("10").Build()).Error())
	var outcomes []string
	for attempt := 1; attempt <= 3; attempt++ {
		committed := false
		err := c.Dedicated(func(d rueidis.DedicatedClient) error {
			if err := d.Do(ctx, d.B().Watch().Key(wk).Build()).Error(); err != nil {
				return err
			}
			v, err := d.Do(ctx, d.B().Get().Key(wk).Build()).AsInt64()
			if err != nil {
				return err
			}
			if attempt == 1 {
				if err := other.Do(ctx, other.B().Incrby().Key(wk).Increment(100).Build()).Error(); err != nil {
					return err
				}
			}
			r := d.DoMulti(ctx, d.B().Multi().Build(), d.B().Set().Key(wk).Value(fmt.Sprint(v+1)).Build(), d.B().Exec().Build())
			// EXEC answers nil when a watched key changed; rueidis reports that as IsRedisNil.
			err = r[2].Error()
			committed = err == nil
			if rueidis.IsRedisNil(err) {
				return nil
			}
			return err
		})
		must("watch", err)
		outcomes = append(outcomes, map[bool]string{true: "committed", false: "nil (key changed)"}[committed])
		if committed {
			break
		}
	}
	expect("watch attempts", outcomes, []string{"nil (key changed)", "committed"})
	final, err := c.Do(ctx, b.Get().Key(wk).Build()).ToString()
	must("watch", err)
	expect("watch result", final, "111")
	ok("watch", "Dedicated WATCH/MULTI/EXEC: attempt 1 EXEC nil (key changed), attempt 2 committed, 111")

	// Pub/sub on a dedicated connection with hooks: subscribe, messages, unsubscribe.
	pat := "ru:pat:" + run + ":*"
	events := make(chan string, 16)
	d, cancel := c.Dedicate()
	errc := d.SetPubSubHooks(rueidis.PubSubHooks{
		OnMessage: func(m rueidis.PubSubMessage) {
			events <- fmt.Sprintf("message %s %s %s", m.Pattern, m.Channel, m.Message)
		},
		OnSubscription: func(s rueidis.PubSubSubscription) {
			events <- fmt.Sprintf("%s %s %d", s.Kind, s.Channel, s.Count)
		},
	})
	next := func(check string) string {
		select {
		case e := <-events:
			return e
		case err := <-errc:
			fail(check, fmt.Sprintf("pub/sub connection ended: %v", err))
		case <-time.After(5 * time.Second):
			fail(check, "no event in 5 s")
		}
		return ""
	}
	chans := perMaster(ctx, "ru:ch")
	must("pubsub subscribe", d.Do(ctx, d.B().Subscribe().Channel(chans...).Build()).Error())
	for i, ch := range chans {
		expect("pubsub subscribe", next("pubsub subscribe"), fmt.Sprintf("subscribe %s %d", ch, i+1))
	}
	must("pubsub psubscribe", d.Do(ctx, d.B().Psubscribe().Pattern(pat).Build()).Error())
	expect("pubsub psubscribe", next("pubsub psubscribe"), "psubscribe "+pat+" 4")
	// One subscription connection on one master; a PUBLISH counts the receivers on the channel
	// slot's master: exactly one of the three counts is 1.
	var counts, wantCounts []int64
	for i, ch := range chans {
		wantCounts = append(wantCounts, numsubOn(ctx, owner(ctx, slot(ch)), ch))
		cnt, err := other.Do(ctx, b.Publish().Channel(ch).Message(fmt.Sprint("hello", i)).Build()).AsInt64()
		must("pubsub publish", err)
		counts = append(counts, cnt)
		expect("pubsub message", next("pubsub message"), fmt.Sprintf("message  %s hello%d", ch, i))
	}
	expect("PUBLISH counts (receivers on each channel slot's master)", counts, wantCounts)
	expect("PUBLISH counts add up to the one subscriber", counts[0]+counts[1]+counts[2], int64(1))
	pch := "ru:pat:" + run + ":x"
	must("pubsub publish", other.Do(ctx, b.Publish().Channel(pch).Message("world").Build()).Error())
	expect("pubsub pmessage", next("pubsub pmessage"), fmt.Sprintf("message %s %s world", pat, pch))
	must("pubsub unsubscribe", d.Do(ctx, d.B().Unsubscribe().Channel(chans...).Build()).Error())
	for i, ch := range chans {
		expect("pubsub unsubscribe", next("pubsub unsubscribe"), fmt.Sprintf("unsubscribe %s %d", ch, 3-i))
	}
	must("pubsub punsubscribe", d.Do(ctx, d.B().Punsubscribe().Pattern(pat).Build()).Error())
	expect("pubsub punsubscribe", next("pubsub punsubscribe"), "punsubscribe "+pat+" 0")
	cancel()
	eventually("pubsub gone from the nodes", func() (bool, string) {
		m, err := other.Do(ctx, b.PubsubNumsub().Channel(chans...).Build()).AsIntMap()
		must("pubsub numsub", err)
		np, err := other.Do(ctx, b.PubsubNumpat().Build()).AsInt64()
		must("pubsub numpat", err)
		return m[chans[0]]+m[chans[1]]+m[chans[2]] == 0 && np == 0, fmt.Sprintf("NUMSUB %v NUMPAT %d", m, np)
	})
	ok("pubsub", fmt.Sprintf("SetPubSubHooks: subscribe to 3 channels (one per master), psubscribe, PUBLISH counts %v, 3 messages + pmessage, unsubscribe, punsubscribe", counts))

	// BLPOP (rueidis sends blocking commands on a connection of its blocking pool).
	bk := keys[2] + ":q"
	done := make(chan rueidis.RedisResult, 1)
	go func() { done <- c.Do(ctx, b.Blpop().Key(bk).Timeout(10).Build()) }()
	eventually("blpop blocked on a node", func() (bool, string) {
		n, detail := blockedOnNodes(ctx)
		return n == 1, detail
	})
	must("blpop push", other.Do(ctx, b.Rpush().Key(bk).Element("job1").Build()).Error())
	select {
	case r := <-done:
		v, err := r.AsStrSlice()
		must("blpop", err)
		expect("blpop", v, []string{bk, "job1"})
	case <-time.After(5 * time.Second):
		fail("blpop", "no reply 5 s after the push")
	}
	expect("blpop timeout", results([]rueidis.RedisResult{c.Do(ctx, b.Blpop().Key(bk).Timeout(0.1).Build())}), []string{"nil"})
	ok("blpop", "blocked on the node, woken by another client's RPUSH, [key job1]; empty list times out to nil")

	// Scripts: Lua.Exec is EVALSHA, then EVAL on NOSCRIPT.
	must("script flush", c.Do(ctx, b.ScriptFlush().Build()).Error())
	src := "return redis.call('INCRBY', KEYS[1], ARGV[1])"
	sha, err := other.Do(ctx, b.ScriptLoad().Script(src).Build()).ToString()
	must("script sha", err)
	must("script flush", c.Do(ctx, b.ScriptFlush().Build()).Error())
	expect("SCRIPT FLUSH reached every master", scriptOnEveryNode(ctx, sha), []bool{false, false, false})
	script := rueidis.NewLuaScript(src)
	var sums []int64
	for _, k := range keys {
		for i := 0; i < 2; i++ {
			v, err := script.Exec(ctx, c, []string{k + ":s"}, []string{"7"}).AsInt64()
			must("script exec", err)
			sums = append(sums, v)
		}
	}
	expect("script exec", sums, []int64{7, 14, 7, 14, 7, 14})
	ex, err := c.Do(ctx, b.ScriptExists().Sha1(sha).Build()).AsIntSlice()
	must("script exists", err)
	expect("SCRIPT EXISTS through the proxy", ex, []int64{1})
	expect("script loaded on every master", scriptOnEveryNode(ctx, sha), []bool{true, true, true})
	ok("scripts", "after SCRIPT FLUSH: Lua.Exec (EVALSHA, NOSCRIPT, EVAL) on each master 7 then 14; loaded everywhere")

	// SCAN with rueidis.NewScanner over 300 keys on every master.
	pattern := "ru:scan:" + run + ":*"
	cmds = nil
	var wantKeys []string
	for i := 0; i < 300; i++ {
		k := fmt.Sprintf("ru:scan:%s:%d", run, i)
		wantKeys = append(wantKeys, k)
		cmds = append(cmds, b.Set().Key(k).Value(fmt.Sprint(i)).Build())
	}
	for _, r := range c.DoMulti(ctx, cmds...) {
		must("scan setup", r.Error())
	}
	per := keysOnNodes(ctx, pattern)
	for _, n := range per {
		if n == 0 {
			fail("scan setup", fmt.Sprintf("keys per master %v", per))
		}
	}
	scanner := rueidis.NewScanner(func(cursor uint64) (rueidis.ScanEntry, error) {
		return c.Do(ctx, b.Scan().Cursor(cursor).Match(pattern).Count(25).Build()).AsScanEntry()
	})
	seen := map[string]int{}
	var order []string
	for k := range scanner.Iter() {
		seen[k]++
		order = append(order, k)
	}
	must("scan", scanner.Err())
	for k, n := range seen {
		if n != 1 {
			fail("scan", fmt.Sprintf("%s seen %d times", k, n))
		}
	}
	sort.Strings(order)
	sort.Strings(wantKeys)
	expect("scan keys", order, wantKeys)
	ok("scan", fmt.Sprintf("NewScanner MATCH COUNT 25: all 300 keys once (per master %v)", per))

	// MGET/MSET/DEL across slots, plus the rueidis.MGet helper.
	must("mset", c.Do(ctx, b.Mset().KeyValue().KeyValue(keys[0]+":m", "a").KeyValue(keys[1]+":m", "b").KeyValue(keys[2]+":m", "c").Build()).Error())
	missing := "ru:missing:" + run
	expect("mget", results([]rueidis.RedisResult{c.Do(ctx, b.Mget().Key(keys[2]+":m", missing, keys[0]+":m", keys[1]+":m").Build())}), []string{"[c nil a b]"})
	m, err := rueidis.MGet(c, ctx, []string{keys[0] + ":m", keys[1] + ":m", missing})
	must("mget helper", err)
	expect("mget helper", []string{str(m[keys[0]+":m"]), str(m[keys[1]+":m"]), str(m[missing])}, []string{"a", "b", "nil"})
	dn, err := c.Do(ctx, b.Del().Key(keys[0]+":m", keys[1]+":m", keys[2]+":m", missing).Build()).AsInt64()
	must("del", err)
	expect("del", dn, int64(3))
	ok("cross-slot", "MSET over 3 masters OK, MGET (and rueidis.MGet) in request order with nil, DEL 3")
}

func str(m rueidis.RedisMessage) string {
	if m.IsNil() {
		return "nil"
	}
	s, err := m.ToString()
	if err != nil {
		return "err:" + err.Error()
	}
	return s
}

// results renders each reply: "err:TEXT", "nil", the string or integer, "[a b]" for arrays.
func results(rs []rueidis.RedisResult) []string {
	var out []string
	for _, r := range rs {
		if err := r.Error(); rueidis.IsRedisNil(err) {
			out = append(out, "nil")
			continue
		} else if err != nil {
			out = append(out, "err:"+err.Error())
			continue
		}
		m, _ := r.ToMessage()
		out = append(out, render(m))
	}
	return out
}

func render(m rueidis.RedisMessage) string {
	if m.IsNil() {
		return "nil"
	}
	if err := m.Error(); err != nil {
		return "err:" + err.Error()
	}
	if m.IsInt64() {
		v, _ := m.ToInt64()
		return fmt.Sprint(v)
	}
	if arr, err := m.ToArray(); err == nil {
		var parts []string
		for _, e := range arr {
			parts = append(parts, render(e))
		}
		return "[" + strings.Join(parts, " ") + "]"
	}
	s, err := m.ToString()
	if err != nil {
		return "?" + err.Error()
	}
	return s
}
