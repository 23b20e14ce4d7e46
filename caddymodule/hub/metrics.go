package hub

import "github.com/prometheus/client_golang/prometheus"

// The runtime's Prometheus collectors, made once per process; the glue
// registers them in every config's registry. No label holds a user name.
var metrics = struct {
	spawnDuration *prometheus.HistogramVec
	running       prometheus.Gauge
	activeUsers   prometheus.Gauge
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
	culls: prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "hubgate", Name: "culls_total", Help: "Servers stopped by the culler, by reason (idle or max_age).",
	}, []string{"reason"}),
}

// Collectors are the runtime's metrics, for the glue to register.
func Collectors() []prometheus.Collector {
	return []prometheus.Collector{metrics.spawnDuration, metrics.running, metrics.activeUsers, metrics.culls}
}
