package egress

import "github.com/prometheus/client_golang/prometheus"

// requests counts proxy requests by kind (connect, http) and result:
// allowed, refused (not in the policy), unauthenticated (no valid
// credential of a running container), invalid (not a proxy request),
// error (an allowed host could not be reached). No label holds a user.
var requests = prometheus.NewCounterVec(prometheus.CounterOpts{
	Namespace: "hubgate", Name: "egress_requests_total",
	Help: "Egress proxy requests, by kind (connect or http) and result (allowed, refused, unauthenticated, invalid, error).",
}, []string{"kind", "result"})

// Collectors are the package's metrics, for the glue to register.
func Collectors() []prometheus.Collector { return []prometheus.Collector{requests} }
