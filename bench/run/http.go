package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptrace"
	"net/url"
	"regexp"
	"strings"
	"time"
)

const sessionCookieName = "__Host-hubgate-session"

var csrfRE = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// userSession is a logged-in user: a client with its own connections (as
// a browser has) and the session cookie.
type userSession struct {
	user   string
	client *http.Client
	cookie string // "__Host-hubgate-session=..."
}

// login logs user in through the login form: GET it (the csrf field and
// the pre-login cookie), then POST the user name and password.
func (b *bench) login(ctx context.Context, user string) (*userSession, error) {
	jar, _ := cookiejar.New(nil)
	c := insecureClient(jar)
	st, body, _, err := fetch(ctx, c, http.MethodGet, b.hub.url("/hub/login?next=%2F"), nil, nil)
	if err != nil {
		return nil, fmt.Errorf("login page: %w", err)
	}
	m := csrfRE.FindStringSubmatch(string(body))
	if st != http.StatusOK || m == nil {
		return nil, fmt.Errorf("login page: status %d, csrf field found %t", st, m != nil)
	}
	form := url.Values{"username": {user}, "password": {b.password}, "csrf": {m[1]}, "next": {"/"}}
	hdr := http.Header{"Content-Type": {"application/x-www-form-urlencoded"}}
	st, _, _, err = fetch(ctx, c, http.MethodPost, b.hub.url("/hub/login"), hdr, strings.NewReader(form.Encode()))
	if err != nil {
		return nil, fmt.Errorf("log in %s: %w", user, err)
	}
	if st != http.StatusSeeOther {
		return nil, fmt.Errorf("log in %s: status %d, want 303", user, st)
	}
	u, _ := url.Parse(b.hub.url("/"))
	for _, ck := range jar.Cookies(u) {
		if ck.Name == sessionCookieName {
			return &userSession{user: user, client: c, cookie: ck.Name + "=" + ck.Value}, nil
		}
	}
	return nil, fmt.Errorf("log in %s: no session cookie", user)
}

// fetch sends one request and returns the status, the body and the time
// from sending to the first byte of the answer.
func fetch(ctx context.Context, c *http.Client, method, u string, hdr http.Header, body io.Reader) (int, []byte, time.Duration, error) {
	var first time.Time
	trace := &httptrace.ClientTrace{GotFirstResponseByte: func() { first = time.Now() }}
	req, err := http.NewRequestWithContext(httptrace.WithClientTrace(ctx, trace), method, u, body)
	if err != nil {
		return 0, nil, 0, err
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	t0 := time.Now()
	resp, err := c.Do(req)
	if err != nil {
		return 0, nil, 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if first.IsZero() {
		first = time.Now()
	}
	return resp.StatusCode, b, first.Sub(t0), err
}

// served is the outcome of a user's first request(s) to their server.
type served struct {
	// ttfb is from the first request sent to the first byte of the 200
	// answer from the app.
	ttfb time.Duration
	// retries counts 503 "starting" answers before it (the start took
	// longer than hubgate's start_wait).
	retries int
	// errors counts other answers and transport errors before it.
	errors  int
	lastErr string
}

// untilServed requests the user's whoami as an API client until the app
// answers 200: a 503 with Retry-After means "starting" and is asked again
// after 100ms (a shorter wait than Retry-After asks for, so the time is
// measured to within 100ms); anything else counts as an error and is
// retried after 250ms, until within passes.
func (b *bench) untilServed(ctx context.Context, s *userSession, within time.Duration) (served, error) {
	return b.untilServedAt(ctx, s, appPath(s.user, "whoami"), within)
}

// untilServedAt is untilServed for any path of the user's.
func (b *bench) untilServedAt(ctx context.Context, s *userSession, path string, within time.Duration) (served, error) {
	var out served
	hdr := http.Header{"Accept": {"application/json"}}
	deadline := time.Now().Add(within)
	t0 := time.Now()
	for {
		var first time.Time
		trace := &httptrace.ClientTrace{GotFirstResponseByte: func() { first = time.Now() }}
		req, _ := http.NewRequestWithContext(httptrace.WithClientTrace(ctx, trace), http.MethodGet, b.hub.url(path), nil)
		req.Header = hdr.Clone()
		resp, err := s.client.Do(req)
		wait := 250 * time.Millisecond
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			switch {
			case resp.StatusCode == http.StatusOK:
				out.ttfb = first.Sub(t0)
				return out, nil
			case resp.StatusCode == http.StatusServiceUnavailable && resp.Header.Get("Retry-After") != "":
				out.retries++
				wait = 100 * time.Millisecond
			default:
				out.errors++
				out.lastErr = fmt.Sprintf("status %d", resp.StatusCode)
			}
		} else {
			out.errors++
			out.lastErr = err.Error()
		}
		if ctx.Err() != nil || time.Now().Add(wait).After(deadline) {
			return out, fmt.Errorf("%s not served within %s: %d errors (last: %s), %d starting answers", s.user, within, out.errors, out.lastErr, out.retries)
		}
		time.Sleep(wait)
	}
}
