package web

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/hubgate/hubgate/caddymodule/audit"
	"github.com/hubgate/hubgate/caddymodule/history"
)

// historyFixture is the fixture with an access history fed by the site's
// audit logger, as the glue wires it.
func historyFixture(t *testing.T) (*fixture, *history.Index, *zap.Logger) {
	f := newFixture(t, 0)
	idx := history.New(history.Options{})
	lg := zap.New(zapcore.NewCore(zapcore.NewJSONEncoder(audit.EncoderConfig()), idx, zapcore.InfoLevel))
	o := f.site.o
	o.History, o.Audit = idx, lg
	f.site = New(o)
	return f, idx, lg
}

type historyJSON struct {
	User    string           `json:"user"`
	Records []history.Record `json:"records"`
	Older   string           `json:"older"`
}

func TestHistoryPageAndAPI(t *testing.T) {
	f, _, lg := historyFixture(t)
	lg.Info("login", zap.String("user", "alice"), zap.String("provider", "local"), zap.String("remote_ip", "192.0.2.7"))
	lg.Info("stop", zap.String("user", "alice"), zap.String("server", "notebook"), zap.String("by", "admin"))
	lg.Info("login", zap.String("user", "bob"), zap.String("provider", "local"))
	alice, _ := f.cookie(t, "alice")
	admin, _ := f.cookie(t, "admin")

	// Her page, newest first, linked from home.
	w := f.do(t, request("GET", "/hub/history", alice, "Accept", "text/html", "Sec-Fetch-Mode", "navigate"))
	body := w.Body.String()
	if w.Code != http.StatusOK || !strings.Contains(body, "Your access history") || strings.Index(body, ">stop<") > strings.Index(body, ">login<") ||
		!strings.Contains(body, "by: admin") || !strings.Contains(body, "remote_ip: 192.0.2.7") || strings.Contains(body, "bob") {
		t.Fatalf("alice's page %d:\n%s", w.Code, body)
	}
	if w := f.do(t, request("GET", "/", alice, "Accept", "text/html")); !strings.Contains(w.Body.String(), `href="/hub/history"`) {
		t.Error("the home page does not link the history")
	}
	// Not from a script, as every hub page.
	if w := f.do(t, request("GET", "/hub/history", alice, "Sec-Fetch-Mode", "cors")); w.Code != http.StatusForbidden {
		t.Errorf("history page to a script: %d", w.Code)
	}
	// Not someone else's.
	if w := f.do(t, request("GET", "/hub/history?user=bob", alice, "Accept", "text/html")); w.Code != http.StatusForbidden {
		t.Errorf("alice asking for bob's history: %d", w.Code)
	}
	if w := f.do(t, request("GET", "/hub/api/history?user=bob", alice)); w.Code != http.StatusForbidden {
		t.Errorf("alice asking the API for bob's history: %d", w.Code)
	}

	// The JSON, with the session, from the hub's own pages only.
	w = f.do(t, request("GET", "/hub/api/history", alice))
	var got historyJSON
	if err := json.Unmarshal(w.Body.Bytes(), &got); err != nil || w.Code != http.StatusOK || got.User != "alice" || len(got.Records) < 2 ||
		got.Records[0].Msg != "denied" && got.Records[0].Msg != "stop" {
		t.Fatalf("alice's API %d %v: %s", w.Code, err, w.Body)
	}
	if w := f.do(t, request("GET", "/hub/api/history", alice, "Sec-Fetch-Site", "same-origin", "Referer", "https://hub.test/user/alice/notebook/")); w.Code != http.StatusForbidden {
		t.Errorf("history API from a page of a user's server: %d", w.Code)
	}
	if w := f.do(t, request("GET", "/hub/api/history", "")); w.Code != http.StatusUnauthorized {
		t.Errorf("history API without a session: %d", w.Code)
	}

	// An admin may look, and that is in alice's own history.
	w = f.do(t, request("GET", "/hub/api/history?user=alice", admin))
	if w.Code != http.StatusOK {
		t.Fatalf("admin viewing alice's history: %d %s", w.Code, w.Body)
	}
	w = f.do(t, request("GET", "/hub/api/history", alice))
	got = historyJSON{}
	_ = json.Unmarshal(w.Body.Bytes(), &got)
	if got.Records[0].Msg != "history viewed" || got.Records[0].Fields["by"] != "admin" {
		t.Errorf("the admin's look is not in alice's history: %+v", got.Records[0])
	}
}

func TestHistoryPages(t *testing.T) {
	f, _, lg := historyFixture(t)
	for i := range 120 {
		lg.Info("login", zap.String("user", "alice"), zap.Int("n", i))
	}
	alice, _ := f.cookie(t, "alice")
	seen := map[string]bool{}
	path := "/hub/api/history"
	for pages := 0; path != ""; pages++ {
		if pages > 5 {
			t.Fatal("paging does not end")
		}
		w := f.do(t, request("GET", path, alice))
		var got historyJSON
		if err := json.Unmarshal(w.Body.Bytes(), &got); err != nil {
			t.Fatal(err)
		}
		if len(got.Records) > historyPageSize {
			t.Fatalf("a page of %d records", len(got.Records))
		}
		for _, r := range got.Records {
			n := fmt.Sprint(r.Fields["n"])
			if seen[n] {
				t.Fatalf("record %s twice", n)
			}
			seen[n] = true
		}
		path = got.Older
	}
	if len(seen) != 120 {
		t.Errorf("paged through %d of 120 records", len(seen))
	}
}
