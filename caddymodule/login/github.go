package login

import (
	"context"
	"errors"
	"io/fs"
	"slices"
	"sync"
	"time"

	"go.uber.org/zap"
	"golang.org/x/oauth2"

	"github.com/hubgate/hubgate/caddymodule/idp"
	"github.com/hubgate/hubgate/caddymodule/session"
)

// ghMember is the re-check state of one GitHub account seen recently.
type ghMember struct {
	check sync.Mutex // serializes re-checks of this account

	mu       sync.Mutex
	id       int64
	login    string
	groups   []string
	checked  time.Time
	denied   string // why its sessions are no longer accepted
	lastSeen time.Time
	expires  int64
}

// setMember records a fresh login.
func (st *State) setMember(id int64, login string, groups []string, now time.Time, expires int64) {
	st.ghMu.Lock()
	m := st.members[id]
	if m == nil {
		m = &ghMember{id: id}
		st.members[id] = m
	}
	st.ghMu.Unlock()
	m.mu.Lock()
	m.login, m.groups, m.checked, m.denied, m.lastSeen = login, slices.Clone(groups), now, "", now
	m.expires = max(m.expires, expires)
	m.mu.Unlock()
}

// member returns the state of the session's account, creating it from
// the session when this instance has not seen it yet (after a restart,
// or on another instance); created reports that.
func (st *State) member(s *session.Session) (m *ghMember, created bool) {
	st.ghMu.RLock()
	m = st.members[s.GitHubID]
	st.ghMu.RUnlock()
	if m != nil {
		return m, false
	}
	st.ghMu.Lock()
	defer st.ghMu.Unlock()
	m = st.members[s.GitHubID]
	if m == nil {
		m = &ghMember{id: s.GitHubID, login: s.User, groups: slices.Clone(s.Groups), checked: time.Unix(s.CheckedAt, 0), expires: s.Expires}
		st.members[s.GitHubID] = m
		created = true
	}
	return m, created
}

// githubSession applies the latest re-check to a GitHub session: its
// groups become the ones read last from GitHub, and it is refused when
// GitHub no longer vouches for it. A session this instance has not seen,
// whose groups are older than the interval, is re-checked first.
func (a *Authenticator) githubSession(ctx context.Context, s *session.Session) bool {
	if a.github == nil {
		return false // GitHub is no longer configured
	}
	m, created := a.o.State.member(s)
	now := time.Now()
	m.mu.Lock()
	m.lastSeen = now
	m.expires = max(m.expires, s.Expires)
	stale := now.Sub(m.checked) > a.cfg.RecheckInterval
	m.mu.Unlock()
	if created && stale {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), recheckOnFirstUseTimeout)
		a.recheckMember(cctx, m)
		cancel()
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.denied != "" || m.login != s.User {
		return false
	}
	if now.Sub(m.checked) > 3*a.cfg.RecheckInterval+time.Minute {
		// GitHub could not be asked for too long: fail closed on
		// what teams grant, keep what the user name itself grants.
		s.Groups = nil
		return true
	}
	s.Groups = slices.Clone(m.groups)
	return true
}

// recheckDue re-reads the memberships of the GitHub accounts seen
// recently whose last check is older than RecheckInterval (at most four
// at a time), and forgets accounts whose sessions all ended.
func (a *Authenticator) recheckDue(ctx context.Context) {
	now := time.Now()
	var due []*ghMember
	st := a.o.State
	st.ghMu.Lock()
	for id, m := range st.members {
		m.mu.Lock()
		gone := now.Unix() > m.expires || now.Sub(m.lastSeen) > a.cfg.SessionTTL
		if gone {
			delete(st.members, id)
		} else if m.denied == "" && now.Sub(m.checked) >= a.cfg.RecheckInterval {
			due = append(due, m)
		}
		m.mu.Unlock()
	}
	st.ghMu.Unlock()
	sem := make(chan struct{}, 4)
	var wg sync.WaitGroup
	for _, m := range due {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			a.recheckMember(ctx, m)
		}()
	}
	wg.Wait()
}

// needsRefreshSoon says a token expires within five minutes.
func needsRefreshSoon(tok *oauth2.Token, _ time.Time) bool {
	return !tok.Expiry.IsZero() && time.Until(tok.Expiry) < 5*time.Minute
}

// recheckMember reads one account's memberships again with its stored
// token (refreshed when it is about to expire) and applies the result.
func (a *Authenticator) recheckMember(ctx context.Context, m *ghMember) {
	m.check.Lock()
	defer m.check.Unlock()
	m.mu.Lock()
	id, login, old := m.id, m.login, slices.Clone(m.groups)
	fresh := time.Since(m.checked) < a.cfg.RecheckInterval && !m.checked.IsZero()
	denied := m.denied
	m.mu.Unlock()
	if fresh || denied != "" {
		return
	}
	gh := a.github
	fields := []zap.Field{zap.String("user", login), zap.Int64("github_id", id), zap.String("provider", idp.KindGitHub)}
	tok, err := a.o.Store.FreshToken(ctx, id, needsRefreshSoon, gh.Refresh)
	var groups []string
	if err == nil {
		groups, err = gh.Check(ctx, tok.AccessToken, id, login)
	}
	var le *idp.LoginError
	reason := ""
	switch {
	case err == nil:
	case errors.Is(err, fs.ErrNotExist):
		reason = "no_stored_token"
	case errors.Is(err, idp.ErrTokenRevoked):
		reason = "github_token_revoked"
	case errors.Is(err, idp.ErrLoginChanged):
		reason = "github_login_changed"
	case errors.As(err, &le):
		reason = le.Reason
	default:
		a.o.Logger.Warn("github membership re-check failed; keeping the last result for now", append(fields, zap.Error(err))...)
		return
	}
	pol := a.o.Policy()
	m.mu.Lock()
	m.checked = time.Now()
	if reason != "" {
		m.denied = reason
		groups = nil
	} else {
		m.groups = groups
	}
	m.mu.Unlock()

	before, after := pol.Grant(login, old), pol.Grant(login, groups)
	lost := slices.DeleteFunc(slices.Clone(before.Images), func(img string) bool { return slices.Contains(after.Images, img) })
	knownLost := pol.Known(login, old) && !pol.Known(login, groups)
	if reason == "" && len(lost) == 0 && !knownLost {
		return
	}
	if reason == "" {
		reason = "membership_removed"
	}
	closed := a.o.AccessLost(login)
	a.o.Audit.Warn("re-check removed access", append(fields, zap.String("reason", reason), zap.Strings("servers_lost", lost),
		zap.Bool("not_in_policy", !pol.Known(login, groups)), zap.Int("streams_closed", closed))...)
}
