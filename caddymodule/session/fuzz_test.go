package session

import (
	"bytes"
	"testing"
)

func sameSession(a Session, b *Session) bool { return a.ID == b.ID && a.User == b.User }

// FuzzOpen: no input opens as a session unless it was sealed with the key
// and purpose, and nothing panics.
func FuzzOpen(f *testing.F) {
	c, _ := NewCodec(bytes.Repeat([]byte{1}, 32))
	good, _ := c.Seal(PurposeSession, Session{ID: "x", User: "alice"})
	f.Add(good)
	f.Add("")
	f.Add("AAAA")
	f.Add(good[:len(good)-2] + "AA")
	f.Fuzz(func(t *testing.T, sealed string) {
		var s Session
		if c.Open(PurposeSession, sealed, &s) == nil {
			// Authenticated: any change to it must be refused.
			for i := range len(sealed) {
				b := []byte(sealed)
				b[i] ^= 0x01
				t2 := new(Session)
				if string(b) != sealed && c.Open(PurposeSession, string(b), t2) == nil && t2 != nil && t2.ID != "" && !sameSession(s, t2) {
					t.Fatalf("a changed value opened as another session: %q", b)
				}
			}
		}
		var other Session
		if c.Open(PurposeLogin, sealed, &other) == nil {
			t.Fatalf("a session value opened for another purpose: %q", sealed)
		}
		_ = CookieValue(map[string][]string{"Cookie": {sealed}}, SessionCookie)
	})
}
