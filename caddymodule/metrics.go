package caddymodule

import (
	"errors"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// hubgate's Prometheus metrics. The collectors are made once per process
// and registered in every config's registry (Caddy serves it on its admin
// endpoint at /metrics). No label ever holds a user name.
var metrics = struct {
	once          sync.Once
	spawnDuration *prometheus.HistogramVec
	running       prometheus.Gauge
	activeUsers   prometheus.Gauge
	denials       *prometheus.CounterVec
	reloads       *prometheus.CounterVec
	culls         *prometheus.CounterVec
	queued        prometheus.Gauge
}{}

func initMetrics() {
	metrics.once.Do(func() {
		const ns, sub = "hubgate", ""
		metrics.spawnDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: ns, Name: "spawn_duration_seconds",
			Help:    "Time from the start of a server's start to its app answering, by result.",
			Buckets: []float64{0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300},
		}, []string{"result"})
		metrics.running = prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: ns, Name: "running_servers", Help: "User servers running, as last seen by the gateway.",
		})
		metrics.activeUsers = prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: ns, Name: "active_users", Help: "Distinct users with a running server.",
		})
		metrics.denials = prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Name: "denials_total", Help: "Requests refused, by reason.",
		}, []string{"reason"})
		metrics.reloads = prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Name: "policy_reloads_total", Help: "Policy reloads, by result (ok or error).",
		}, []string{"result"})
		metrics.culls = prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Name: "culls_total", Help: "Servers stopped by the culler, by reason (idle or max_age).",
		}, []string{"reason"})
		metrics.queued = prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: ns, Name: "starts_queued", Help: "Server starts waiting for a free start slot.",
		})
		_ = sub
	})
}

// registerMetrics adds hubgate's collectors to a config's registry; a
// collector already there (a reload of the same registry) is fine.
func registerMetrics(reg prometheus.Registerer) error {
	initMetrics()
	if reg == nil {
		return nil
	}
	for _, c := range []prometheus.Collector{
		metrics.spawnDuration, metrics.running, metrics.activeUsers,
		metrics.denials, metrics.reloads, metrics.culls, metrics.queued,
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
