package backup

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/hubgate/hubgate/policies"
)

// The package's metrics; no label holds a user name.
var (
	backupFailures = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: "hubgate", Name: "backup_failures_total", Help: "Backups of a home that failed.",
	})
	backupsFailing = prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: "hubgate", Name: "backup_homes_failing", Help: "Homes whose last backup failed.",
	})
	lastSuccess = prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: "hubgate", Name: "backup_last_success_timestamp_seconds", Help: "When a backup last succeeded (Unix time).",
	})
	backupSeconds = prometheus.NewHistogram(prometheus.HistogramOpts{
		Namespace: "hubgate", Name: "backup_duration_seconds", Help: "How long one home's backup took.",
		Buckets: prometheus.ExponentialBuckets(1, 2, 14),
	})
	homeBytes = prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: "hubgate", Name: "home_usage_bytes", Help: "The size of every home together, as last measured.",
	})
	homeBytesMax = prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: "hubgate", Name: "home_usage_bytes_max", Help: "The size of the largest home, as last measured.",
	})
	overQuota = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: "hubgate", Name: "homes_over_quota", Help: "Homes over their team's storage quota, by level (soft or hard).",
	}, []string{"level"})
	offboardPending = prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: "hubgate", Name: "offboarding_pending", Help: "Homes whose owners are out of the policy and not yet deleted.",
	})
	volumesDeleted = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: "hubgate", Name: "home_volumes_deleted_total", Help: "Home volumes deleted (after a verified final backup).",
	})
)

// Collectors are the package's metrics, for the glue to register.
func Collectors() []prometheus.Collector {
	return []prometheus.Collector{backupFailures, backupsFailing, lastSuccess, backupSeconds, homeBytes, homeBytesMax, overQuota, offboardPending, volumesDeleted}
}

// updateUsageMetrics sets the usage gauges from the states.
func updateUsageMetrics(users map[string]UserState, pol *policies.Policy) {
	var total, largest int64
	soft, hard := 0, 0
	for _, u := range users {
		if u.Usage == nil || u.Deleted != nil {
			continue
		}
		total += u.Usage.Bytes
		largest = max(largest, u.Usage.Bytes)
		q := Check(u.Usage, pol.Grant(u.User, u.Groups).Storage)
		if q.OverHard {
			hard++
		} else if q.OverSoft {
			soft++
		}
	}
	homeBytes.Set(float64(total))
	homeBytesMax.Set(float64(largest))
	overQuota.WithLabelValues("soft").Set(float64(soft))
	overQuota.WithLabelValues("hard").Set(float64(hard))
}
