package main

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// goRedis runs every check with redis.NewClient and its defaults (RESP3, CLIENT SETINFO, three
// retries, a connection pool): what an application gets from redis.NewClient(&redis.Options{Addr}).
func goRedis() {
	ctx := context.Background()
	c := redis.NewClient(&redis.Options{Addr: addr})
	defer c.Close()
	other := redis.NewClient(&redis.Options{Addr: addr})
	defer other.Close()

	// Handshake: HELLO 3 and CLIENT SETINFO on every new connection, then a PING.
	pong, err := c.Ping(ctx).Result()
	must("handshake", err)
	expect("handshake PING", pong, "PONG")
	info, err := c.ClientInfo(ctx).Result()
	must("handshake CLIENT INFO", err)
	expect("handshake RESP version", info.Resp, 3)
	ok("handshake", "HELLO 3 + CLIENT SETINFO accepted, PING PONG, CLIENT INFO resp=3")

	// Pipeline over keys on every master, with one failing command in the middle.
	keys := perMaster(ctx, "gr:pipe")
	cmds, err := c.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, k := range keys {
			p.Set(ctx, k, i*10, 0)
			p.IncrBy(ctx, k, 5)
		}
		p.HSet(ctx, keys[0]+":h", "f", "v")
		p.Incr(ctx, keys[0]+":h")
		for _, k := range keys {
			p.Get(ctx, k)
		}
		return nil
	})
	if err == nil || err.Error() != "WRONGTYPE Operation against a key holding the wrong kind of value" {
		fail("pipeline", fmt.Sprintf("Pipelined's error: %v", err))
	}
	var want []string
	for i := range keys {
		want = append(want, "OK", fmt.Sprint(int64(i*10+5)))
	}
	want = append(want, "1", "err:WRONGTYPE Operation against a key holding the wrong kind of value")
	for i := range keys {
		want = append(want, fmt.Sprint(i*10+5))
	}
	expect("pipeline", replies(cmds), want)
	ok("pipeline", fmt.Sprintf("%d commands over %d masters, replies in order, one WRONGTYPE in place", len(cmds), len(keys)))

	// MULTI/EXEC on one slot (TxPipelined).
	tag := "{gr:tx:" + run + "}"
	cmds, err = c.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.Set(ctx, tag+"a", "1", 0)
		p.Incr(ctx, tag+"a")
		p.RPush(ctx, tag+"l", "x", "y")
		p.Get(ctx, tag+"a")
		return nil
	})
	must("transaction", err)
	expect("transaction", replies(cmds), []string{"OK", "2", "2", "2"})
	ok("transaction", "TxPipelined on one slot: OK 2 2 2")

	// MULTI over two slots: refused at queue time, EXECABORT at EXEC, nothing written.
	ka, kb := keys[0]+":x", keys[1]+":x"
	_, err = c.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.Set(ctx, ka, "1", 0)
		p.Set(ctx, kb, "1", 0)
		return nil
	})
	if err == nil || err.Error() != "EXECABORT Transaction discarded because of previous errors." {
		fail("cross-slot transaction", fmt.Sprintf("got %v", err))
	}
	n, err := c.Exists(ctx, ka, kb).Result()
	must("cross-slot transaction", err)
	expect("cross-slot transaction wrote nothing", n, int64(0))
	ok("cross-slot transaction", "EXECABORT, nothing written (as Redis Cluster)")

	// WATCH helper: the first attempt sees the key change under it (TxFailedErr), the retry wins.
	wk := tag + "counter"
	must("watch", c.Set(ctx, wk, "10", 0).Err())
	attempts := 0
	incr := func(tx *redis.Tx) error {
		attempts++
		v, err := tx.Get(ctx, wk).Int()
		if err != nil {
			return err
		}
		if attempts == 1 {
			// Another client changes the key between WATCH and EXEC.
			if err := other.IncrBy(ctx, wk, 100).Err(); err != nil {
				return err
			}
		}
		_, err = tx.TxPipelined(ctx, func(p redis.Pipeliner) error {
			p.Set(ctx, wk, v+1, 0)
			return nil
		})
		return err
	}
	var errs []string
	for i := 0; i < 3; i++ {
		err = c.Watch(ctx, incr, wk)
		if err == nil {
			break
		}
		errs = append(errs, err.Error())
		if !errors.Is(err, redis.TxFailedErr) {
			break
		}
	}
	must("watch", err)
	expect("watch attempts", errs, []string{"redis: transaction failed"})
	final, err := c.Get(ctx, wk).Result()
	must("watch", err)
	expect("watch result", final, "111")
	ok("watch", "Watch retry loop: attempt 1 TxFailedErr (key changed), attempt 2 committed, 10+100+1 = 111")

	// Pub/sub: SUBSCRIBE to a channel in each master's slots, PSUBSCRIBE, messages, UNSUBSCRIBE.
	// The proxy holds one subscription connection on one master, and a PUBLISH counts the
	// receivers on the channel slot's master: exactly one of the three counts is 1.
	chans := perMaster(ctx, "gr:ch")
	ps := c.Subscribe(ctx, chans...)
	for i, ch := range chans {
		sub, err := ps.Receive(ctx)
		must("pubsub subscribe", err)
		expect("pubsub subscribe", fmt.Sprint(sub), fmt.Sprintf("subscribe: %s", ch))
		expect("pubsub subscribe count", sub.(*redis.Subscription).Count, i+1)
	}
	pat := "gr:pat:" + run + ":*"
	must("pubsub psubscribe", ps.PSubscribe(ctx, pat))
	sub, err := ps.Receive(ctx)
	must("pubsub psubscribe", err)
	expect("pubsub psubscribe", fmt.Sprint(sub), "psubscribe: "+pat)
	numsub, err := other.PubSubNumSub(ctx, chans...).Result()
	must("pubsub numsub", err)
	expect("PUBSUB NUMSUB through the proxy", numsub, map[string]int64{chans[0]: 1, chans[1]: 1, chans[2]: 1})
	var counts, wantCounts []int64
	var wantMsgs []string
	for i, ch := range chans {
		wantCounts = append(wantCounts, numsubOn(ctx, owner(ctx, slot(ch)), ch))
		cnt, err := other.Publish(ctx, ch, fmt.Sprint("hello", i)).Result()
		must("pubsub publish", err)
		counts = append(counts, cnt)
		wantMsgs = append(wantMsgs, fmt.Sprintf("Message<%s: hello%d>", ch, i))
	}
	expect("PUBLISH counts (receivers on each channel slot's master)", counts, wantCounts)
	expect("PUBLISH counts add up to the one subscriber", counts[0]+counts[1]+counts[2], int64(1))
	pch := "gr:pat:" + run + ":x"
	must("pubsub publish", other.Publish(ctx, pch, "world").Err())
	wantMsgs = append(wantMsgs, fmt.Sprintf("PMessage<%s: world>", pch))
	var msgs []string
	for len(msgs) < len(wantMsgs) {
		m, err := ps.ReceiveTimeout(ctx, 5*time.Second)
		must("pubsub receive", err)
		if pm, isMsg := m.(*redis.Message); isMsg && pm.Pattern != "" {
			msgs = append(msgs, fmt.Sprintf("PMessage<%s: %s>", pm.Channel, pm.Payload))
		} else {
			msgs = append(msgs, fmt.Sprint(m))
		}
	}
	sort.Strings(msgs)
	sort.Strings(wantMsgs)
	expect("pubsub messages", msgs, wantMsgs)
	must("pubsub unsubscribe", ps.Unsubscribe(ctx, chans...))
	for i, ch := range chans {
		sub, err = ps.Receive(ctx)
		must("pubsub unsubscribe", err)
		expect("pubsub unsubscribe", fmt.Sprint(sub), fmt.Sprintf("unsubscribe: %s", ch))
		expect("pubsub unsubscribe count", sub.(*redis.Subscription).Count, 3-i)
	}
	must("pubsub close", ps.Close())
	eventually("pubsub gone from the nodes", func() (bool, string) {
		m, err := other.PubSubNumSub(ctx, chans...).Result()
		must("pubsub numsub", err)
		np, err := other.PubSubNumPat(ctx).Result()
		must("pubsub numpat", err)
		return m[chans[0]]+m[chans[1]]+m[chans[2]] == 0 && np == 0, fmt.Sprintf("NUMSUB %v NUMPAT %d", m, np)
	})
	ok("pubsub", fmt.Sprintf("subscribe to 3 channels (one per master), psubscribe, PUBLISH counts %v, 4 messages, unsubscribe, NUMSUB/NUMPAT back to 0", counts))

	// BLPOP on one pooled connection while another client pushes.
	bk := keys[2] + ":q"
	type popped struct {
		v   []string
		err error
	}
	done := make(chan popped, 1)
	go func() {
		v, err := c.BLPop(ctx, 10*time.Second, bk).Result()
		done <- popped{v, err}
	}()
	eventually("blpop blocked on a node", func() (bool, string) {
		n, detail := blockedOnNodes(ctx)
		return n == 1, detail
	})
	must("blpop push", other.RPush(ctx, bk, "job1").Err())
	select {
	case p := <-done:
		must("blpop", p.err)
		expect("blpop", p.v, []string{bk, "job1"})
	case <-time.After(5 * time.Second):
		fail("blpop", "no reply 5 s after the push")
	}
	_, err = c.BLPop(ctx, time.Second, bk).Result()
	if err != redis.Nil {
		fail("blpop timeout", fmt.Sprintf("got %v, want redis.Nil", err))
	}
	ok("blpop", "blocked on the node, woken by another client's RPUSH, [key job1]; empty list times out to nil")

	// Scripts: Script.Run is EVALSHA, then EVAL on NOSCRIPT.
	must("script flush", c.ScriptFlush(ctx).Err())
	script := redis.NewScript("return redis.call('INCRBY', KEYS[1], ARGV[1])")
	expect("SCRIPT FLUSH reached every master", scriptOnEveryNode(ctx, script.Hash()), []bool{false, false, false})
	var sums []int64
	for _, k := range keys {
		v, err := script.Run(ctx, c, []string{k + ":s"}, 7).Int64()
		must("script run", err)
		v2, err := script.Run(ctx, c, []string{k + ":s"}, 7).Int64()
		must("script run", err)
		sums = append(sums, v, v2)
	}
	expect("script run", sums, []int64{7, 14, 7, 14, 7, 14})
	exists, err := script.Exists(ctx, c).Result()
	must("script exists", err)
	expect("SCRIPT EXISTS through the proxy", exists, []bool{true})
	expect("script loaded on every master", scriptOnEveryNode(ctx, script.Hash()), []bool{true, true, true})
	ok("scripts", "after SCRIPT FLUSH: Script.Run (EVALSHA, NOSCRIPT, EVAL) on each master 7 then 14; loaded everywhere")

	// SCAN iterator over 300 keys spread over every master.
	pattern := "gr:scan:" + run + ":*"
	want = nil
	p := c.Pipeline()
	for i := 0; i < 300; i++ {
		k := fmt.Sprintf("gr:scan:%s:%d", run, i)
		want = append(want, k)
		p.Set(ctx, k, i, 0)
	}
	_, err = p.Exec(ctx)
	must("scan setup", err)
	per := keysOnNodes(ctx, pattern)
	for _, n := range per {
		if n == 0 {
			fail("scan setup", fmt.Sprintf("keys per master %v", per))
		}
	}
	seen := map[string]int{}
	var order []string
	it := c.Scan(ctx, 0, pattern, 25).Iterator()
	for it.Next(ctx) {
		seen[it.Val()]++
		order = append(order, it.Val())
	}
	must("scan", it.Err())
	for k, n := range seen {
		if n != 1 {
			fail("scan", fmt.Sprintf("%s seen %d times", k, n))
		}
	}
	sort.Strings(order)
	sort.Strings(want)
	expect("scan keys", order, want)
	ok("scan", fmt.Sprintf("ScanIterator MATCH COUNT 25: all 300 keys once (per master %v)", per))

	// MGET/MSET/DEL across slots.
	must("mset", c.MSet(ctx, keys[0]+":m", "a", keys[1]+":m", "b", keys[2]+":m", "c").Err())
	vals, err := c.MGet(ctx, keys[2]+":m", "gr:missing:"+run, keys[0]+":m", keys[1]+":m").Result()
	must("mget", err)
	expect("mget", vals, []any{"c", nil, "a", "b"})
	dn, err := c.Del(ctx, keys[0]+":m", keys[1]+":m", keys[2]+":m", "gr:missing:"+run).Result()
	must("del", err)
	expect("del", dn, int64(3))
	en, err := c.Exists(ctx, keys[0]+":m", keys[1]+":m", keys[2]+":m").Result()
	must("exists", err)
	expect("exists after del", en, int64(0))
	ok("cross-slot", "MSET over 3 masters OK, MGET in request order with nil, DEL 3, EXISTS 0")
}

// replies renders each command's reply ("err:TEXT" for an error) for exact comparison.
func replies(cmds []redis.Cmder) []string {
	var out []string
	for _, cmd := range cmds {
		if cmd.Err() != nil {
			out = append(out, "err:"+cmd.Err().Error())
			continue
		}
		s := cmd.String() // "set k v: OK"
		out = append(out, s[strings.LastIndex(s, ": ")+2:])
	}
	return out
}
