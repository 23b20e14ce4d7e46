package caddymodule

import "testing"

func TestSafeNext(t *testing.T) {
	cases := map[string]string{
		"":                         "/",
		"/":                        "/",
		"/user/alice/notebook/":    "/user/alice/notebook/",
		"/user/alice/nb/?x=1#y":    "/user/alice/nb/?x=1#y",
		"//evil.example":           "/",
		"/\\evil.example":          "/",
		"%2F%2Fevil.example":       "/",
		"/%2F%2Fevil.example":      "/",
		"/%2fevil.example":         "/",
		"/%5Cevil.example":         "/",
		"https://evil.example":     "/",
		"https:/evil.example":      "/",
		"evil.example":             "/",
		"/%09/evil.example":        "/",
		"/%0d%0aSet-Cookie:x":      "/",
		"/ /evil":                  "/",
		"/\t/evil":                 "/",
		"/%20":                     "/",
		"javascript:alert(1)":      "/",
		"/%zz":                     "/",
		"/user/al%C3%A9/notebook/": "/user/al%C3%A9/notebook/",
	}
	for in, want := range cases {
		if got := safeNext(in); got != want {
			t.Errorf("safeNext(%q) = %q, want %q", in, got, want)
		}
	}
}
