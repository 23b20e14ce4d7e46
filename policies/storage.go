package policies

import (
	"time"

	"gopkg.in/yaml.v3"
)

// This file holds the policy's storage fields: a team's home-size quota
// (teams.<name>.storage: {soft, hard}) and the top-level retention, how
// long a home outlives its owner's removal from the policy.

// storageFields are the fields of a team's "storage" mapping.
var storageFields = []string{"soft", "hard"}

// Storage is a team's quota on the size of each member's home. A zero
// field means no limit.
type Storage struct {
	// Soft is the size in bytes above which the home page and the
	// progress page warn. In YAML a size such as "20GiB".
	Soft int64

	// Hard is the size in bytes above which new starts are refused with a
	// page that says how much to delete and where the space goes. At least
	// Soft when both are set. In YAML a size such as "25GiB".
	Hard int64
}

// storage parses a team's storage mapping.
func (p *parser) storage(n *yaml.Node, field string) Storage {
	var s Storage
	var hardNode *yaml.Node
	for _, e := range p.entries(n, field) {
		f := joinField(field, e.key.Value)
		if !p.known(e.key, f, storageFields) || isNull(e.val) {
			continue
		}
		v := resolve(e.val)
		b, ok := p.size(v, f)
		if !ok {
			continue
		}
		switch e.key.Value {
		case "soft":
			s.Soft = b
		case "hard":
			s.Hard, hardNode = b, v
		}
	}
	if s.Soft > 0 && s.Hard > 0 && s.Hard < s.Soft {
		p.add(hardNode, joinField(field, "hard"), "hard %s is below soft %s: the hard limit must be at least the soft one", bytesText(s.Hard), bytesText(s.Soft))
		s.Hard = 0
	}
	return s
}

// size parses a size in bytes (a number, or a number with a unit).
func (p *parser) size(n *yaml.Node, field string) (int64, bool) {
	if n.Kind != yaml.ScalarNode || (n.ShortTag() != "!!int" && n.ShortTag() != "!!str") {
		p.add(n, field, "expected a size such as \"20GiB\", got %s", describe(n))
		return 0, false
	}
	b, err := parseBytes(n.Value)
	if err != nil {
		p.add(n, field, "%v", err)
		return 0, false
	}
	return b, true
}

// retention parses the top-level retention: a duration, "0" or "forever".
func (p *parser) retention(key, n *yaml.Node, field string) {
	n = resolve(n)
	if n.Kind == yaml.ScalarNode && n.Value == "forever" {
		p.frag.retention = append(p.frag.retention, def[time.Duration]{name: "retention", at: p.at(key)})
		return
	}
	d, ok := p.duration(n, field)
	if !ok {
		return
	}
	if d > 0 && d < 10*time.Second {
		p.add(n, field, "retention %s is too short: at least 10s (or forever)", d)
		return
	}
	p.frag.retention = append(p.frag.retention, def[time.Duration]{name: "retention", at: p.at(key), val: d})
}

// largestStorage folds a team's quota into a grant's: 0 (no limit) wins.
func largestStorage(acc, v Storage, first bool) Storage {
	return Storage{Soft: largest(acc.Soft, v.Soft, first), Hard: largest(acc.Hard, v.Hard, first)}
}
