package idp

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/oauth2"
)

func TestNextLink(t *testing.T) {
	cases := map[string]string{
		`<https://api.github.com/user/teams?page=2>; rel="next", <https://api.github.com/user/teams?page=5>; rel="last"`: "https://api.github.com/user/teams?page=2",
		`<https://api.github.com/x?page=1>; rel="prev", <https://api.github.com/x?page=3>; rel="next"`:                   "https://api.github.com/x?page=3",
		`<https://api.github.com/x?page=1>; rel="first"`:                                                                 "",
		``: "",
	}
	for in, want := range cases {
		if got := nextLink(in); got != want {
			t.Errorf("nextLink(%q) = %q, want %q", in, got, want)
		}
	}
}

// ghUnit is a small GitHub for unit tests; the e2e tests use a fuller one.
type ghUnit struct {
	srv       *httptest.Server
	login     atomic.Value
	formToken bool // answer the token endpoint form-encoded
	foreign   string
	leaked    atomic.Bool
}

func newGHUnit(t *testing.T) *ghUnit {
	u := &ghUnit{}
	u.login.Store("Octo")
	evil := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "" {
			u.leaked.Store(true)
		}
		_, _ = w.Write([]byte("[]"))
	}))
	t.Cleanup(evil.Close)
	u.foreign = evil.URL
	mux := http.NewServeMux()
	mux.HandleFunc("POST /login/oauth/access_token", func(w http.ResponseWriter, r *http.Request) {
		_ = r.ParseForm()
		var body string
		switch {
		case r.Form.Get("grant_type") == "refresh_token" && r.Form.Get("refresh_token") == "ghr_1":
			body = "access_token=ghu_2&expires_in=28800&refresh_token=ghr_2&token_type=bearer"
		case r.Form.Get("grant_type") == "refresh_token":
			body = "error=bad_refresh_token&error_description=The+refresh+token+passed+is+incorrect+or+expired."
		case r.Form.Get("code") == "good" && r.Form.Get("code_verifier") != "":
			body = "access_token=gho_1&scope=read%3Aorg%2Cuser%3Aemail&token_type=bearer"
		default:
			body = "error=bad_verification_code&error_description=The+code+passed+is+incorrect+or+expired."
		}
		if u.formToken || r.Header.Get("Accept") != "application/json" {
			w.Header().Set("Content-Type", "application/x-www-form-urlencoded; charset=utf-8")
			_, _ = w.Write([]byte(body))
			return
		}
		vals := map[string]any{}
		for _, kv := range strings.Split(body, "&") {
			k, v, _ := strings.Cut(kv, "=")
			v = strings.NewReplacer("%3A", ":", "%2C", ",", "+", " ").Replace(v)
			vals[k] = v
			if k == "expires_in" {
				vals[k] = 28800
			}
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(vals)
	})
	auth := func(h http.HandlerFunc) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			if a := r.Header.Get("Authorization"); a != "Bearer gho_1" && a != "Bearer ghu_2" {
				w.WriteHeader(http.StatusUnauthorized)
				_, _ = w.Write([]byte(`{"message":"Bad credentials","status":"401"}`))
				return
			}
			if r.Header.Get("X-GitHub-Api-Version") == "" || r.Header.Get("User-Agent") == "" {
				w.WriteHeader(http.StatusBadRequest)
				return
			}
			h(w, r)
		}
	}
	mux.HandleFunc("GET /user", auth(func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewEncoder(w).Encode(map[string]any{"login": u.login.Load(), "id": 42, "name": "Octo Cat\x07<b>"})
	}))
	mux.HandleFunc("GET /user/emails", auth(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte(`[{"email":"x@example.org","primary":false,"verified":true},{"email":"Octo@Example.org","primary":true,"verified":true}]`))
	}))
	mux.HandleFunc("GET /user/teams", auth(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("page") == "" {
			w.Header().Set("Link", `<`+u.srv.URL+`/user/teams?per_page=100&page=2>; rel="next"`)
			_, _ = w.Write([]byte(`[{"slug":"Data-Science","organization":{"login":"Lab"}}]`))
			return
		}
		// The second page points to a foreign host: not followed.
		w.Header().Set("Link", `<`+u.foreign+`/user/teams?page=3>; rel="next"`)
		_, _ = w.Write([]byte(`[{"slug":"ops","organization":{"login":"elsewhere"}}]`))
	}))
	mux.HandleFunc("GET /user/orgs", auth(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte(`[{"login":"Lab"},{"login":"elsewhere"}]`))
	}))
	mux.HandleFunc("GET /orgs/{org}/members/{user}", auth(func(w http.ResponseWriter, r *http.Request) {
		if r.PathValue("org") == "lab" && strings.EqualFold(r.PathValue("user"), "octo") {
			w.WriteHeader(http.StatusNoContent)
			return
		}
		w.WriteHeader(http.StatusNotFound)
	}))
	u.srv = httptest.NewServer(mux)
	t.Cleanup(u.srv.Close)
	return u
}

func (u *ghUnit) provider(t *testing.T, orgs ...string) *GitHub {
	g, err := NewGitHub(GitHubOptions{ClientID: "cid", ClientSecret: "csecret", URL: u.srv.URL, APIURL: u.srv.URL, Orgs: orgs, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return g
}

func TestGitHubExchange(t *testing.T) {
	u := newGHUnit(t)
	for _, form := range []bool{false, true} {
		u.formToken = form
		id, err := u.provider(t).Exchange(context.Background(), "good", NewFlow("https://h/cb"))
		if err != nil {
			t.Fatalf("form=%v: %v", form, err)
		}
		if id.User != "octo" || id.GitHubID != 42 || id.Subject != "42" || id.Email != "octo@example.org" || id.Name != "Octo Catb" || id.Token.AccessToken != "gho_1" {
			t.Errorf("form=%v: identity %+v", form, id)
		}
		want := []string{"github:elsewhere", "github:elsewhere/ops", "github:lab", "github:lab/data-science"}
		if !slices.Equal(id.Groups, want) {
			t.Errorf("groups %v, want %v", id.Groups, want)
		}
	}
	if u.leaked.Load() {
		t.Fatal("the token was sent to a host the Link header named")
	}
	_, err := u.provider(t).Exchange(context.Background(), "bad", NewFlow("https://h/cb"))
	if Reason(err) != "token_exchange_failed" || !strings.Contains(err.Error(), "bad_verification_code") {
		t.Fatalf("bad code: %v", err)
	}
}

func TestGitHubOrgAllowList(t *testing.T) {
	u := newGHUnit(t)
	id, err := u.provider(t, "Lab").Exchange(context.Background(), "good", NewFlow("https://h/cb"))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(id.Groups, []string{"github:lab", "github:lab/data-science"}) {
		t.Errorf("groups outside the allow-list kept: %v", id.Groups)
	}
	_, err = u.provider(t, "other").Exchange(context.Background(), "good", NewFlow("https://h/cb"))
	if Reason(err) != "org_not_allowed" {
		t.Fatalf("not in an allowed org: %v", err)
	}
}

func TestGitHubCheckAndRefresh(t *testing.T) {
	u := newGHUnit(t)
	g := u.provider(t)
	if _, err := g.Check(context.Background(), "gho_1", 42, "octo"); err != nil {
		t.Fatal(err)
	}
	if _, err := g.Check(context.Background(), "gho_1", 43, "octo"); !errors.Is(err, ErrLoginChanged) {
		t.Errorf("another id: %v", err)
	}
	u.login.Store("octo-renamed")
	if _, err := g.Check(context.Background(), "gho_1", 42, "octo"); !errors.Is(err, ErrLoginChanged) {
		t.Errorf("renamed: %v", err)
	}
	if _, err := g.Check(context.Background(), "revoked", 42, "octo"); !errors.Is(err, ErrTokenRevoked) {
		t.Errorf("revoked token: %v", err)
	}
	nt, err := g.Refresh(context.Background(), &oauth2.Token{AccessToken: "ghu_1", RefreshToken: "ghr_1"})
	if err != nil || nt.AccessToken != "ghu_2" || nt.RefreshToken != "ghr_2" || time.Until(nt.Expiry) < 7*time.Hour {
		t.Fatalf("refresh: %+v %v", nt, err)
	}
	if _, err := g.Refresh(context.Background(), &oauth2.Token{RefreshToken: "ghr_spent"}); !errors.Is(err, ErrTokenRevoked) {
		t.Errorf("spent refresh token: %v", err)
	}
}

func TestGitHubAuthCodeURL(t *testing.T) {
	g, _ := NewGitHub(GitHubOptions{ClientID: "cid", URL: "https://github.example.org/"})
	f := NewFlow("https://hub/hub/oauth_callback")
	raw, _ := g.AuthCodeURL(context.Background(), f)
	if !strings.HasPrefix(raw, "https://github.example.org/login/oauth/authorize?") || !strings.Contains(raw, "scope=read%3Aorg+user%3Aemail") ||
		!strings.Contains(raw, "code_challenge_method=S256") || strings.Contains(raw, f.Verifier) {
		t.Fatalf("authorize URL %s", raw)
	}
	app, _ := NewGitHub(GitHubOptions{ClientID: "cid", AppTokens: true})
	if raw, _ := app.AuthCodeURL(context.Background(), f); strings.Contains(raw, "scope=") || !strings.HasPrefix(raw, DefaultGitHubURL) {
		t.Fatalf("GitHub App authorize URL %s", raw)
	}
}
