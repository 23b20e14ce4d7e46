package policies

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"golang.org/x/crypto/bcrypt"
	"gopkg.in/yaml.v3"
)

// The fields each mapping of the policy file may have.
var (
	topFields    = []string{"admins", "accounts", "images", "teams", "api_tokens", "defaults", "services", "retention"}
	imageFields  = []string{"image", "port", "description", "command", "env", "home", "url", "read_only", "cap_add", "pull", "node_selector", "tolerations", "extended_resources"}
	teamFields   = []string{"members", "groups", "images", "repos", "limits", "idle_timeout", "max_age", "github_token", "egress", "storage"}
	limitsFields = []string{"memory", "cpus", "pids"}
)

// Defaults of image fields.
const (
	DefaultPort = 8888
	DefaultHome = "/home/hubgate"
	DefaultURL  = "/"
)

// Bounds of limits.
const (
	minMemory = 6 << 20 // Docker refuses less
	maxCPUs   = 1024
	minPids   = 16
)

var (
	keyRE       = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,30}[a-z0-9])?$`)
	envNameRE   = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	tokenNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)
	repoOwnerRE = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9-]{0,38})$`)
	repoNameRE  = regexp.MustCompile(`^[A-Za-z0-9._-]{1,100}$`)
	simpleKeyRE = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)
	yamlLineRE  = regexp.MustCompile(`(?s)^yaml: line (\d+): (.*)$`)
)

// def is one named thing defined in a file, with where it was defined.
type def[T any] struct {
	name string
	at   pos
	val  T
}

// imageRef is a team's reference to an image key, checked once every file
// is merged.
type imageRef struct {
	field string
	at    pos
	key   string
}

// fragment is what one policy file contributes to a policy.
type fragment struct {
	admins   []string
	accounts []def[string]
	images   []def[*Image]
	teams    []def[*Team]
	tokens   []def[string]
	refs     []imageRef
	defaults []def[limitsDef]
	teamSet  map[*Team]limitsSet // which limits each team wrote
	services []def[*Service]
	teamRefs []teamRef
	// retention is the top-level retention (see storage.go).
	retention []def[time.Duration]
}

// parser walks one YAML document and collects its contents and problems.
type parser struct {
	file  string
	frag  fragment
	probs Errors
}

// parseFile parses and validates one file, except for references to images
// (which may be defined in another file).
func parseFile(file string, data []byte) (*fragment, Errors) {
	p := &parser{file: file}
	if len(data) > MaxFileBytes {
		p.probs = append(p.probs, tooLarge(file, int64(len(data))))
		return &p.frag, p.probs
	}
	root, ok := p.decode(data)
	if !ok || root == nil || !p.checkBudget(root) {
		return &p.frag, p.probs
	}
	p.top(root)
	return &p.frag, p.probs
}

// decode parses data into a YAML node tree and returns its root value, or
// nil for an empty document.
func (p *parser) decode(data []byte) (root *yaml.Node, ok bool) {
	defer func() {
		// yaml.v3 has panicked on malformed input before; never let a
		// policy file crash the gateway.
		if r := recover(); r != nil {
			p.probs = append(p.probs, Problem{File: p.file, Message: fmt.Sprintf("invalid YAML: %v", r)})
			root, ok = nil, false
		}
	}()
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, true
		}
		p.syntax(err, data)
		return nil, false
	}
	var extra yaml.Node
	switch err := dec.Decode(&extra); {
	case err == nil:
		p.add(&extra, "", "a policy file holds one YAML document; found another (remove the \"---\" or split the file)")
		return nil, false
	case !errors.Is(err, io.EOF):
		p.syntax(err, data)
		return nil, false
	}
	root = &doc
	if doc.Kind == yaml.DocumentNode {
		if len(doc.Content) == 0 {
			return nil, true
		}
		root = doc.Content[0]
	}
	root = resolve(root)
	if isNull(root) {
		return nil, true
	}
	return root, true
}

// syntax records a YAML syntax error with its line. yaml.v3 reports the
// 0-based line for parser errors, the 1-based line for scanner errors, and
// no line when that would be 0 or when it does not know it; this sorts that
// out as well as it can.
func (p *parser) syntax(err error, data []byte) {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	line := 0
	if m := yamlLineRE.FindStringSubmatch(err.Error()); m != nil {
		line, _ = strconv.Atoi(m[1])
		msg = m[2]
	}
	switch {
	case isParserError(msg):
		line++
	case line > 0:
	case strings.HasPrefix(msg, "unknown anchor '"):
		line = lineOf(data, "*"+strings.TrimSuffix(strings.TrimPrefix(msg, "unknown anchor '"), "' referenced"))
	case strings.HasPrefix(msg, "anchor '"):
		line = lineOf(data, "&"+strings.TrimSuffix(strings.TrimPrefix(msg, "anchor '"), "' value contains itself"))
	case isReaderError(msg):
		line = badCharLine(data)
	default: // a scanner error on the first line
		line = 1
	}
	p.probs = append(p.probs, Problem{File: p.file, Line: line, Message: "invalid YAML: " + msg})
}

func isParserError(msg string) bool {
	for _, prefix := range []string{"did not find expected ", "found duplicate %", "found incompatible YAML document", "found undefined tag handle"} {
		if strings.HasPrefix(msg, prefix) {
			return true
		}
	}
	return false
}

func isReaderError(msg string) bool {
	return strings.Contains(msg, "UTF-8") || strings.Contains(msg, "UTF-16") || strings.HasPrefix(msg, "control characters") ||
		strings.HasPrefix(msg, "invalid Unicode character") || strings.HasPrefix(msg, "input error")
}

// lineOf returns the 1-based line of the first occurrence of needle in
// data, or 0.
func lineOf(data []byte, needle string) int {
	i := bytes.Index(data, []byte(needle))
	if i < 0 {
		return 0
	}
	return bytes.Count(data[:i], []byte("\n")) + 1
}

// badCharLine returns the 1-based line of the first byte sequence YAML
// does not accept (invalid UTF-8 or a control character), or 0.
func badCharLine(data []byte) int {
	line := 1
	for len(data) > 0 {
		r, size := utf8.DecodeRune(data)
		switch {
		case r == '\n':
			line++
		case r == utf8.RuneError && size <= 1, r < 0x20 && r != '\t' && r != '\r',
			r >= 0x7f && r <= 0x9f && r != 0x85, r == 0xfffe, r == 0xffff:
			return line
		}
		data = data[size:]
	}
	return 0
}

// add records a problem at node n.
func (p *parser) add(n *yaml.Node, field, format string, args ...any) {
	line := 0
	if n != nil {
		line = n.Line
	}
	p.probs = append(p.probs, Problem{File: p.file, Line: line, Field: field, Message: fmt.Sprintf(format, args...)})
}

func (p *parser) at(n *yaml.Node) pos { return pos{file: p.file, line: n.Line} }

// top walks the top-level mapping.
func (p *parser) top(root *yaml.Node) {
	if root.Kind != yaml.MappingNode {
		p.add(root, "", "expected a mapping with %s at the top level, got %s", strings.Join(topFields, ", "), describe(root))
		return
	}
	for _, e := range p.entries(root, "") {
		field := joinField("", e.key.Value)
		if !p.known(e.key, field, topFields) || isNull(e.val) {
			continue
		}
		switch e.key.Value {
		case "admins":
			for i, item := range p.list(e.val, field) {
				if u, ok := p.user(item, indexField(field, i)); ok {
					p.frag.admins = append(p.frag.admins, u)
				}
			}
		case "accounts":
			p.accounts(e.val, field)
		case "images":
			for _, img := range p.entries(e.val, field) {
				p.image(img.key, img.val, joinField(field, img.key.Value))
			}
		case "teams":
			for _, t := range p.entries(e.val, field) {
				p.team(t.key, t.val, joinField(field, t.key.Value))
			}
		case "api_tokens":
			p.tokens(e.val, field)
		case "defaults":
			p.defaults(e.key, e.val, field)
		case "services":
			for _, s := range p.entries(e.val, field) {
				p.service(s.key, s.val, joinField(field, s.key.Value))
			}
		case "retention":
			p.retention(e.key, e.val, field)
		}
	}
}

func (p *parser) accounts(n *yaml.Node, field string) {
	for _, e := range p.entries(n, field) {
		f := joinField(field, e.key.Value)
		name, okName := p.userName(e.key, e.key.Value, f)
		hash, ok := p.str(e.val, f)
		if !ok {
			continue
		}
		// Never quote the value: it may be a password pasted by mistake.
		if cost, err := bcrypt.Cost([]byte(hash)); err != nil || len(hash) != 60 || cost < bcrypt.MinCost {
			p.add(resolve(e.val), f, "not a bcrypt hash; generate one with `caddy hash-password` and paste its output")
			continue
		}
		if okName {
			p.frag.accounts = append(p.frag.accounts, def[string]{name: name, at: p.at(e.key), val: hash})
		}
	}
}

func (p *parser) tokens(n *yaml.Node, field string) {
	for _, e := range p.entries(n, field) {
		f := joinField(field, e.key.Value)
		okName := tokenNameRE.MatchString(e.key.Value)
		if !okName {
			p.add(e.key, f, "invalid API token name %q: use 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit", e.key.Value)
		}
		hash, ok := p.str(e.val, f)
		if !ok {
			continue
		}
		// Never quote the value: it may be the token itself.
		if _, err := hex.DecodeString(hash); err != nil || len(hash) != 64 {
			p.add(resolve(e.val), f, "not a SHA-256 hash; give the token's hex SHA-256 (64 hex characters), such as the output of `printf %%s TOKEN | sha256sum`")
			continue
		}
		if okName {
			p.frag.tokens = append(p.frag.tokens, def[string]{name: e.key.Value, at: p.at(e.key), val: strings.ToLower(hash)})
		}
	}
}

func (p *parser) image(key, n *yaml.Node, field string) {
	img := &Image{Key: key.Value, Port: DefaultPort, Home: DefaultHome, URL: DefaultURL}
	if !keyRE.MatchString(key.Value) {
		p.add(key, field, "invalid image key %q: use 1 to 32 lower-case letters, digits or '-', starting and ending with a letter or digit", key.Value)
	}
	hasImage := false
	for _, e := range p.entries(n, field) {
		f := joinField(field, e.key.Value)
		if !p.known(e.key, f, imageFields) || isNull(e.val) {
			continue
		}
		v := resolve(e.val)
		switch e.key.Value {
		case "image":
			hasImage = true
			s, ok := p.str(v, f)
			if !ok {
				continue
			}
			if s == "" || strings.IndexFunc(s, badNameRune) >= 0 || strings.HasPrefix(s, "-") {
				p.add(v, f, "invalid image reference %q", s)
				continue
			}
			img.Image = s
		case "port":
			port, ok := p.integer(v, f)
			if !ok {
				continue
			}
			if port < 1 || port > 65535 {
				p.add(v, f, "port %d out of range 1 to 65535", port)
				continue
			}
			img.Port = int(port)
		case "description":
			if s, ok := p.str(v, f); ok {
				img.Description = s
			}
		case "command":
			for i, item := range p.list(v, f) {
				if s, ok := p.literal(item, indexField(f, i)); ok {
					img.Command = append(img.Command, s)
				}
			}
		case "env":
			img.Env = p.env(v, f)
		case "home":
			s, ok := p.str(v, f)
			if !ok {
				continue
			}
			if !path.IsAbs(s) || path.Clean(s) == "/" || strings.IndexFunc(s, unicode.IsControl) >= 0 {
				p.add(v, f, "invalid home %q: must be an absolute path other than \"/\"", s)
				continue
			}
			img.Home = path.Clean(s)
		case "url":
			s, ok := p.str(v, f)
			if !ok {
				continue
			}
			if !strings.HasPrefix(s, "/") || strings.HasPrefix(s, "//") || strings.IndexFunc(s, badNameRune) >= 0 {
				p.add(v, f, "invalid url %q: must be a path starting with a single \"/\", such as \"/lab\"", s)
				continue
			}
			img.URL = s
		case "read_only":
			img.ReadOnly, _ = p.boolean(v, f)
		case "cap_add":
			img.CapAdd = p.capAdd(v, f)
		case "pull":
			img.Pull = p.pull(v, f)
		case "node_selector":
			img.NodeSelector = p.nodeSelector(v, f)
		case "tolerations":
			img.Tolerations = p.tolerations(v, f)
		case "extended_resources":
			img.ExtendedResources = p.extendedResources(v, f)
		}
	}
	if !hasImage {
		p.add(resolve(n), joinField(field, "image"), "required: the container image to run, such as \"hubgate/jupyterlab:latest\"")
	}
	p.frag.images = append(p.frag.images, def[*Image]{name: key.Value, at: p.at(key), val: img})
}

func (p *parser) env(n *yaml.Node, field string) map[string]string {
	env := make(map[string]string)
	for _, e := range p.entries(n, field) {
		name := e.key.Value
		f := joinField(field, name)
		upper := strings.ToUpper(name)
		switch {
		case !envNameRE.MatchString(name):
			p.add(e.key, f, "invalid environment variable name %q: use letters, digits and '_', not starting with a digit", name)
			continue
		case strings.HasPrefix(upper, "HUBGATE_"), strings.HasPrefix(upper, "JUPYTERHUB_"):
			p.add(e.key, f, "environment variables starting with HUBGATE_ or JUPYTERHUB_ are set by hubgate")
			continue
		}
		v := resolve(e.val)
		if isNull(v) {
			env[name] = ""
			continue
		}
		if s, ok := p.literal(v, f); ok {
			env[name] = s
		}
	}
	return env
}

func (p *parser) team(key, n *yaml.Node, field string) {
	t := &Team{Name: key.Value}
	if !keyRE.MatchString(key.Value) {
		p.add(key, field, "invalid team name %q: use 1 to 32 lower-case letters, digits or '-', starting and ending with a letter or digit", key.Value)
	}
	var tokenNode *yaml.Node
	for _, e := range p.entries(n, field) {
		f := joinField(field, e.key.Value)
		if !p.known(e.key, f, teamFields) || isNull(e.val) {
			continue
		}
		v := resolve(e.val)
		switch e.key.Value {
		case "members":
			for i, item := range p.list(v, f) {
				if u, ok := p.user(item, indexField(f, i)); ok {
					t.Members = append(t.Members, u)
				}
			}
		case "groups":
			for i, item := range p.list(v, f) {
				if g, ok := p.group(item, indexField(f, i)); ok {
					t.Groups = append(t.Groups, g)
				}
			}
		case "images":
			for i, item := range p.list(v, f) {
				fi := indexField(f, i)
				if s, ok := p.str(item, fi); ok {
					t.Images = append(t.Images, s)
					p.frag.refs = append(p.frag.refs, imageRef{field: fi, at: p.at(resolve(item)), key: s})
				}
			}
		case "repos":
			for i, item := range p.list(v, f) {
				if r, ok := p.repo(item, indexField(f, i)); ok {
					t.Repos = append(t.Repos, r)
				}
			}
		case "limits":
			var set limitsSet
			t.Limits, set = p.limits(v, f)
			if p.frag.teamSet == nil {
				p.frag.teamSet = make(map[*Team]limitsSet)
			}
			p.frag.teamSet[t] = set
		case "idle_timeout":
			t.IdleTimeout, _ = p.duration(v, f)
		case "max_age":
			t.MaxAge, _ = p.duration(v, f)
		case "github_token":
			t.GitHubToken, _ = p.boolean(v, f)
			tokenNode = v
		case "egress":
			t.Egress = p.egress(v, f)
		case "storage":
			t.Storage = p.storage(v, f)
		}
	}
	if t.GitHubToken && len(t.Repos) == 0 {
		p.add(tokenNode, joinField(field, "github_token"), "has no effect without repos: the token is only handed to containers of teams with repos")
	}
	t.Members = sortedUnique(t.Members)
	t.Groups = sortedUnique(t.Groups)
	t.Images = sortedUnique(t.Images)
	t.Repos = sortedUnique(t.Repos)
	t.Egress = sortedUnique(t.Egress)
	p.frag.teams = append(p.frag.teams, def[*Team]{name: key.Value, at: p.at(key), val: t})
}

func (p *parser) limits(n *yaml.Node, field string) (Limits, limitsSet) {
	var l Limits
	var set limitsSet
	for _, e := range p.entries(n, field) {
		f := joinField(field, e.key.Value)
		if !p.known(e.key, f, limitsFields) || isNull(e.val) {
			continue
		}
		v := resolve(e.val)
		switch e.key.Value {
		case "memory":
			l.Memory, set.memory = p.memory(v, f)
		case "cpus":
			cpus, ok := p.number(v, f)
			if !ok {
				continue
			}
			if cpus < 0 || cpus > maxCPUs {
				p.add(v, f, "cpus %s out of range: more than 0 and at most %d (0 means no limit)", v.Value, maxCPUs)
				continue
			}
			l.CPUs, set.cpus = cpus, true
		case "pids":
			pids, ok := p.integer(v, f)
			if !ok {
				continue
			}
			if pids != 0 && pids < minPids {
				p.add(v, f, "pids %d too low: at least %d (0 means no limit)", pids, minPids)
				continue
			}
			l.Pids, set.pids = pids, true
		}
	}
	return l, set
}

func (p *parser) memory(n *yaml.Node, field string) (int64, bool) {
	if n.Kind != yaml.ScalarNode || (n.ShortTag() != "!!int" && n.ShortTag() != "!!str") {
		p.add(n, field, "expected a size such as \"512MiB\" or \"4GiB\", got %s", describe(n))
		return 0, false
	}
	b, err := parseBytes(n.Value)
	if err != nil {
		p.add(n, field, "%v", err)
		return 0, false
	}
	if b != 0 && b < minMemory {
		p.add(n, field, "memory %s too low: at least 6MiB (0 means no limit)", n.Value)
		return 0, false
	}
	return b, true
}

func (p *parser) duration(n *yaml.Node, field string) (time.Duration, bool) {
	if n.Kind != yaml.ScalarNode || (n.ShortTag() != "!!str" && n.ShortTag() != "!!int") {
		p.add(n, field, "expected a duration such as \"2h\" or \"30m\", got %s", describe(n))
		return 0, false
	}
	d, err := time.ParseDuration(n.Value)
	if err != nil {
		p.add(n, field, "invalid duration %q: use Go syntax such as \"2h\", \"30m\" or \"1h30m\" (0 means never)", n.Value)
		return 0, false
	}
	if d < 0 {
		p.add(n, field, "invalid duration %q: must not be negative", n.Value)
		return 0, false
	}
	return d, true
}

// user parses a user name and returns its canonical form.
func (p *parser) user(n *yaml.Node, field string) (string, bool) {
	s, ok := p.str(n, field)
	if !ok {
		return "", false
	}
	return p.userName(resolve(n), s, field)
}

// userName validates a user name and returns its canonical form; see
// CanonicalUser.
func (p *parser) userName(n *yaml.Node, s, field string) (string, bool) {
	u, err := CanonicalUser(s)
	if err != nil {
		p.add(n, field, "invalid %v", err)
		return "", false
	}
	return u, true
}

func (p *parser) group(n *yaml.Node, field string) (string, bool) {
	s, ok := p.str(n, field)
	if !ok {
		return "", false
	}
	g := NormalizeGroup(s)
	kind, name, found := strings.Cut(g, ":")
	if !found || kind == "" || name == "" || len(g) > 256 || strings.IndexFunc(g, badNameRune) >= 0 {
		p.add(resolve(n), field, "invalid group %q: use \"kind:name\" without white space, such as \"github:org/team\" or \"oidc:researchers\"", s)
		return "", false
	}
	return g, true
}

func (p *parser) repo(n *yaml.Node, field string) (string, bool) {
	s, ok := p.str(n, field)
	if !ok {
		return "", false
	}
	owner, name, found := strings.Cut(s, "/")
	if !found || !repoOwnerRE.MatchString(owner) || !repoNameRE.MatchString(name) || name == "." || name == ".." {
		p.add(resolve(n), field, "invalid repo %q: use \"owner/name\", such as \"praekelt/analysis\"", s)
		return "", false
	}
	return s, true
}

// known reports whether key is one of fields, recording a problem with a
// suggestion if it is not.
func (p *parser) known(key *yaml.Node, field string, fields []string) bool {
	if slices.Contains(fields, key.Value) {
		return true
	}
	if s := suggest(key.Value, fields); s != "" {
		p.add(key, field, "unknown field (did you mean %q?)", s)
	} else {
		p.add(key, field, "unknown field (known fields: %s)", strings.Join(fields, ", "))
	}
	return false
}

// str returns the value of a scalar that reads as a string: a string, or a
// number written unquoted. Booleans, nulls, lists and mappings are
// problems.
func (p *parser) str(n *yaml.Node, field string) (string, bool) {
	n = resolve(n)
	if n.Kind != yaml.ScalarNode {
		p.add(n, field, "expected a string, got %s", describe(n))
		return "", false
	}
	switch n.ShortTag() {
	case "!!str", "!!int", "!!float", "!!timestamp":
		return n.Value, true
	}
	p.add(n, field, "expected a string, got %s (quote it if you mean the text)", describe(n))
	return "", false
}

// literal returns the text of any non-null scalar, as written.
func (p *parser) literal(n *yaml.Node, field string) (string, bool) {
	n = resolve(n)
	if n.Kind != yaml.ScalarNode || n.ShortTag() == "!!null" {
		p.add(n, field, "expected a string, got %s", describe(n))
		return "", false
	}
	return n.Value, true
}

func (p *parser) integer(n *yaml.Node, field string) (int64, bool) {
	n = resolve(n)
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!int" {
		p.add(n, field, "expected an integer, got %s", describe(n))
		return 0, false
	}
	var v int64
	if err := n.Decode(&v); err != nil {
		p.add(n, field, "invalid integer %s", n.Value)
		return 0, false
	}
	return v, true
}

func (p *parser) number(n *yaml.Node, field string) (float64, bool) {
	n = resolve(n)
	if n.Kind != yaml.ScalarNode || (n.ShortTag() != "!!int" && n.ShortTag() != "!!float") {
		p.add(n, field, "expected a number, got %s", describe(n))
		return 0, false
	}
	var v float64
	if err := n.Decode(&v); err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
		p.add(n, field, "invalid number %s", n.Value)
		return 0, false
	}
	return v, true
}

func (p *parser) boolean(n *yaml.Node, field string) (bool, bool) {
	n = resolve(n)
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!bool" {
		p.add(n, field, "expected true or false, got %s", describe(n))
		return false, false
	}
	var v bool
	if err := n.Decode(&v); err != nil {
		p.add(n, field, "invalid boolean %s", n.Value)
		return false, false
	}
	return v, true
}

// list returns the items of a list; a null is an empty list.
func (p *parser) list(n *yaml.Node, field string) []*yaml.Node {
	n = resolve(n)
	if isNull(n) {
		return nil
	}
	if n.Kind != yaml.SequenceNode {
		p.add(n, field, "expected a list, got %s", describe(n))
		return nil
	}
	return n.Content
}

// entry is one key/value pair of a mapping.
type entry struct{ key, val *yaml.Node }

// entries returns the pairs of a mapping, in order, with YAML merge keys
// ("<<: *anchor") expanded: keys written out win over merged ones, and
// among merged ones the first wins. A key written twice is a problem. A
// null is an empty mapping.
func (p *parser) entries(n *yaml.Node, field string) []entry {
	return p.entriesDepth(n, field, 0)
}

func (p *parser) entriesDepth(n *yaml.Node, field string, depth int) []entry {
	n = resolve(n)
	if isNull(n) {
		return nil
	}
	if n.Kind != yaml.MappingNode {
		p.add(n, field, "expected a mapping, got %s", describe(n))
		return nil
	}
	if depth > 16 {
		p.add(n, field, "merge keys (<<) nested too deeply")
		return nil
	}
	var out, merged []entry
	seen := make(map[string]*yaml.Node)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := resolve(n.Content[i]), n.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			p.add(k, field, "expected a plain key, got %s", describe(k))
			continue
		}
		if k.ShortTag() == "!!merge" {
			merged = append(merged, p.merge(v, field, depth)...)
			continue
		}
		if prev, dup := seen[k.Value]; dup {
			p.add(k, joinField(field, k.Value), "defined twice (also at %s)", p.at(prev))
			continue
		}
		seen[k.Value] = k
		out = append(out, entry{key: k, val: v})
	}
	for _, e := range merged {
		if _, ok := seen[e.key.Value]; ok {
			continue
		}
		seen[e.key.Value] = e.key
		out = append(out, e)
	}
	return out
}

// merge returns the entries a merge key brings in.
func (p *parser) merge(v *yaml.Node, field string, depth int) []entry {
	v = resolve(v)
	switch v.Kind {
	case yaml.MappingNode:
		return p.entriesDepth(v, field, depth+1)
	case yaml.SequenceNode:
		var out []entry
		for _, item := range v.Content {
			item = resolve(item)
			if item.Kind != yaml.MappingNode {
				p.add(item, field, "merge key (<<) expects mappings, got %s", describe(item))
				continue
			}
			out = append(out, p.entriesDepth(item, field, depth+1)...)
		}
		return out
	}
	p.add(v, field, "merge key (<<) expects a mapping or a list of mappings, got %s", describe(v))
	return nil
}

// resolve follows aliases (*anchor) to the node they refer to.
func resolve(n *yaml.Node) *yaml.Node {
	for i := 0; n != nil && n.Kind == yaml.AliasNode && n.Alias != nil && i < 100; i++ {
		n = n.Alias
	}
	return n
}

func isNull(n *yaml.Node) bool {
	n = resolve(n)
	return n == nil || (n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null")
}

// describe names the kind of a node, for messages.
func describe(n *yaml.Node) string {
	n = resolve(n)
	if n == nil {
		return "nothing"
	}
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		switch n.ShortTag() {
		case "!!str":
			return fmt.Sprintf("the string %q", truncate(n.Value, 40))
		case "!!int":
			return "the integer " + truncate(n.Value, 40)
		case "!!float":
			return "the number " + truncate(n.Value, 40)
		case "!!bool":
			return "the boolean " + n.Value
		case "!!null":
			return "nothing (null)"
		default:
			return "a value tagged " + n.ShortTag()
		}
	}
	return "an unexpected node"
}

func truncate(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	return string([]rune(s)[:n]) + "..."
}

// badNameRune reports runes not allowed in names and references.
func badNameRune(r rune) bool {
	return unicode.IsSpace(r) || unicode.IsControl(r) || r == utf8.RuneError
}

// joinField appends a mapping key to a field path: "a.b" for simple keys,
// `a["b c"]` for others.
func joinField(parent, key string) string {
	if !simpleKeyRE.MatchString(key) {
		return parent + "[" + strconv.Quote(key) + "]"
	}
	if parent == "" {
		return key
	}
	return parent + "." + key
}

// indexField appends a list index to a field path.
func indexField(parent string, i int) string {
	return parent + "[" + strconv.Itoa(i) + "]"
}
