// Command wsrtt measures websocket round trips against an echo endpoint,
// such as the test app's "ws" behind hubgate or plain Caddy:
//
//	wsrtt -url wss://localhost:8443/user/alice/notebook/ws \
//	      -H 'Cookie: __Host-hubgate-session=...' -n 2000 -c 1
//
// With -c 1 the round trips are sequential on one connection; with -c N,
// N connections make -n round trips each at the same time. It prints the
// p50, p99, mean and max round trip and the messages per second (-json for
// one JSON object). `make bench` uses the same code (bench/internal/wsrtt).
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/hubgate/hubgate/bench/internal/wsrtt"
)

type headerFlag struct{ h http.Header }

func (f *headerFlag) String() string { return "" }

func (f *headerFlag) Set(v string) error {
	name, value, ok := strings.Cut(v, ":")
	if !ok {
		return fmt.Errorf("header %q: want 'Name: value'", v)
	}
	f.h.Add(strings.TrimSpace(name), strings.TrimSpace(value))
	return nil
}

func main() {
	hdr := headerFlag{h: http.Header{}}
	url := flag.String("url", "", "ws:// or wss:// address of the echo endpoint (required)")
	flag.Var(&hdr, "H", "handshake header 'Name: value' (repeatable)")
	n := flag.Int("n", 2000, "round trips per connection")
	c := flag.Int("c", 1, "connections at once")
	size := flag.Int("size", 64, "message size in bytes")
	warmup := flag.Int("warmup", 100, "round trips per connection before measuring")
	timeout := flag.Duration("timeout", 2*time.Minute, "give up after this long")
	asJSON := flag.Bool("json", false, "print one JSON object")
	flag.Parse()
	if *url == "" {
		flag.Usage()
		os.Exit(2)
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	res, err := wsrtt.Run(ctx, wsrtt.Options{URL: *url, Header: hdr.h, Conns: *c, Msgs: *n, Size: *size, Warmup: *warmup})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if *asJSON {
		_ = json.NewEncoder(os.Stdout).Encode(map[string]any{
			"conns": res.Conns, "msgs": res.Msgs, "samples": res.Samples,
			"p50_us": res.P50.Microseconds(), "p99_us": res.P99.Microseconds(),
			"mean_us": res.Mean.Microseconds(), "max_us": res.Max.Microseconds(),
			"elapsed_s": res.Elapsed.Seconds(), "msgs_per_s": res.MsgsPerSec,
		})
		return
	}
	fmt.Printf("%d conns x %d round trips of %d bytes: p50 %s  p99 %s  mean %s  max %s  %.0f msgs/s\n",
		res.Conns, res.Msgs, *size, res.P50, res.P99, res.Mean, res.Max, res.MsgsPerSec)
}
