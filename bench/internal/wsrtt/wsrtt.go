// Package wsrtt measures websocket round trips against an echo endpoint
// (the test app's "ws"): each connection sends a message, waits for its
// echo, and does it again, so every sample is one full round trip.
package wsrtt

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/coder/websocket"
)

// Options describe one measurement.
type Options struct {
	// URL is the ws:// or wss:// address of the echo endpoint.
	URL string
	// Header is sent with the handshake (a session cookie, a token).
	Header http.Header
	// Conns is the number of connections, each doing Msgs round trips at
	// the same time as the others. 1 is the sequential case.
	Conns int
	// Msgs is the number of round trips per connection.
	Msgs int
	// Size is the message size in bytes.
	Size int
	// Warmup round trips per connection are made first and not counted.
	Warmup int
}

// Result summarizes the round trips of all connections.
type Result struct {
	Conns, Msgs int
	// Samples is the number of round trips measured (Conns x Msgs).
	Samples int
	P50     time.Duration
	P99     time.Duration
	Mean    time.Duration
	Max     time.Duration
	// Elapsed is the wall time from the first send to the last echo of
	// any connection; MsgsPerSec is Samples / Elapsed.
	Elapsed    time.Duration
	MsgsPerSec float64
}

// Run dials opts.Conns connections (not timed), then makes opts.Msgs round
// trips on each at once, and returns their distribution. It gives up at
// ctx's end.
func Run(ctx context.Context, opts Options) (Result, error) {
	if opts.Conns < 1 || opts.Msgs < 1 {
		return Result{}, errors.New("wsrtt: conns and msgs must be at least 1")
	}
	if opts.Size < 1 {
		opts.Size = 64
	}
	client := &http.Client{
		Timeout: 30 * time.Second,
		Transport: &http.Transport{
			// Loopback benchmark against Caddy's internal CA.
			TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, //nolint:gosec
			Proxy:           nil,
		},
	}
	defer client.CloseIdleConnections()

	conns := make([]*websocket.Conn, 0, opts.Conns)
	defer func() {
		for _, c := range conns {
			_ = c.Close(websocket.StatusNormalClosure, "")
		}
	}()
	for i := range opts.Conns {
		dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		c, resp, err := websocket.Dial(dctx, opts.URL, &websocket.DialOptions{HTTPClient: client, HTTPHeader: opts.Header})
		cancel()
		if err != nil {
			status := 0
			if resp != nil {
				status = resp.StatusCode
			}
			return Result{}, fmt.Errorf("wsrtt: dial %d of %s: %w (status %d)", i+1, opts.URL, err, status)
		}
		c.SetReadLimit(int64(opts.Size) + 1024)
		conns = append(conns, c)
	}

	samples := make([][]time.Duration, len(conns))
	errs := make([]error, len(conns))
	var wg, warm sync.WaitGroup
	start := make(chan struct{})
	for i, c := range conns {
		samples[i] = make([]time.Duration, 0, opts.Msgs)
		wg.Add(1)
		warm.Add(1)
		go func() {
			defer wg.Done()
			msg := bytes.Repeat([]byte{'a' + byte(i%26)}, opts.Size)
			for range opts.Warmup {
				if _, err := roundTrip(ctx, c, msg); err != nil {
					errs[i] = err
					warm.Done()
					return
				}
			}
			warm.Done()
			<-start
			for range opts.Msgs {
				d, err := roundTrip(ctx, c, msg)
				if err != nil {
					errs[i] = err
					return
				}
				samples[i] = append(samples[i], d)
			}
		}()
	}
	// Every connection has warmed up before the clock starts.
	warm.Wait()
	began := time.Now()
	close(start)
	wg.Wait()
	elapsed := time.Since(began)
	if err := errors.Join(errs...); err != nil {
		return Result{}, fmt.Errorf("wsrtt: %w", err)
	}
	all := slices.Concat(samples...)
	slices.Sort(all)
	var sum time.Duration
	for _, d := range all {
		sum += d
	}
	return Result{
		Conns:      opts.Conns,
		Msgs:       opts.Msgs,
		Samples:    len(all),
		P50:        Percentile(all, 50),
		P99:        Percentile(all, 99),
		Mean:       sum / time.Duration(len(all)),
		Max:        all[len(all)-1],
		Elapsed:    elapsed,
		MsgsPerSec: float64(len(all)) / elapsed.Seconds(),
	}, nil
}

// roundTrip sends msg and waits for its echo.
func roundTrip(ctx context.Context, c *websocket.Conn, msg []byte) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	t0 := time.Now()
	if err := c.Write(ctx, websocket.MessageBinary, msg); err != nil {
		return 0, fmt.Errorf("write: %w", err)
	}
	typ, got, err := c.Read(ctx)
	d := time.Since(t0)
	if err != nil {
		return 0, fmt.Errorf("read: %w", err)
	}
	if typ != websocket.MessageBinary || !bytes.Equal(got, msg) {
		return 0, errors.New("echo differs from the message sent")
	}
	return d, nil
}

// Percentile returns the p-th percentile (nearest rank) of sorted samples.
func Percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(float64(len(sorted))*p/100+0.5) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}
