package login

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
		// Issue #3, point 4: every spelling of another origin ends on /.
		"///evil.example":                         "/",
		"\\/evil.example":                         "/",
		"/%5C%5Cevil.example":                     "/",
		"%5C%5Cevil.example":                      "/",
		"HTTPS://evil.example":                    "/",
		"https:evil.example":                      "/",
		"//evil.example/%2e%2e":                   "/",
		"/%2F/evil.example":                       "/",
		"%2F/evil.example":                        "/",
		"%09//evil.example":                       "/",
		"\t//evil.example":                        "/",
		" //evil.example":                         "/",
		"/%0a/evil.example":                       "/",
		"/%0d%0aLocation:%20https://evil.example": "/",
		"/%00//evil.example":                      "/",
		"/\x00//evil.example":                     "/",
		"/%7f//evil.example":                      "/",
		"/%C2%85/evil.example":                    "/",
		"/%E2%80%A8/evil.example":                 "/",
		"/%C2%A0/evil.example":                    "/",
		"/%E3%80%80/evil.example":                 "/",
		"/%252F%252Fevil.example":                 "/%252F%252Fevil.example",
		"/user/alice/notebook/tree?x=1":           "/user/alice/notebook/tree?x=1",
	}
	for in, want := range cases {
		if got := SafeNext(in); got != want {
			t.Errorf("SafeNext(%q) = %q, want %q", in, got, want)
		}
	}
}
