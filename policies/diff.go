package policies

import (
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"
)

// PolicyDiff is what a policy change does to people's access; Diff makes
// it. Users are the users named in either policy (members, admins, local
// accounts); users who are in a team only through an identity-provider
// group cannot be listed, so Teams says what each team's group members
// gain or lose. Only subjects with changes are listed, each sorted by
// name.
type PolicyDiff struct {
	// Users are the named users whose grant changes.
	Users []UserDiff `json:"users"`
	// Teams are the teams whose groups or grants change, for users who are
	// in them through a group. Teams without groups in either policy are
	// left out: their members are all in Users.
	Teams []TeamDiff `json:"teams"`
	// Images are the image definitions added, removed or changed.
	Images []SubjectDiff `json:"images"`
	// APITokens are the API tokens added, removed or replaced.
	APITokens []SubjectDiff `json:"api_tokens"`
	// Services are the team services added, removed or changed.
	Services []SubjectDiff `json:"services"`
}

// UserDiff is what one named user gains or loses.
type UserDiff struct {
	User    string   `json:"user"`
	Changes []Change `json:"changes"`
}

// TeamDiff is what the group members of one team gain or lose from that
// team (their whole grant also depends on their other teams).
type TeamDiff struct {
	Team string `json:"team"`
	// Status is "added", "removed" or "changed".
	Status string `json:"status"`
	// Groups are the team's groups (the new policy's, or the old one's for
	// a removed team).
	Groups  []string `json:"groups"`
	Changes []Change `json:"changes"`
}

// SubjectDiff is a change to a named thing that is not a user or team.
type SubjectDiff struct {
	Name    string   `json:"name"`
	Changes []Change `json:"changes"`
}

// Change is one gain, loss or change. Op is "+" (gained), "-" (lost), "~"
// (changed from From to To, or just changed when both are empty), or "="
// (a limit or timeout that comes with newly gained access). What names the thing: "access", "admin",
// "team", "image", "repo", "github_token", "local_account", "group",
// "limits.memory", "limits.cpus", "limits.pids", "idle_timeout", "max_age",
// "storage.soft", "storage.hard", "egress" (a host:port rule), "service",
// or for images "image", "port",
// "command", "env", "home", "url", for services "service", "url", "team",
// "strip_prefix".
type Change struct {
	What  string `json:"what"`
	Op    string `json:"op"`
	Value string `json:"value,omitempty"`
	From  string `json:"from,omitempty"`
	To    string `json:"to,omitempty"`
}

// String renders a change as "+ team research", "- admin" or
// "limits memory 4GiB -> 8GiB".
func (c Change) String() string {
	what := strings.ReplaceAll(strings.ReplaceAll(c.What, ".", " "), "_", " ")
	switch c.Op {
	case "~":
		if c.From == "" && c.To == "" {
			if c.Value != "" {
				what += " " + c.Value
			}
			return what + " changed"
		}
		return what + " " + c.From + " -> " + c.To
	case "=":
		return what + " " + c.Value
	default:
		if c.Value == "" {
			return c.Op + " " + what
		}
		return c.Op + " " + what + " " + c.Value
	}
}

// Empty reports whether the change alters nobody's access.
func (d PolicyDiff) Empty() bool {
	return len(d.Users) == 0 && len(d.Teams) == 0 && len(d.Images) == 0 && len(d.APITokens) == 0 && len(d.Services) == 0
}

// Lines renders the diff one subject per line, in a stable order: users,
// then teams, images and API tokens, such as
//
//	alice: + team research; + image rstudio; - repo org/x; limits memory 4GiB -> 8GiB
//	team research (via groups oidc:researchers): + image rstudio
//
// followed by a note on group members when there are team lines. A diff
// with no changes is the single line "no access changes".
func (d PolicyDiff) Lines() []string {
	if d.Empty() {
		return []string{"no access changes"}
	}
	var out []string
	for _, u := range d.Users {
		out = append(out, u.User+": "+joinChanges(u.Changes))
	}
	for _, t := range d.Teams {
		head := "team " + t.Team
		if len(t.Groups) > 0 {
			head += " (via groups " + strings.Join(t.Groups, ", ") + ")"
		}
		if t.Status != "changed" {
			head += " " + t.Status
		}
		out = append(out, head+": "+joinChanges(t.Changes))
	}
	for _, i := range d.Images {
		out = append(out, "image "+i.Name+": "+joinChanges(i.Changes))
	}
	for _, a := range d.APITokens {
		out = append(out, "api token "+a.Name+": "+joinChanges(a.Changes))
	}
	for _, s := range d.Services {
		out = append(out, "service "+s.Name+": "+joinChanges(s.Changes))
	}
	if len(d.Teams) > 0 {
		out = append(out, "note: users in a team only through a group cannot be listed; the team lines say what such users gain or lose from that team")
	}
	return out
}

// Text is Lines, one per line.
func (d PolicyDiff) Text() string {
	return strings.Join(d.Lines(), "\n") + "\n"
}

func joinChanges(cs []Change) string {
	s := make([]string, len(cs))
	for i, c := range cs {
		s[i] = c.String()
	}
	return strings.Join(s, "; ")
}

// Diff says what changing the policy from old to new does to access. Either
// may be nil, meaning no policy (nobody gets anything).
func Diff(old, new *Policy) PolicyDiff {
	if old == nil {
		old = &Policy{}
		old.index()
	}
	if new == nil {
		new = &Policy{}
		new.index()
	}
	d := PolicyDiff{Users: []UserDiff{}, Teams: []TeamDiff{}, Images: []SubjectDiff{}, APITokens: []SubjectDiff{}, Services: []SubjectDiff{}}
	for _, u := range namedUsers(old, new) {
		if cs := userChanges(old, new, u); len(cs) > 0 {
			d.Users = append(d.Users, UserDiff{User: u, Changes: cs})
		}
	}
	for _, name := range unionKeys(old.Teams, new.Teams) {
		if td, ok := teamDiff(name, old.Teams[name], new.Teams[name]); ok {
			d.Teams = append(d.Teams, td)
		}
	}
	for _, key := range unionKeys(old.Images, new.Images) {
		if cs := imageChanges(old.Images[key], new.Images[key]); len(cs) > 0 {
			d.Images = append(d.Images, SubjectDiff{Name: key, Changes: cs})
		}
	}
	for _, name := range unionKeys(old.APITokens, new.APITokens) {
		o, inOld := old.APITokens[name]
		n, inNew := new.APITokens[name]
		var c Change
		switch {
		case inOld && !inNew:
			c = Change{What: "token", Op: "-"}
		case !inOld && inNew:
			c = Change{What: "token", Op: "+"}
		case o != n:
			c = Change{What: "token", Op: "~"}
		default:
			continue
		}
		d.APITokens = append(d.APITokens, SubjectDiff{Name: name, Changes: []Change{c}})
	}
	for _, name := range unionKeys(old.Services, new.Services) {
		if cs := serviceChanges(old.Services[name], new.Services[name]); len(cs) > 0 {
			d.Services = append(d.Services, SubjectDiff{Name: name, Changes: cs})
		}
	}
	return d
}

// namedUsers are the users either policy names, sorted.
func namedUsers(ps ...*Policy) []string {
	set := map[string]struct{}{}
	for _, p := range ps {
		for _, a := range p.Admins {
			set[a] = struct{}{}
		}
		for u := range p.Accounts {
			set[u] = struct{}{}
		}
		for u := range p.byMember {
			set[u] = struct{}{}
		}
	}
	return slices.Sorted(maps.Keys(set))
}

// userChanges compares a named user's grants (by membership only; their
// groups are not known here).
func userChanges(old, new *Policy, user string) []Change {
	var cs []Change
	wasIn, isIn := old.Known(user, nil), new.Known(user, nil)
	switch {
	case !wasIn && isIn:
		cs = append(cs, Change{What: "access", Op: "+"})
	case wasIn && !isIn:
		cs = append(cs, Change{What: "access", Op: "-"})
	}
	o, n := old.Grant(user, nil), new.Grant(user, nil)
	cs = append(cs, flagChange("admin", o.Admin, n.Admin)...)
	cs = append(cs, listChanges("team", o.Teams, n.Teams)...)
	cs = append(cs, grantChanges(o, n)...)
	oh, inOld := old.Accounts[user]
	nh, inNew := new.Accounts[user]
	switch {
	case !inOld && inNew:
		cs = append(cs, Change{What: "local_account", Op: "+"})
	case inOld && !inNew:
		cs = append(cs, Change{What: "local_account", Op: "-"})
	case inOld && oh != nh:
		cs = append(cs, Change{What: "local_account password", Op: "~"})
	}
	return cs
}

// grantChanges compares what two grants give: images, repos, the GitHub
// token, limits and timeouts. Add new grant fields here.
func grantChanges(o, n Grant) []Change {
	var cs []Change
	cs = append(cs, listChanges("image", o.Images, n.Images)...)
	cs = append(cs, listChanges("repo", o.Repos, n.Repos)...)
	cs = append(cs, listChanges("service", o.Services, n.Services)...)
	cs = append(cs, flagChange("github_token", o.GitHubToken, n.GitHubToken)...)
	cs = append(cs, listChanges("egress", o.Egress, n.Egress)...)
	// Limits and timeouts matter only while the user has some access: on
	// gaining access the ones that are set are listed, on losing all of it
	// none.
	if len(o.Teams) == 0 && len(n.Teams) > 0 {
		set := func(what string, zero bool, text string) {
			if !zero {
				cs = append(cs, Change{What: what, Op: "=", Value: text})
			}
		}
		set("limits.memory", n.Limits.Memory == 0, bytesText(n.Limits.Memory))
		set("limits.cpus", n.Limits.CPUs == 0, cpusText(n.Limits.CPUs))
		set("limits.pids", n.Limits.Pids == 0, countText(n.Limits.Pids))
		set("idle_timeout", n.IdleTimeout == 0, durationText(n.IdleTimeout, ""))
		set("max_age", n.MaxAge == 0, durationText(n.MaxAge, ""))
		set("storage.soft", n.Storage.Soft == 0, bytesText(n.Storage.Soft))
		set("storage.hard", n.Storage.Hard == 0, bytesText(n.Storage.Hard))
	}
	if len(o.Teams) > 0 && len(n.Teams) > 0 {
		cs = append(cs, valueChange("limits.memory", bytesText(o.Limits.Memory), bytesText(n.Limits.Memory))...)
		cs = append(cs, valueChange("limits.cpus", cpusText(o.Limits.CPUs), cpusText(n.Limits.CPUs))...)
		cs = append(cs, valueChange("limits.pids", countText(o.Limits.Pids), countText(n.Limits.Pids))...)
		cs = append(cs, valueChange("idle_timeout", durationText(o.IdleTimeout, "never"), durationText(n.IdleTimeout, "never"))...)
		cs = append(cs, valueChange("max_age", durationText(o.MaxAge, "none"), durationText(n.MaxAge, "none"))...)
		cs = append(cs, valueChange("storage.soft", bytesText(o.Storage.Soft), bytesText(n.Storage.Soft))...)
		cs = append(cs, valueChange("storage.hard", bytesText(o.Storage.Hard), bytesText(n.Storage.Hard))...)
	}
	return cs
}

// teamGrant is what a team alone gives its members.
func teamGrant(t *Team) Grant {
	if t == nil {
		return Grant{}
	}
	return Grant{
		Teams: []string{t.Name}, Images: t.Images, Repos: t.Repos, Egress: t.Egress, Services: t.services,
		Limits: t.Limits, IdleTimeout: t.IdleTimeout, MaxAge: t.MaxAge, Storage: t.Storage,
		GitHubToken: t.GitHubToken && len(t.Repos) > 0,
	}
}

// teamDiff compares one team for its group members; ok is false when
// there is nothing to say (no groups either side, or no change).
func teamDiff(name string, o, n *Team) (TeamDiff, bool) {
	var og, ng []string
	if o != nil {
		og = o.Groups
	}
	if n != nil {
		ng = n.Groups
	}
	if len(og) == 0 && len(ng) == 0 {
		return TeamDiff{}, false
	}
	td := TeamDiff{Team: name, Status: "changed", Groups: ng}
	switch {
	case o == nil:
		td.Status = "added"
	case n == nil:
		td.Status, td.Groups = "removed", og
	}
	og2, ng2 := teamGrant(o), teamGrant(n)
	td.Changes = append(listChanges("group", og, ng), grantChanges(og2, ng2)...)
	if len(td.Changes) == 0 {
		return TeamDiff{}, false
	}
	return td, true
}

// imageChanges compares two definitions of one image key.
func imageChanges(o, n *Image) []Change {
	switch {
	case o == nil && n == nil:
		return nil
	case o == nil:
		return []Change{{What: "image", Op: "+", Value: n.Image}}
	case n == nil:
		return []Change{{What: "image", Op: "-", Value: o.Image}}
	}
	var cs []Change
	cs = append(cs, valueChange("image", o.Image, n.Image)...)
	cs = append(cs, valueChange("port", strconv.Itoa(o.Port), strconv.Itoa(n.Port))...)
	cs = append(cs, valueChange("home", o.Home, n.Home)...)
	cs = append(cs, valueChange("url", o.URL, n.URL)...)
	if !slices.Equal(o.Command, n.Command) {
		cs = append(cs, Change{What: "command", Op: "~"})
	}
	// Env values may be sensitive: name the variables only.
	for _, k := range unionKeys(o.Env, n.Env) {
		ov, inOld := o.Env[k]
		nv, inNew := n.Env[k]
		switch {
		case !inOld:
			cs = append(cs, Change{What: "env", Op: "+", Value: k})
		case !inNew:
			cs = append(cs, Change{What: "env", Op: "-", Value: k})
		case ov != nv:
			cs = append(cs, Change{What: "env", Op: "~", Value: k})
		}
	}
	return cs
}

// listChanges lists what is in b and not a (+), then in a and not b (-).
func listChanges(what string, a, b []string) []Change {
	var cs []Change
	for _, v := range b {
		if !slices.Contains(a, v) {
			cs = append(cs, Change{What: what, Op: "+", Value: v})
		}
	}
	for _, v := range a {
		if !slices.Contains(b, v) {
			cs = append(cs, Change{What: what, Op: "-", Value: v})
		}
	}
	return cs
}

func flagChange(what string, a, b bool) []Change {
	switch {
	case !a && b:
		return []Change{{What: what, Op: "+"}}
	case a && !b:
		return []Change{{What: what, Op: "-"}}
	}
	return nil
}

func valueChange(what, a, b string) []Change {
	if a == b {
		return nil
	}
	return []Change{{What: what, Op: "~", From: a, To: b}}
}

func unionKeys[V any](a, b map[string]V) []string {
	set := make(map[string]struct{}, len(a)+len(b))
	for k := range a {
		set[k] = struct{}{}
	}
	for k := range b {
		set[k] = struct{}{}
	}
	return slices.Sorted(maps.Keys(set))
}

// bytesText renders a memory limit: "4GiB", "1.5GiB", "500MB", "unlimited".
func bytesText(n int64) string {
	if n <= 0 {
		return "unlimited"
	}
	for _, u := range []struct {
		name string
		size int64
	}{{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}, {"TB", 1e12}, {"GB", 1e9}, {"MB", 1e6}, {"KB", 1e3}} {
		if n%u.size == 0 {
			return strconv.FormatInt(n/u.size, 10) + u.name
		}
	}
	if n >= 1<<30 {
		return strconv.FormatFloat(float64(n)/(1<<30), 'f', -1, 64) + "GiB"
	}
	return strconv.FormatInt(n, 10) + "B"
}

func cpusText(f float64) string {
	if f <= 0 {
		return "unlimited"
	}
	return strconv.FormatFloat(f, 'f', -1, 64)
}

func countText(n int64) string {
	if n <= 0 {
		return "unlimited"
	}
	return strconv.FormatInt(n, 10)
}

// durationText renders "2h", "1h30m", "45s", or zero as given.
func durationText(d time.Duration, zero string) string {
	if d <= 0 {
		return zero
	}
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}
