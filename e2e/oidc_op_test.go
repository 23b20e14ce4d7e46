package e2e

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/zitadel/oidc/v3/example/server/exampleop"
	"github.com/zitadel/oidc/v3/example/server/storage"
	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"
	"golang.org/x/text/language"
)

// The OpenID provider of these tests is zitadel/oidc's example OP (a
// certified OpenID Connect implementation we did not write), run in the
// test process on loopback HTTP, which zitadel allows with its insecure
// option. Its users log in through its own HTML form.

// oidcUser is a user of the test OP.
type oidcUser struct {
	id, username, password, first, last, email string
	verified                                   bool
	groups                                     []string
}

var oidcUsers = []oidcUser{
	{id: "sub-olivia", username: "olivia", password: "olivia-op-pw", first: "Olivia", last: "Okafor", email: "olivia@example.org", verified: true, groups: []string{"researchers"}},
	{id: "sub-oscar", username: "oscar", password: "oscar-op-pw", first: "Oscar", last: "Ortiz", email: "oscar@example.org", verified: true, groups: []string{"visitors"}},
	// bob is also a local account of the harness's policy.
	{id: "sub-bob", username: "bob", password: "bob-op-pw", first: "Other", last: "Bob", email: "bob@elsewhere.example", verified: true, groups: []string{"researchers"}},
	// No preferred_username here: the user name falls back to the verified email.
	{id: "sub-erin", username: "", password: "erin-op-pw", first: "Erin", last: "E", email: "Erin@Example.org", verified: true, groups: []string{"researchers"}},
}

const (
	opClientID     = "hubgate-test"
	opClientSecret = "op-client-secret-not-for-logs"
)

// testOP is a running zitadel OP.
type testOP struct {
	issuer string
	srv    *http.Server
	store  *opStorage
}

// startOP starts the OP on a loopback port. The gateway's redirect and
// post-logout URIs are registered later with allow, since its port is
// chosen after the OP's.
func startOP(t *testing.T) *testOP {
	t.Helper()
	slog.SetDefault(slog.New(slog.NewTextHandler(io.Discard, nil)))
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	issuer := "http://" + l.Addr().String() + "/"
	users := opUserStore{}
	groups := map[string][]string{}
	for _, u := range oidcUsers {
		users[u.id] = &storage.User{
			ID: u.id, Username: u.username, Password: u.password, FirstName: u.first, LastName: u.last,
			Email: u.email, EmailVerified: u.verified, PreferredLanguage: language.English,
		}
		groups[u.id] = u.groups
	}
	st := &opStorage{
		Storage: storage.NewStorage(users),
		client:  &opClient{id: opClientID, secret: opClientSecret},
		groups:  groups,
	}
	router := exampleop.SetupServer(issuer, st, nil, false)
	o := &testOP{issuer: issuer, store: st, srv: &http.Server{Handler: router, ReadHeaderTimeout: 5 * time.Second}}
	go o.srv.Serve(l)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = o.srv.Shutdown(ctx)
	})
	return o
}

// allow registers a gateway's callback and post-logout URIs.
func (o *testOP) allow(g *gateway) {
	o.store.client.mu.Lock()
	defer o.store.client.mu.Unlock()
	o.store.client.redirects = append(o.store.client.redirects, g.url("/hub/oauth_callback"))
	o.store.client.postLogout = append(o.store.client.postLogout, g.url("/"))
}

// opUserStore implements the example storage's UserStore.
type opUserStore map[string]*storage.User

func (u opUserStore) GetUserByID(id string) *storage.User { return u[id] }
func (u opUserStore) GetUserByUsername(name string) *storage.User {
	for _, x := range u {
		if name != "" && x.Username == name {
			return x
		}
	}
	// Users without a user name log in with their email address.
	for _, x := range u {
		if x.Username == "" && x.Email == name {
			return x
		}
	}
	return nil
}
func (u opUserStore) ExampleClientID() string { return "service" }

// opStorage is the example's in-memory storage with our client and a
// "groups" claim (for the "groups" scope).
type opStorage struct {
	*storage.Storage
	client *opClient
	groups map[string][]string
}

func (s *opStorage) GetClientByClientID(_ context.Context, id string) (op.Client, error) {
	if id != s.client.id {
		return nil, errors.New("client not found")
	}
	return s.client, nil
}

func (s *opStorage) AuthorizeClientIDSecret(_ context.Context, id, secret string) error {
	if id != s.client.id || secret != s.client.secret {
		return errors.New("invalid client")
	}
	return nil
}

func (s *opStorage) SetUserinfoFromRequest(ctx context.Context, ui *oidc.UserInfo, req op.IDTokenRequest, scopes []string) error {
	if err := s.Storage.SetUserinfoFromRequest(ctx, ui, req, scopes); err != nil {
		return err
	}
	if slices.Contains(scopes, "groups") {
		ui.AppendClaims("groups", s.groups[req.GetSubject()])
	}
	return nil
}

func (s *opStorage) SetUserinfoFromToken(ctx context.Context, ui *oidc.UserInfo, tokenID, subject, origin string) error {
	if err := s.Storage.SetUserinfoFromToken(ctx, ui, tokenID, subject, origin); err != nil {
		return err
	}
	ui.AppendClaims("groups", s.groups[ui.Subject])
	// Users without a user name get none (the example fills it with "").
	if ui.PreferredUsername == "" {
		delete(ui.Claims, "preferred_username")
	}
	return nil
}

// opClient is the gateway's registration at the OP: a confidential web
// client, authorization code flow, userinfo claims not copied into the ID
// token (so the gateway must read the userinfo endpoint).
type opClient struct {
	id, secret string
	mu         sync.Mutex
	redirects  []string
	postLogout []string
}

func (c *opClient) GetID() string { return c.id }
func (c *opClient) RedirectURIs() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.redirects)
}
func (c *opClient) PostLogoutRedirectURIs() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.postLogout)
}
func (c *opClient) ApplicationType() op.ApplicationType { return op.ApplicationTypeWeb }
func (c *opClient) AuthMethod() oidc.AuthMethod         { return oidc.AuthMethodBasic }
func (c *opClient) ResponseTypes() []oidc.ResponseType {
	return []oidc.ResponseType{oidc.ResponseTypeCode}
}
func (c *opClient) GrantTypes() []oidc.GrantType {
	return []oidc.GrantType{oidc.GrantTypeCode, oidc.GrantTypeRefreshToken}
}
func (c *opClient) LoginURL(id string) string            { return "/login/username?authRequestID=" + id }
func (c *opClient) AccessTokenType() op.AccessTokenType  { return op.AccessTokenTypeBearer }
func (c *opClient) IDTokenLifetime() time.Duration       { return time.Hour }
func (c *opClient) DevMode() bool                        { return false }
func (c *opClient) IsScopeAllowed(scope string) bool     { return scope == "groups" }
func (c *opClient) IDTokenUserinfoClaimsAssertion() bool { return false }
func (c *opClient) ClockSkew() time.Duration             { return 0 }
func (c *opClient) RestrictAdditionalIdTokenScopes() func([]string) []string {
	return func(s []string) []string { return s }
}
func (c *opClient) RestrictAdditionalAccessTokenScopes() func([]string) []string {
	return func(s []string) []string { return s }
}
