package policies

import (
	"regexp"
	"strings"

	"gopkg.in/yaml.v3"
)

// Image fields that say where and how a cluster runs an image (the
// Kubernetes backend; the Docker backend ignores them).
const (
	// PullAlways, PullIfMissing and PullNever are the values of Image.Pull.
	PullAlways    = "always"
	PullIfMissing = "if_missing"
	PullNever     = "never"
)

// Toleration lets an image's pods run on nodes with a matching taint (such
// as GPU nodes), as in Kubernetes.
type Toleration struct {
	// Key is the taint key, such as "nvidia.com/gpu". Required unless
	// Operator is "exists" (then empty tolerates every taint).
	Key string
	// Operator is "equal" (the default) or "exists".
	Operator string
	// Value is the taint value; only with Operator "equal".
	Value string
	// Effect is "NoSchedule", "PreferNoSchedule", "NoExecute" or empty (all
	// effects).
	Effect string
}

var toleranceFields = []string{"key", "operator", "value", "effect"}

var (
	// labelNameRE is the name part of a Kubernetes label key (and a
	// label value, which may also be empty).
	labelNameRE = regexp.MustCompile(`^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$`)
	// dnsSubdomainRE is the prefix part of a label key or resource name.
	dnsSubdomainRE = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`)
)

// qualifiedName reports whether s is a Kubernetes qualified name
// ("[prefix/]name"); needPrefix requires the prefix.
func qualifiedName(s string, needPrefix bool) bool {
	prefix, name, has := strings.Cut(s, "/")
	if !has {
		return !needPrefix && labelNameRE.MatchString(s)
	}
	return len(prefix) <= 253 && dnsSubdomainRE.MatchString(prefix) && labelNameRE.MatchString(name)
}

// pull parses an image's "pull" field.
func (p *parser) pull(n *yaml.Node, field string) string {
	s, ok := p.str(n, field)
	if !ok {
		return ""
	}
	switch s {
	case PullAlways, PullIfMissing, PullNever:
		return s
	}
	p.add(n, field, "invalid pull policy %q: use %s, %s or %s", s, PullAlways, PullIfMissing, PullNever)
	return ""
}

// nodeSelector parses an image's "node_selector" field: node label keys
// to values.
func (p *parser) nodeSelector(n *yaml.Node, field string) map[string]string {
	out := map[string]string{}
	for _, e := range p.entries(n, field) {
		f := joinField(field, e.key.Value)
		if !qualifiedName(e.key.Value, false) {
			p.add(e.key, f, "invalid node label key %q: use [prefix/]name, such as \"nvidia.com/gpu.present\"", e.key.Value)
			continue
		}
		v, ok := p.str(e.val, f)
		if !ok {
			continue
		}
		if v != "" && !labelNameRE.MatchString(v) {
			p.add(resolve(e.val), f, "invalid node label value %q: at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit", v)
			continue
		}
		out[e.key.Value] = v
	}
	return out
}

// tolerations parses an image's "tolerations" field.
func (p *parser) tolerations(n *yaml.Node, field string) []Toleration {
	var out []Toleration
	for i, item := range p.list(n, field) {
		fi := indexField(field, i)
		t := Toleration{}
		ok := true
		for _, e := range p.entries(item, fi) {
			f := joinField(fi, e.key.Value)
			if !p.known(e.key, f, toleranceFields) {
				ok = false
				continue
			}
			s, good := p.str(e.val, f)
			if !good {
				ok = false
				continue
			}
			switch e.key.Value {
			case "key":
				if s != "" && !qualifiedName(s, false) {
					p.add(resolve(e.val), f, "invalid taint key %q", s)
					ok = false
				}
				t.Key = s
			case "operator":
				if s != "equal" && s != "exists" {
					p.add(resolve(e.val), f, "invalid operator %q: use equal or exists", s)
					ok = false
				}
				t.Operator = s
			case "value":
				t.Value = s
			case "effect":
				switch s {
				case "NoSchedule", "PreferNoSchedule", "NoExecute":
				default:
					p.add(resolve(e.val), f, "invalid effect %q: use NoSchedule, PreferNoSchedule or NoExecute", s)
					ok = false
				}
				t.Effect = s
			}
		}
		if t.Operator == "exists" && t.Value != "" {
			p.add(resolve(item), fi, "a toleration with operator exists takes no value")
			ok = false
		}
		if t.Operator != "exists" && t.Key == "" {
			p.add(resolve(item), fi, "a toleration needs a key (or operator: exists to tolerate every taint)")
			ok = false
		}
		if ok {
			out = append(out, t)
		}
	}
	return out
}

// extendedResources parses an image's "extended_resources" field:
// countable node resources such as "nvidia.com/gpu: 1".
func (p *parser) extendedResources(n *yaml.Node, field string) map[string]int64 {
	out := map[string]int64{}
	for _, e := range p.entries(n, field) {
		f := joinField(field, e.key.Value)
		if !qualifiedName(e.key.Value, true) || strings.HasPrefix(e.key.Value, "kubernetes.io/") {
			p.add(e.key, f, "invalid extended resource %q: use domain/name, such as \"nvidia.com/gpu\" (memory and cpus are team limits)", e.key.Value)
			continue
		}
		v, ok := p.integer(e.val, f)
		if !ok {
			continue
		}
		if v < 1 || v > 1024 {
			p.add(resolve(e.val), f, "count %d out of range 1 to 1024", v)
			continue
		}
		out[e.key.Value] = v
	}
	return out
}
