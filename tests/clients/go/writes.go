package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// writes is the failover write loop for -client go-redis (rueidis: writes_rueidis.go): one
// go-redis client with its defaults (three retries, a pool) RPUSHes a sequence number to 60 keys
// in turn, one command at a time, while the test kills a master. See writeLoop for the protocol.
func writes() {
	if addr == "" {
		fail("usage", "-addr is required")
	}
	ctx := context.Background()
	c := redis.NewClient(&redis.Options{Addr: addr})
	defer c.Close()
	writeLoop(
		func(key string, seq int) error { return c.RPush(ctx, key, seq).Err() },
		func(key string) ([]string, error) { return c.LRange(ctx, key, 0, -1).Result() },
	)
}

// writeLoop RPUSHes a sequence number to 60 keys in turn with push, one command at a time, and
// prints "running" after 100 acknowledged writes and one line per error ("error SEQ TEXT").
// Standard input drives it: on the line "mark" (the test saw the new master) it writes 200 more
// times and stops; "stop" or EOF stops at once. Then it reads every key back with lrange and
// prints "lost N [...]" (acknowledged but not there), "failed-but-written N [...]" (failed in the
// client but there: it ran), "duplicates N [...]", "slowest DURATION" (the longest write) and last "writes ok=N errors=M after-mark-errors=K". The same protocol as
// tests/clients/node/writes.js and tests/clients/java/.../Writes.java.
func writeLoop(push func(key string, seq int) error, lrange func(key string) ([]string, error)) {
	var keys []string
	for i := 0; i < 60; i++ {
		keys = append(keys, fmt.Sprintf("wr:%s:%d", run, i))
	}
	control := make(chan string, 4)
	go func() {
		s := bufio.NewScanner(os.Stdin)
		for s.Scan() {
			control <- s.Text()
		}
		control <- "stop"
	}()
	okCount, errCount, afterMarkErrs := 0, 0, 0
	marked, left := false, 0
	var slowest time.Duration
	var acked, failed []int
	deadline := time.Now().Add(90 * time.Second)
	for seq := 0; ; seq++ {
		select {
		case cmd := <-control:
			if cmd == "mark" {
				marked, left = true, 200
			} else {
				seq = -1
			}
		default:
		}
		if seq < 0 || (marked && left == 0) || time.Now().After(deadline) {
			break
		}
		sent := time.Now()
		err := push(keys[seq%len(keys)], seq)
		slowest = max(slowest, time.Since(sent))
		if err != nil {
			errCount++
			if marked {
				afterMarkErrs++
			}
			failed = append(failed, seq)
			fmt.Printf("error %d %s\n", seq, err)
		} else {
			okCount++
			acked = append(acked, seq)
			if okCount == 100 {
				fmt.Println("running")
			}
		}
		if marked {
			left--
		}
	}
	// Each acknowledged sequence number must be in its key's list (else "lost"), and every one at
	// most once (a client retry of a write the proxy still held would show up twice).
	counts := map[string]int{}
	for _, k := range keys {
		vals, err := lrange(k)
		if err != nil {
			fail("read back", err.Error())
		}
		for _, v := range vals {
			counts[v]++
		}
	}
	var lost []int
	for _, seq := range acked {
		if counts[strconv.Itoa(seq)] == 0 {
			lost = append(lost, seq)
		}
	}
	fmt.Printf("lost %d %v\n", len(lost), lost)
	var written []int
	for _, seq := range failed {
		if counts[strconv.Itoa(seq)] > 0 {
			written = append(written, seq)
		}
	}
	fmt.Printf("failed-but-written %d %v\n", len(written), written)
	var dups []string
	for v, n := range counts {
		if n > 1 {
			dups = append(dups, fmt.Sprintf("%s x%d", v, n))
		}
	}
	fmt.Printf("duplicates %d %v\n", len(dups), dups)
	fmt.Printf("slowest %v\n", slowest.Round(time.Millisecond))
	fmt.Printf("writes ok=%d errors=%d after-mark-errors=%d\n", okCount, errCount, afterMarkErrs)
}
