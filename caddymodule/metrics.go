package caddymodule

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// hubgate's Prometheus metrics. The collectors are made once per process
// and registered in every config's registry (Caddy serves it on its admin
// endpoint at /metrics). No label ever holds a user name.
var metrics = struct {
	spawnDuration *prometheus.HistogramVec
	running       prometheus.Gauge
	activeUsers   prometheus.Gauge
	denials       *prometheus.CounterVec
	reloads       *prometheus.CounterVec
	culls         *prometheus.CounterVec
}{
	spawnDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: "hubgate", Name: "spawn_duration_seconds",
		Help:    "Time from the start of a server's start to its app answering, by result.",
		Buckets: []float64{0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300},
	}, []string{"result"}),
	running: prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: "hubgate", Name: "running_servers", Help: "User servers running, as last seen by the gateway.",
	}),
	activeUsers: prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: "hubgate", Name: "active_users", Help: "Distinct users with a running server.",
	}),
	denials: prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "hubgate", Name: "denials_total", Help: "Requests refused, by reason.",
	}, []string{"reason"}),
	reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "hubgate", Name: "policy_reloads_total", Help: "Policy reloads, by result (ok or error).",
	}, []string{"result"}),
	culls: prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "hubgate", Name: "culls_total", Help: "Servers stopped by the culler, by reason (idle or max_age).",
	}, []string{"reason"}),
}

// registerMetrics adds hubgate's collectors to a config's registry; a
// collector already there (a reload of the same registry) is fine.
func registerMetrics(reg prometheus.Registerer) error {
	if reg == nil {
		return nil
	}
	for _, c := range []prometheus.Collector{
		metrics.spawnDuration, metrics.running, metrics.activeUsers,
		metrics.denials, metrics.reloads, metrics.culls,
	} {
		if err := reg.Register(c); err != nil {
			var are prometheus.AlreadyRegisteredError
			if !errors.As(err, &are) {
				return err
			}
		}
	}
	return nil
}
