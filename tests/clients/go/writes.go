package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"time"

	"github.com/redis/go-redis/v9"
)

// writes is the failover write loop: one go-redis client with its defaults (three retries, 3 s
// read timeout, a pool) RPUSHes a sequence number to 60 keys in turn, one command at a time, while
// the test kills a master. It prints "running" after 100 acknowledged writes and one line per
// error ("error SEQ TEXT"). Standard input drives it: on the line "mark" (the test saw the new
// master) it writes 200 more times and stops; "stop" or EOF stops at once. The last line is
// "writes ok=N errors=M after-mark-errors=K", after "slowest DURATION" (the longest write).
func writes() {
	if addr == "" {
		fail("usage", "-addr is required")
	}
	ctx := context.Background()
	c := redis.NewClient(&redis.Options{Addr: addr})
	defer c.Close()
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
		err := c.RPush(ctx, keys[seq%len(keys)], seq).Err()
		slowest = max(slowest, time.Since(sent))
		if err != nil {
			errCount++
			if marked {
				afterMarkErrs++
			}
			fmt.Printf("error %d %s\n", seq, err)
		} else {
			okCount++
			if okCount == 100 {
				fmt.Println("running")
			}
		}
		if marked {
			left--
		}
	}
	// Each sequence number must be in its key's list at most once (a client retry of a write the
	// proxy still held would show up twice).
	counts := map[string]int{}
	for _, k := range keys {
		vals, err := c.LRange(ctx, k, 0, -1).Result()
		if err != nil {
			fail("read back", err.Error())
		}
		for _, v := range vals {
			counts[v]++
		}
	}
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
