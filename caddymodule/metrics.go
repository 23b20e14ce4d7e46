package caddymodule

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/hubgate/hubgate/caddymodule/backup"
	"github.com/hubgate/hubgate/caddymodule/egress"
	"github.com/hubgate/hubgate/caddymodule/hub"
	"github.com/hubgate/hubgate/caddymodule/web"
)

// reloads counts policy reloads; the other collectors belong to the
// packages that observe them (hub, web).
var reloads = prometheus.NewCounterVec(prometheus.CounterOpts{
	Namespace: "hubgate", Name: "policy_reloads_total", Help: "Policy reloads, by result (ok or error).",
}, []string{"result"})

// registerMetrics adds hubgate's collectors (made once per process) to a
// config's registry, which Caddy serves on its admin endpoint at
// /metrics; a collector already there (a reload of the same registry) is
// fine. No label ever holds a user name.
func registerMetrics(reg prometheus.Registerer) error {
	if reg == nil {
		return nil
	}
	cs := append([]prometheus.Collector{reloads}, hub.Collectors()...)
	cs = append(cs, egress.Collectors()...)
	cs = append(cs, backup.Collectors()...)
	for _, c := range append(cs, web.Collectors()...) {
		if err := reg.Register(c); err != nil {
			var are prometheus.AlreadyRegisteredError
			if !errors.As(err, &are) {
				return err
			}
		}
	}
	return nil
}
