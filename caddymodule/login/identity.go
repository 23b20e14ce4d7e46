package login

import (
	"context"
	"strings"
	"time"

	"go.uber.org/zap"
	"golang.org/x/oauth2"

	"github.com/hubgate/hubgate/caddymodule/session"
	"github.com/hubgate/hubgate/policies"
	"github.com/hubgate/hubgate/spawner/contract"
)

// ContainerEnv returns the git identity of every container and, where the
// policy grants it, the repos to clone and the user's GitHub token (fresh:
// refreshed unless obtained in the last minute).
func (a *Authenticator) ContainerEnv(ctx context.Context, s *session.Session, grant policies.Grant) map[string]string {
	env := map[string]string{}
	name := s.Name
	if name == "" {
		name = s.User
	}
	env[contract.GitAuthorName], env[contract.GitCommitterName] = name, name
	if s.Email != "" {
		env[contract.GitAuthorEmail], env[contract.GitCommitterEmail] = s.Email, s.Email
	}
	gitURL := a.GitURL()
	if len(grant.Repos) > 0 {
		env[contract.Repos] = strings.Join(grant.Repos, " ")
		env[contract.GitURL] = gitURL
	}
	if !grant.GitHubToken || s.GitHubID == 0 || a.github == nil {
		return env
	}
	// A (re)started container gets a fresh token: refreshed unless it
	// was obtained in the last minute.
	fresh := func(tok *oauth2.Token, obtained time.Time) bool {
		return time.Since(obtained) > time.Minute || needsRefreshSoon(tok, obtained)
	}
	tctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	tok, err := a.o.Store.FreshToken(tctx, s.GitHubID, fresh, a.github.Refresh)
	if err != nil {
		a.o.Logger.Warn("no GitHub token for the container; repos that need it will not clone", zap.String("user", s.User), zap.Error(err))
		return env
	}
	env[contract.GitHubToken] = tok.AccessToken
	return env
}
