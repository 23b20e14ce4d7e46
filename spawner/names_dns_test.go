package spawner

import (
	"regexp"
	"testing"
)

// dnsLabelRE is Kubernetes' DNS-1123 label.
var dnsLabelRE = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)

func TestEscapeDNS(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"alice", "alice"},
		{"Alice", "z41lice"},
		{"a-b", "az2db"},
		{"zoe", "z7aoe"},
		{"az2db", "az7a2db"},
		{"a_b", "az5fb"},
		{"😀", "zf0z9fz98z80"},
		{"", ""},
	} {
		if got := EscapeDNS(tc.in); got != tc.want {
			t.Errorf("EscapeDNS(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestEscapeDNSInjectiveAndValid(t *testing.T) {
	all := append([]string{"zoe", "z", "zz", "z7a", "az2db", "a-b-c"}, names...)
	seenPod := map[string]string{}
	for _, n := range all {
		e := EscapeDNS(n)
		back, ok := UnescapeDNS(e)
		if !ok || back != n {
			t.Errorf("UnescapeDNS(EscapeDNS(%q)) = %q, %v", n, back, ok)
		}
		for _, server := range []string{"lab", "lab-2", "x"} {
			pod := PodName("hubgate", n, server)
			if !dnsLabelRE.MatchString(pod) {
				t.Errorf("PodName(%q, %q) = %q is not a DNS-1123 label", n, server, pod)
			}
			if prev, dup := seenPod[pod]; dup {
				t.Errorf("PodName collision: %q for %q and %s", pod, n+"/"+server, prev)
			}
			seenPod[pod] = n + "/" + server
		}
		if c := ClaimName("hubgate", n); n != "" && !dnsLabelRE.MatchString(c) {
			t.Errorf("ClaimName(%q) = %q is not a DNS-1123 label", n, c)
		}
	}
	for _, bad := range []string{"z", "z4", "zg1", "z61", "A", "a-b", "a_b"} {
		if _, ok := UnescapeDNS(bad); ok {
			t.Errorf("UnescapeDNS(%q) accepted a string EscapeDNS never makes", bad)
		}
	}
}

func TestSpecValidateSchedulingHints(t *testing.T) {
	base := Spec{User: "alice", Server: "lab", Image: "img", Port: 80, HomeMount: "/home/x"}
	if err := base.Validate(); err != nil {
		t.Fatal(err)
	}
	for name, mut := range map[string]func(*Spec){
		"pull":          func(s *Spec) { s.PullPolicy = "sometimes" },
		"toleration op": func(s *Spec) { s.Tolerations = []Toleration{{Key: "k", Operator: "lt"}} },
		"exists+value":  func(s *Spec) { s.Tolerations = []Toleration{{Key: "k", Operator: "exists", Value: "v"}} },
		"equal no key":  func(s *Spec) { s.Tolerations = []Toleration{{Value: "v"}} },
		"effect":        func(s *Spec) { s.Tolerations = []Toleration{{Key: "k", Effect: "Never"}} },
		"resource":      func(s *Spec) { s.ExtendedResources = map[string]int64{"nvidia.com/gpu": -1} },
	} {
		s := base
		mut(&s)
		if s.Validate() == nil {
			t.Errorf("%s: Validate accepted %+v", name, s)
		}
	}
	ok := base
	ok.PullPolicy = PullNever
	ok.Tolerations = []Toleration{{Key: "nvidia.com/gpu", Operator: "exists", Effect: "NoSchedule"}}
	ok.ExtendedResources = map[string]int64{"nvidia.com/gpu": 1}
	if err := ok.Validate(); err != nil {
		t.Errorf("Validate refused a good spec: %v", err)
	}
}
