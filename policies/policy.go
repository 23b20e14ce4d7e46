// Package policies reads, validates and hot-reloads hubgate's policy: the
// admin-edited YAML file (or folder of files) that says who the admins are,
// which images users may start, which teams exist, who is in them (by name
// or by identity-provider group), which GitHub repos they get, and which
// resource limits and timeouts apply.
//
// A Policy is built whole by Load or Parse, validated up front (every
// problem is reported, with file, line and field), and never mutated
// afterwards, so it can be shared by any number of goroutines without
// locking. A Watcher keeps the current Policy behind an atomic pointer and
// swaps in a new one only when a reload succeeds: a bad edit is reported
// and the last good policy stays in force.
//
// The package knows nothing of HTTP; it is used by the Caddy module.
package policies

import (
	"crypto/sha256"
	"encoding/hex"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/hubgate/hubgate/policies/username"
)

// Policy is one validated, immutable policy. Never mutate it, or anything
// it points to, after Load or Parse returns it: it is read concurrently by
// every request.
type Policy struct {
	// Admins are the canonical (normalized) user names of the admins, sorted.
	Admins []string

	// Accounts are the local accounts: canonical user name to bcrypt hash,
	// exactly as `caddy hash-password` prints it ("$2a$14$...").
	Accounts map[string]string

	// Images are the images users may be granted, by image key. The key is
	// the {server} in /user/{name}/{server}/.
	Images map[string]*Image

	// Teams are the teams, by team name.
	Teams map[string]*Team

	// APITokens maps an API token's name to the hex SHA-256 of the token
	// (64 lower-case hex characters). The tokens themselves are never
	// stored; see LookupAPIToken.
	APITokens map[string]string

	// Services are the team services, by name (see Service).
	Services map[string]*Service

	// DefaultLimits are the limits of teams that do not set them, field by
	// field: the policy's defaults.limits, where a field it leaves out (or
	// a policy without defaults) takes the built-in DefaultMemory and
	// DefaultPids (no CPU limit). Every Team's Limits have them filled in.
	DefaultLimits Limits

	// Files are the files the policy was loaded from, in load order.
	Files []string

	// Retention is how long the home of a user who is no longer in the
	// policy is kept before it is backed up a last time and deleted. Zero
	// (the default, or "forever" in YAML) keeps every home forever.
	Retention time.Duration
	// Hash identifies the policy's text: "sha256:" and the hex SHA-256 of
	// its files' names and contents in load order (each length-prefixed),
	// so two gateways with the same files report the same hash.
	Hash string

	// Derived indices, built once by Load/Parse.
	admins   map[string]struct{}
	byMember map[string][]*Team // canonical user name -> teams, sorted by name
	byGroup  map[string][]*Team // normalized group -> teams, sorted by name
	byToken  map[string]string  // token hash -> token name

	// decoyHash is the costliest account hash, compared against for users
	// without an account so that they take as long to refuse.
	decoyHash string
}

// Image is one image users may start, under the key that names it in URLs.
type Image struct {
	// Key is the image key, filled from the key of the "images" mapping.
	Key string

	// Image is the container image reference, such as
	// "hubgate/jupyterlab:latest". Required.
	Image string

	// Port is the TCP port the app listens on inside the container,
	// 1 to 65535. Default: 8888.
	Port int

	// Description is shown to users on the home page. Optional.
	Description string

	// Command, if set, replaces the image's default command.
	Command []string

	// Env is extra environment for the container. Names match
	// [A-Za-z_][A-Za-z0-9_]* and never start with HUBGATE_ or JUPYTERHUB_
	// (those are set by hubgate).
	Env map[string]string

	// Home is the absolute path where the user's volume is mounted.
	// Default: "/home/hubgate".
	Home string

	// URL is the path opened first, relative to the server's prefix
	// /user/{name}/{server}; it always starts with "/". Default: "/".
	URL string

	// ReadOnly mounts the image's root filesystem read-only, with a fresh
	// tmpfs at /tmp; the user's home volume stays writable. Default: false.
	ReadOnly bool

	// CapAdd are the Linux capabilities given back to the image's
	// containers, which otherwise run with none (and no-new-privileges):
	// upper-case names without "CAP_", such as "NET_BIND_SERVICE", sorted.
	// In YAML "cap_add", names in any case, with or without "CAP_".
	CapAdd []string

	// The fields below matter on a cluster (the Kubernetes backend); the
	// Docker backend ignores them.

	// Pull says when the cluster pulls the image: PullAlways,
	// PullIfMissing or PullNever ("always", "if_missing", "never"). Empty
	// means the backend's default (if_missing).
	Pull string

	// NodeSelector restricts the image's pods to nodes with all these
	// labels, such as {"nvidia.com/gpu.present": "true"}.
	NodeSelector map[string]string

	// Tolerations let the image's pods run on tainted nodes (GPU nodes).
	Tolerations []Toleration

	// ExtendedResources are countable node resources each pod needs, by
	// resource name, such as {"nvidia.com/gpu": 1}; 1 to 1024 each.
	ExtendedResources map[string]int64
}

// Limits are the resource limits of a user's container. A zero field means
// unset (no limit).
type Limits struct {
	// Memory is the memory limit in bytes; at least 6 MiB when set. In YAML
	// it is a plain number of bytes or a number with a unit: K, M, G, T
	// (and KB, MB, GB, TB) are powers of 1000, Ki, Mi, Gi, Ti (and KiB, MiB,
	// GiB, TiB) powers of 1024, as in Kubernetes. Units are
	// case-insensitive.
	Memory int64

	// CPUs is the number of CPUs, such as 2 or 0.5; more than 0 and at most
	// 1024 when set.
	CPUs float64

	// Pids is the maximum number of processes; at least 16 when set.
	Pids int64
}

// Team grants its members a set of images, repos, limits and timeouts.
type Team struct {
	// Name is the team name, filled from the key of the "teams" mapping.
	Name string

	// Members are the canonical user names of the members, sorted and
	// deduplicated.
	Members []string

	// Groups are identity-provider groups whose members are in the team,
	// in the form "kind:name", such as "github:org/team" or
	// "oidc:researchers"; sorted and deduplicated. Groups whose kind is
	// "github" are lower-cased, since GitHub names are case-insensitive;
	// see NormalizeGroup.
	Groups []string

	// Images are keys into Policy.Images, sorted and deduplicated.
	Images []string

	// Repos are "owner/name" GitHub repositories cloned into the user's
	// space, sorted and deduplicated.
	Repos []string

	// Limits are the resource limits of the members' containers; fields
	// the team does not set come from Policy.DefaultLimits, and a field set
	// to 0 means no limit.
	Limits Limits

	// IdleTimeout is how long a server may go without activity before it
	// is stopped. Zero means never. In YAML a Go duration such as "2h" or
	// "30m".
	IdleTimeout time.Duration

	// MaxAge is how long a server may run at all before it is stopped.
	// Zero means no limit. In YAML a Go duration such as "24h".
	MaxAge time.Duration

	// GitHubToken says whether the user's GitHub token is handed to the
	// container (so it can clone private Repos). It is only allowed on a
	// team with repos.
	GitHubToken bool

	// Egress are the hosts and ports the members' containers may reach
	// through the deployment's egress proxy, as "host:port" or
	// "*.suffix:port" (any name below suffix), lower-case, sorted and
	// deduplicated; see egress.go. Empty means none. It is enforced only
	// where the deployment runs the egress proxy (the hubgate directive's
	// egress block).
	Egress []string
	// services are the services naming the team, sorted (derived).
	services []string
	// Storage is the quota on each member's home size (storage.go).
	Storage Storage
}

// Grant is what a user gets from the policy.
//
// The rule: a user is in a team if they are one of its members or in one of
// its groups. The grant is the union of the images, repos and egress
// rules of every team the user is in; for each limit the largest value of those teams, where 0
// (unlimited) counts as the largest; the longest idle timeout, where 0
// (never idle-culled) counts as the longest; the longest max age, where 0
// (no maximum) counts as the longest; and GitHubToken is true if any of
// those teams that has repos grants it. Admin is true if the user is one of
// the policy's admins, whether or not they are in any team. Teams, Images
// and Repos are sorted and deduplicated, and never nil; Egress is sorted
// and deduplicated, nil when empty.
type Grant struct {
	// User is the canonical user name the grant is for.
	User string

	// Admin says the user is one of the policy's admins.
	Admin bool

	// Teams are the names of the teams the user is in.
	Teams []string

	// Images are the keys of the images the user may start.
	Images []string

	// Repos are the GitHub repos ("owner/name") cloned for the user.
	Repos []string

	// Limits are the resource limits of the user's containers; a zero
	// field means no limit.
	Limits Limits

	// IdleTimeout is how long the user's servers may idle before they are
	// stopped; zero means never.
	IdleTimeout time.Duration

	// MaxAge is how long the user's servers may run at all; zero means no
	// limit.
	MaxAge time.Duration

	// GitHubToken says whether the user's GitHub token is handed to their
	// containers.
	GitHubToken bool

	// Egress are the hosts and ports the user's containers may reach
	// through the egress proxy: the union of their teams' egress lists.
	Egress []string
	// Services are the team services the user may use (nil: none).
	Services []string
	// Storage is the quota on the user's home, the largest of their
	// teams' (0, no limit, counts as the largest).
	Storage Storage
	// PolicyHash is the Hash of the policy that made the grant, for the
	// provenance of the servers it starts.
	PolicyHash string
}

// CanonicalUser returns the canonical form of a user name (lower-cased) or
// why it cannot be one: hubgate's one user-name rule, username.Canonical,
// which refuses look-alikes (a Kelvin sign, a dotted capital I, full-width
// letters, invisible characters, mixed scripts) rather than folding them.
// Every user name in a Policy is in this form, and the methods of Policy
// expect user names in this form. Identities from identity providers go
// through it: a name it refuses must not log in.
func CanonicalUser(raw string) (string, error) {
	return username.Canonical(raw)
}

// NormalizeUser is CanonicalUser for lookups of names typed by a person (a
// login form, the admin page, a URL path): surrounding ASCII white space is
// trimmed first, and a name CanonicalUser refuses becomes "", which is no
// one's name.
func NormalizeUser(name string) string {
	c, err := username.Canonical(strings.Trim(name, " \t\r\n"))
	if err != nil {
		return ""
	}
	return c
}

// NormalizeGroup returns the canonical form of an identity-provider group
// name: trimmed of surrounding white space and, for groups of kind
// "github" (such as "github:Org/Team"), lower-cased, since GitHub org and
// team names are case-insensitive. Other kinds (such as "oidc:") are
// case-sensitive and kept as they are. The Policy methods normalize the
// groups they are given, so callers need not.
func NormalizeGroup(group string) string {
	g := strings.TrimSpace(group)
	if len(g) >= len("github:") && strings.EqualFold(g[:len("github:")], "github:") {
		return strings.ToLower(g)
	}
	return g
}

// IsAdmin reports whether user (in canonical form) is an admin.
func (p *Policy) IsAdmin(user string) bool {
	if p == nil {
		return false
	}
	_, ok := p.admins[user]
	return ok
}

// Known reports whether user (in canonical form), who is in the given
// identity-provider groups, is an admin or in some team. Users who are not
// known should not be let in at all.
func (p *Policy) Known(user string, groups []string) bool {
	if p == nil {
		return false
	}
	if _, ok := p.admins[user]; ok {
		return true
	}
	if len(p.byMember[user]) > 0 {
		return true
	}
	for _, g := range groups {
		if len(p.byGroup[NormalizeGroup(g)]) > 0 {
			return true
		}
	}
	return false
}

// Allowed reports whether some team of user (in canonical form), who is in
// the given identity-provider groups, allows the image with the given key.
// Being an admin does not by itself allow any image.
func (p *Policy) Allowed(user string, groups []string, image string) bool {
	if p == nil {
		return false
	}
	for _, t := range p.byMember[user] {
		if slices.Contains(t.Images, image) {
			return true
		}
	}
	for _, g := range groups {
		for _, t := range p.byGroup[NormalizeGroup(g)] {
			if slices.Contains(t.Images, image) {
				return true
			}
		}
	}
	return false
}

// Grant returns what user (in canonical form), who is in the given
// identity-provider groups, gets from the policy; see the Grant type for
// the rule. It costs time in proportion to the teams the user is in, not to
// all the teams of the policy.
func (p *Policy) Grant(user string, groups []string) Grant {
	g := Grant{User: user, Teams: []string{}, Images: []string{}, Repos: []string{}}
	if p == nil {
		return g
	}
	_, g.Admin = p.admins[user]
	g.PolicyHash = p.Hash

	teams := slices.Clone(p.byMember[user])
	for _, grp := range groups {
		for _, t := range p.byGroup[NormalizeGroup(grp)] {
			if !slices.Contains(teams, t) {
				teams = append(teams, t)
			}
		}
	}
	for i, t := range teams {
		first := i == 0
		g.Teams = append(g.Teams, t.Name)
		g.Images = append(g.Images, t.Images...)
		g.Repos = append(g.Repos, t.Repos...)
		g.Egress = append(g.Egress, t.Egress...)
		g.Services = append(g.Services, t.services...)
		g.Limits.Memory = largest(g.Limits.Memory, t.Limits.Memory, first)
		g.Limits.CPUs = largest(g.Limits.CPUs, t.Limits.CPUs, first)
		g.Limits.Pids = largest(g.Limits.Pids, t.Limits.Pids, first)
		g.IdleTimeout = largest(g.IdleTimeout, t.IdleTimeout, first)
		g.MaxAge = largest(g.MaxAge, t.MaxAge, first)
		g.Storage = largestStorage(g.Storage, t.Storage, first)
		if t.GitHubToken && len(t.Repos) > 0 {
			g.GitHubToken = true
		}
	}
	g.Teams = sortedUnique(g.Teams)
	g.Images = sortedUnique(g.Images)
	g.Repos = sortedUnique(g.Repos)
	g.Egress = sortedUnique(g.Egress)
	g.Services = sortedUnique(g.Services)
	return g
}

// largest folds v into acc, where 0 means unlimited and so beats any other
// value; first says v is the first value (acc is not yet meaningful).
func largest[T int64 | float64 | time.Duration](acc, v T, first bool) T {
	if first {
		return v
	}
	if acc == 0 || v == 0 {
		return 0
	}
	return max(acc, v)
}

// LookupAPIToken returns the name under which the policy lists the given
// API token (the token itself, not its hash), and whether it does.
func (p *Policy) LookupAPIToken(token string) (name string, ok bool) {
	if p == nil || token == "" {
		return "", false
	}
	sum := sha256.Sum256([]byte(token))
	name, ok = p.byToken[hex.EncodeToString(sum[:])]
	return name, ok
}

// CheckPassword reports whether user (in canonical form) has a local
// account whose bcrypt hash matches password. It is deliberately slow
// (bcrypt), and as slow for users without an account, so that response
// times do not tell which accounts exist.
func (p *Policy) CheckPassword(user, password string) bool {
	if p == nil {
		return false
	}
	hash, ok := p.Accounts[user]
	if !ok {
		if p.decoyHash != "" {
			// Spend the same time, and say no whatever the result.
			_ = bcrypt.CompareHashAndPassword([]byte(p.decoyHash), []byte(password))
		}
		return false
	}
	return bcrypt.CompareHashAndPassword([]byte(hash), []byte(password)) == nil
}

// Summary describes the policy in one line, for logs and the admin page,
// such as "3 teams, 2 images, 5 members, 1 admin, 2 local accounts from
// policy.yaml". Members counts distinct user names listed in teams (not
// users who are in a team through a group).
func (p *Policy) Summary() string {
	if p == nil {
		return "no policy"
	}
	s := plural(len(p.Teams), "team") + ", " +
		plural(len(p.Images), "image") + ", " +
		plural(len(p.byMember), "member") + ", " +
		plural(len(p.Admins), "admin") + ", " +
		plural(len(p.Accounts), "local account")
	if len(p.Files) > 0 {
		s += " from " + strings.Join(p.Files, ", ")
	}
	return s
}

func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return strconv.Itoa(n) + " " + noun + "s"
}

// sortedUnique sorts s in place and removes duplicates.
func sortedUnique(s []string) []string {
	slices.Sort(s)
	return slices.Compact(s)
}

// index builds the derived lookup tables. It must run before the policy is
// published.
func (p *Policy) index() {
	p.admins = make(map[string]struct{}, len(p.Admins))
	for _, a := range p.Admins {
		p.admins[a] = struct{}{}
	}
	p.byMember = make(map[string][]*Team)
	p.byGroup = make(map[string][]*Team)
	names := make([]string, 0, len(p.Teams))
	for name := range p.Teams {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		t := p.Teams[name]
		for _, m := range t.Members {
			p.byMember[m] = append(p.byMember[m], t)
		}
		for _, g := range t.Groups {
			p.byGroup[g] = append(p.byGroup[g], t)
		}
	}
	decoyCost := 0
	for _, hash := range p.Accounts {
		if cost, err := bcrypt.Cost([]byte(hash)); err == nil && cost > decoyCost {
			p.decoyHash, decoyCost = hash, cost
		}
	}
	p.byToken = make(map[string]string, len(p.APITokens))
	for name, hash := range p.APITokens {
		p.byToken[hash] = name
	}
}
