package spawner

import "strings"

// EscapeName maps s to a string of [a-z0-9_] usable inside Docker object
// names. Bytes in [a-z0-9] are kept; every other byte of the UTF-8 string
// (including '-', '_', '.', and uppercase letters) becomes '_' followed by its
// two lowercase hex digits. "Alice" becomes "_41lice" and "a-b" becomes
// "a_2db".
//
// The mapping is injective (it can be undone byte by byte, since '_' itself
// is escaped) and its output never contains '-', so names joined with '-' are
// injective too. It is part of hubgate's stable contract: changing it would
// orphan every existing container and volume.
func EscapeName(s string) string {
	const hex = "0123456789abcdef"
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= '0' && c <= '9' {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('_')
		b.WriteByte(hex[c>>4])
		b.WriteByte(hex[c&0x0f])
	}
	return b.String()
}

// UnescapeName reverses EscapeName. It reports false if s is not an output
// of EscapeName.
func UnescapeName(s string) (string, bool) {
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z' || c >= '0' && c <= '9':
			b.WriteByte(c)
		case c == '_' && i+2 < len(s):
			hi, ok1 := unhex(s[i+1])
			lo, ok2 := unhex(s[i+2])
			if !ok1 || !ok2 {
				return "", false
			}
			v := hi<<4 | lo
			if v >= 'a' && v <= 'z' || v >= '0' && v <= '9' {
				return "", false // EscapeName never escapes these
			}
			b.WriteByte(v)
			i += 2
		default:
			return "", false
		}
	}
	return b.String(), true
}

// unhex decodes one lowercase hex digit.
func unhex(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	}
	return 0, false
}

// ContainerName returns the name of user's container for server in the
// deployment with the given prefix: "<prefix>-<EscapeName(user)>-<EscapeName(server)>".
func ContainerName(prefix, user, server string) string {
	return prefix + "-" + EscapeName(user) + "-" + EscapeName(server)
}

// VolumeName returns the name of user's home volume in the deployment with
// the given prefix: "<prefix>-home-<EscapeName(user)>". Volumes and
// containers are separate namespaces in Docker, so a user named "home" does
// not collide with anything.
func VolumeName(prefix, user string) string {
	return prefix + "-home-" + EscapeName(user)
}

// InternalName returns the name of one of the deployment's own objects
// (such as its network-creation lock, name "network-lock"):
// "<prefix>.<name>". No user's container or volume has such a name: the
// prefix and escaped names never contain '.'.
func InternalName(prefix, name string) string {
	return prefix + "." + name
}

// EscapeDNS maps s to a string of [a-z0-9], usable in any part of a
// Kubernetes object name or label value (DNS-1123). Bytes in [a-y0-9] are
// kept; every other byte of the UTF-8 string (including 'z', '-', '_', '.'
// and uppercase letters) becomes 'z' followed by its two lowercase hex
// digits. "Alice" becomes "z41lice", "a-b" becomes "az2db" and "zoe"
// becomes "z7aoe".
//
// Like EscapeName it is injective and its output never contains '-', so
// names joined with '-' are injective too. It is part of hubgate's stable
// contract on Kubernetes: changing it would orphan every pod and claim.
func EscapeDNS(s string) string {
	const hex = "0123456789abcdef"
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'a' && c <= 'y' || c >= '0' && c <= '9' {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('z')
		b.WriteByte(hex[c>>4])
		b.WriteByte(hex[c&0x0f])
	}
	return b.String()
}

// UnescapeDNS reverses EscapeDNS. It reports false if s is not an output of
// EscapeDNS.
func UnescapeDNS(s string) (string, bool) {
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'y' || c >= '0' && c <= '9':
			b.WriteByte(c)
		case c == 'z' && i+2 < len(s):
			hi, ok1 := unhex(s[i+1])
			lo, ok2 := unhex(s[i+2])
			if !ok1 || !ok2 {
				return "", false
			}
			v := hi<<4 | lo
			if v >= 'a' && v <= 'y' || v >= '0' && v <= '9' {
				return "", false // EscapeDNS never escapes these
			}
			b.WriteByte(v)
			i += 2
		default:
			return "", false
		}
	}
	return b.String(), true
}

// PodName returns the Kubernetes name of user's pod for server in the
// deployment with the given prefix: "<prefix>-<EscapeDNS(user)>-<EscapeDNS(server)>".
func PodName(prefix, user, server string) string {
	return prefix + "-" + EscapeDNS(user) + "-" + EscapeDNS(server)
}

// ClaimName returns the Kubernetes name of user's home volume claim in the
// deployment with the given prefix: "<prefix>-home-<EscapeDNS(user)>".
// Claims and pods are separate kinds, so a user named "home" does not
// collide with anything.
func ClaimName(prefix, user string) string {
	return prefix + "-home-" + EscapeDNS(user)
}
