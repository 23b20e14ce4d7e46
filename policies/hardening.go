package policies

import (
	"slices"
	"strings"

	"gopkg.in/yaml.v3"
)

// Built-in default limits, for teams that set none and a policy without
// defaults.limits: a fork bomb or a runaway notebook stops at these
// instead of taking the machine. CPUs have no built-in default.
const (
	DefaultMemory = 4 << 30 // 4 GiB
	DefaultPids   = 1024
)

// defaultsFields are the fields of the top-level "defaults" mapping.
var defaultsFields = []string{"limits"}

// limitsSet says which fields of a limits mapping were written.
type limitsSet struct{ memory, cpus, pids bool }

// builtinLimits are the defaults of a policy without defaults.limits.
var builtinLimits = Limits{Memory: DefaultMemory, Pids: DefaultPids}

// capabilities are the Linux capability names (without "CAP_") an image
// may add back with cap_add; every other is dropped (see capabilities(7)).
var capabilities = []string{
	"AUDIT_CONTROL", "AUDIT_READ", "AUDIT_WRITE", "BLOCK_SUSPEND", "BPF", "CHECKPOINT_RESTORE",
	"CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "IPC_LOCK", "IPC_OWNER",
	"KILL", "LEASE", "LINUX_IMMUTABLE", "MAC_ADMIN", "MAC_OVERRIDE", "MKNOD", "NET_ADMIN",
	"NET_BIND_SERVICE", "NET_BROADCAST", "NET_RAW", "PERFMON", "SETFCAP", "SETGID", "SETPCAP",
	"SETUID", "SYSLOG", "SYS_ADMIN", "SYS_BOOT", "SYS_CHROOT", "SYS_MODULE", "SYS_NICE",
	"SYS_PACCT", "SYS_PTRACE", "SYS_RAWIO", "SYS_RESOURCE", "SYS_TIME", "SYS_TTY_CONFIG",
	"WAKE_ALARM",
}

// defaults parses the top-level "defaults" mapping.
func (p *parser) defaults(key, n *yaml.Node, field string) {
	d := def[limitsDef]{name: "defaults", at: p.at(key)}
	for _, e := range p.entries(n, field) {
		f := joinField(field, e.key.Value)
		if !p.known(e.key, f, defaultsFields) || isNull(e.val) {
			continue
		}
		d.val.limits, d.val.set = p.limits(resolve(e.val), f)
	}
	p.frag.defaults = append(p.frag.defaults, d)
}

// limitsDef is a limits mapping with which of its fields were written.
type limitsDef struct {
	limits Limits
	set    limitsSet
}

// fill returns l with each field that set says was not written taken from
// d.
func (set limitsSet) fill(l, d Limits) Limits {
	if !set.memory {
		l.Memory = d.Memory
	}
	if !set.cpus {
		l.CPUs = d.CPUs
	}
	if !set.pids {
		l.Pids = d.Pids
	}
	return l
}

// capAdd parses an image's cap_add list: capability names, with or
// without "CAP_", in any case; it returns them upper case without "CAP_",
// sorted and deduplicated.
func (p *parser) capAdd(n *yaml.Node, field string) []string {
	var caps []string
	for i, item := range p.list(n, field) {
		fi := indexField(field, i)
		s, ok := p.str(item, fi)
		if !ok {
			continue
		}
		c := strings.TrimPrefix(strings.ToUpper(s), "CAP_")
		switch {
		case c == "ALL":
			p.add(resolve(item), fi, "name the capabilities the image needs: ALL would give back every one hubgate drops")
		case !slices.Contains(capabilities, c):
			if sug := suggestCapability(c); sug != "" {
				p.add(resolve(item), fi, "unknown capability %q (did you mean %q?)", s, sug)
			} else {
				p.add(resolve(item), fi, "unknown capability %q (known: %s)", s, strings.Join(capabilities, ", "))
			}
		default:
			caps = append(caps, c)
		}
	}
	return sortedUnique(caps)
}

// suggestCapability returns the known capability closest to c, or "".
func suggestCapability(c string) string {
	lower := make([]string, len(capabilities))
	for i, k := range capabilities {
		lower[i] = strings.ToLower(k)
	}
	return strings.ToUpper(suggest(c, lower))
}
