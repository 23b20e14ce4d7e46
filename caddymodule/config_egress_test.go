package caddymodule

import (
	"reflect"
	"strings"
	"testing"
)

func TestEgressConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		cfg  EgressConfig
		k8s  bool
		want string // "" for valid
	}{
		{name: "defaults on docker", cfg: EgressConfig{Port: 3128}},
		{name: "resolve", cfg: EgressConfig{Port: 3128, Resolve: map[string]string{"git.internal:443": "10.0.0.5:8443"}}},
		{name: "bad port", cfg: EgressConfig{Port: 70000}, want: "egress port 70000 out of range"},
		{name: "resolve without port", cfg: EgressConfig{Port: 3128, Resolve: map[string]string{"git.internal": "10.0.0.5:443"}}, want: `egress resolve "git.internal": want host:port`},
		{name: "resolve to a name", cfg: EgressConfig{Port: 3128, Resolve: map[string]string{"a.test:443": "b.test:443"}}, want: `"b.test:443" is not an ip:port`},
		{name: "no_proxy list in one entry", cfg: EgressConfig{Port: 3128, NoProxy: []string{"a,b"}}, want: "one host, domain or address per entry"},
		{name: "proxy_host on docker", cfg: EgressConfig{Port: 3128, ProxyHost: "x"}, want: "are for Kubernetes"},
		{name: "kubernetes needs proxy_host", cfg: EgressConfig{Port: 3128}, k8s: true, want: "needs proxy_host"},
		{name: "kubernetes", cfg: EgressConfig{Port: 3128, ProxyHost: "hubgate-egress.hubgate.svc", Listen: ":3128"}, k8s: true},
	}
	for _, tt := range tests {
		err := tt.cfg.validate(tt.k8s)
		switch {
		case tt.want == "" && err != nil:
			t.Errorf("%s: %v", tt.name, err)
		case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
			t.Errorf("%s: got %v, want an error containing %q", tt.name, err, tt.want)
		}
	}
}

func TestGitHosts(t *testing.T) {
	for in, want := range map[string][]string{
		"https://github.com":          {"github.com:443"},
		"http://127.0.0.1:8080/git":   {"127.0.0.1:8080"},
		"https://GHE.example.org:444": {"ghe.example.org:444"},
		"":                            nil,
	} {
		if got := gitHosts(in); !reflect.DeepEqual(got, want) {
			t.Errorf("gitHosts(%q) = %q, want %q", in, got, want)
		}
	}
}
