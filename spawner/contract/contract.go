// Package contract names the environment variables of hubgate's container
// contract: what the gateway sets in every user container and what the
// images' entrypoint reads. Both sides use these constants, so a name is
// spelled once.
package contract

// Set by the gateway in every container.
const (
	// User is the canonical user name.
	User = "HUBGATE_USER"
	// Server is the server key (an image key of the policy).
	Server = "HUBGATE_SERVER"
	// BaseURL is the path prefix the server is served under, with a
	// trailing slash ("/user/alice/notebook/").
	BaseURL = "HUBGATE_BASE_URL"
	// DefaultURL is the path below BaseURL the browser opens first.
	DefaultURL = "HUBGATE_DEFAULT_URL"
	// JupyterHubServicePrefix repeats BaseURL for images that read
	// JupyterHub's name for it.
	JupyterHubServicePrefix = "JUPYTERHUB_SERVICE_PREFIX"
	// Token is the per-container secret; the gateway sends it on every
	// proxied request as "Authorization: token <Token>".
	Token = "HUBGATE_TOKEN"
	// SyncTimeout bounds the entrypoint's repository sync (a Go duration).
	SyncTimeout = "HUBGATE_SYNC_TIMEOUT"
	// GitTimeout bounds each git command of the sync (a Go duration).
	GitTimeout = "HUBGATE_GIT_TIMEOUT"
)

// The git identity, always set.
const (
	GitAuthorName     = "GIT_AUTHOR_NAME"
	GitCommitterName  = "GIT_COMMITTER_NAME"
	GitAuthorEmail    = "GIT_AUTHOR_EMAIL"
	GitCommitterEmail = "GIT_COMMITTER_EMAIL"
)

// Set only where the policy grants them.
const (
	// Repos lists the team repos to clone ("owner/name", space separated).
	Repos = "HUBGATE_REPOS"
	// GitURL is the git host's web address the repos are cloned from.
	GitURL = "HUBGATE_GIT_URL"
	// GitHubToken is the user's GitHub token, for private repos.
	GitHubToken = "GITHUB_TOKEN"
)
