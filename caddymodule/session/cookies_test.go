package session

import (
	"net/http"
	"testing"
)

func TestCookieValue(t *testing.T) {
	cases := []struct {
		lines []string
		want  string
	}{
		{nil, ""},
		{[]string{"a=1; __Host-hubgate-session=abc; b=2"}, "abc"},
		{[]string{"__Host-hubgate-session=abc"}, "abc"},
		{[]string{"x=1", "__Host-hubgate-session=\"q\""}, "q"},
		{[]string{"__Host-hubgate-sessionX=nope; __Host-hubgate-session=yes"}, "yes"},
		{[]string{"__host-hubgate-session=case"}, ""},
		{[]string{"x__Host-hubgate-session=no"}, ""},
	}
	for _, c := range cases {
		hdr := http.Header{}
		for _, l := range c.lines {
			hdr.Add("Cookie", l)
		}
		if got := CookieValue(hdr, SessionCookie); got != c.want {
			t.Errorf("cookieValue(%q) = %q, want %q", c.lines, got, c.want)
		}
	}
}
