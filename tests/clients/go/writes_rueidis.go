package main

import (
	"context"
	"strconv"

	"github.com/redis/rueidis"
)

// writesRueidis is the failover write loop (writeLoop) for -client rueidis: rueidis.NewClient with
// its defaults but DisableCache (its default client-side caching is refused at the handshake, see
// rueidis.go), writing with Do(RPUSH) one command at a time.
func writesRueidis() {
	if addr == "" {
		fail("usage", "-addr is required")
	}
	ctx := context.Background()
	c, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{addr}, DisableCache: true})
	if err != nil {
		fail("handshake", err.Error())
	}
	defer c.Close()
	writeLoop(
		func(key string, seq int) error {
			return c.Do(ctx, c.B().Rpush().Key(key).Element(strconv.Itoa(seq)).Build()).Error()
		},
		func(key string) ([]string, error) {
			return c.Do(ctx, c.B().Lrange().Key(key).Start(0).Stop(-1).Build()).AsStrSlice()
		},
	)
}
