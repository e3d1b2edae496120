package authbridge

import "github.com/prometheus/client_golang/prometheus"

// The bridge reports its pools' sizes when scraped (a prometheus
// Collector), so the numbers are always current and follow reloads.
var (
	upstreamConnectionsDesc = prometheus.NewDesc("dsqlgate_upstream_connections",
		"Upstream connections by route and state: idle (in the pool), active (held by a client, or being dialled).",
		[]string{"route", "state"}, nil)
	poolWaitingDesc = prometheus.NewDesc("dsqlgate_pool_waiting_clients",
		"Clients waiting for an upstream connection, by route.", []string{"route"}, nil)
	poolSizeDesc = prometheus.NewDesc("dsqlgate_pool_size",
		"Most upstream connections a route may open (pool.size).", []string{"route"}, nil)
)

var _ prometheus.Collector = (*Bridge)(nil)

// Describe implements prometheus.Collector.
func (b *Bridge) Describe(ch chan<- *prometheus.Desc) {
	ch <- upstreamConnectionsDesc
	ch <- poolWaitingDesc
	ch <- poolSizeDesc
}

// Collect implements prometheus.Collector.
func (b *Bridge) Collect(ch chan<- prometheus.Metric) {
	for _, r := range b.Routes() {
		s := r.pool.Stats()
		ch <- prometheus.MustNewConstMetric(upstreamConnectionsDesc, prometheus.GaugeValue, float64(s.Idle), r.Name, "idle")
		ch <- prometheus.MustNewConstMetric(upstreamConnectionsDesc, prometheus.GaugeValue, float64(s.Open-s.Idle), r.Name, "active")
		ch <- prometheus.MustNewConstMetric(poolWaitingDesc, prometheus.GaugeValue, float64(s.Waiting), r.Name)
		ch <- prometheus.MustNewConstMetric(poolSizeDesc, prometheus.GaugeValue, float64(r.pool.Settings().Size), r.Name)
	}
}
