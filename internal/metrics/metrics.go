// Package metrics defines dsqlgate's Prometheus metrics: one registry per
// gateway, with the collectors pgwire and authbridge update. Names follow
// Prometheus conventions (dsqlgate_..._total for counters, _seconds for
// durations, base units everywhere).
//
// Label values are bounded: route names come from the configuration,
// SQLSTATEs from a fixed list (others are counted as "other").
package metrics

import (
	"slices"

	"github.com/dsqlgate/dsqlgate/internal/compat"
	"github.com/jackc/pgerrcode"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Metrics holds every collector. The zero value is not usable; use New.
// Safe for concurrent use.
type Metrics struct {
	Registry *prometheus.Registry

	// ClientConnections counts client sessions by state: authenticating,
	// idle (no upstream), active (an upstream attached), waiting (for an
	// upstream).
	ClientConnections *prometheus.GaugeVec
	// ClientConnectionsOpenedTotal counts connections by how the startup
	// ended: accepted, auth_failed, refused (limits, protocol errors,
	// unknown database), cancel (a CancelRequest). Not
	// client_connections_total: a counter's base name must not be the
	// gauge's.
	ClientConnectionsOpenedTotal *prometheus.CounterVec
	// PoolWaitSeconds is how long clients waited for an upstream.
	PoolWaitSeconds *prometheus.HistogramVec
	// TransactionSeconds and QuerySeconds measure work through the
	// gateway: a transaction from its first statement to its end, a query
	// from the client's Query/Sync to ReadyForQuery.
	TransactionSeconds *prometheus.HistogramVec
	QuerySeconds       *prometheus.HistogramVec
	// UpstreamDialsTotal counts upstream dials by outcome: ok, error,
	// rate_limited (DSQL's 53400), too_many (53300), auth_failed.
	UpstreamDialsTotal *prometheus.CounterVec
	// TokenMintsTotal and TokenMintSeconds count and time IAM token mints.
	TokenMintsTotal  *prometheus.CounterVec
	TokenMintSeconds *prometheus.HistogramVec
	// UpstreamReplacementsTotal counts upstreams replaced, by reason:
	// lifetime, lost_idle, lost_in_transaction, reconnect.
	UpstreamReplacementsTotal *prometheus.CounterVec
	// StateSyncsTotal counts session-state syncs (SET/RESET sent before a
	// client's work on an upstream).
	StateSyncsTotal *prometheus.CounterVec
	// UpstreamErrorsTotal counts ErrorResponses from upstreams by SQLSTATE.
	UpstreamErrorsTotal *prometheus.CounterVec
	// BytesTotal counts bytes relayed, by direction: client_to_server,
	// server_to_client.
	BytesTotal *prometheus.CounterVec
	// OCCRetriesTotal counts units of work the gateway sent upstream again
	// after an optimistic-concurrency failure (one per attempt re-sent);
	// OCCRetriesExhaustedTotal the retried units whose failure reached the
	// client after the last attempt or past the time budget.
	OCCRetriesTotal          *prometheus.CounterVec
	OCCRetriesExhaustedTotal *prometheus.CounterVec
	// CancelRequestsReceivedTotal counts CancelRequests read, by source:
	// client (as a client sends it, through the load balancer) or peer
	// (no hops left: forwarded by another replica; the label is not proof,
	// since anyone can send such a key, which is then only looked up here).
	CancelRequestsReceivedTotal *prometheus.CounterVec
	// CancelRequestsTotal counts what became of each CancelRequest read:
	// delivered (a session of this replica matched it), forwarded (sent on
	// to the replica whose key it is), ignored (no session matched: an
	// unknown, stale or forged key, or a forwarded one for another replica),
	// failed (the peer could not be reached, or too many forwards were in
	// flight).
	CancelRequestsTotal *prometheus.CounterVec
	// Peers is how many replicas this one knows (itself included).
	Peers prometheus.Gauge
	// BuildInfo is 1, with the version and Go version as labels.
	BuildInfo *prometheus.GaugeVec
	// ConfigReloadsTotal counts reloads (SIGHUP, the console's RELOAD) by
	// outcome: ok, error. ConfigLastReloadSuccess is when the last one that
	// succeeded ran, in Unix time (start-up until then).
	ConfigReloadsTotal      *prometheus.CounterVec
	ConfigLastReloadSuccess prometheus.Gauge
}

// New makes the collectors and registers them, with the Go runtime and
// process collectors, on a new registry.
func New() *Metrics {
	const ns = "dsqlgate"
	latency := []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60}
	m := &Metrics{
		Registry: prometheus.NewRegistry(),
		ClientConnections: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Name: "client_connections",
			Help: "Client connections by state: authenticating, idle, active, waiting."}, []string{"state"}),
		ClientConnectionsOpenedTotal: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "client_connections_opened_total",
			Help: "Client connections by how their startup ended: accepted, auth_failed, refused, cancel."}, []string{"outcome"}),
		PoolWaitSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: ns, Name: "pool_wait_seconds",
			Help: "Time clients waited for an upstream connection.", Buckets: latency}, []string{"route"}),
		TransactionSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: ns, Name: "transaction_duration_seconds",
			Help: "Duration of transactions through the gateway.", Buckets: latency}, []string{"route"}),
		QuerySeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: ns, Name: "query_duration_seconds",
			Help: "Duration of queries (a Query or a batch up to Sync) through the gateway.", Buckets: latency}, []string{"route"}),
		UpstreamDialsTotal: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "upstream_dials_total",
			Help: "Upstream dials by outcome: ok, error, rate_limited, too_many, auth_failed."}, []string{"route", "outcome"}),
		TokenMintsTotal: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "token_mints_total",
			Help: "IAM token mints by outcome: ok, error."}, []string{"route", "outcome"}),
		TokenMintSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: ns, Name: "token_mint_duration_seconds",
			Help: "Time to mint an IAM token (credentials refresh included).", Buckets: latency}, []string{"route"}),
		UpstreamReplacementsTotal: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "upstream_replacements_total",
			Help: "Upstream connections replaced, by reason: lifetime, lost_idle, lost_in_transaction, reconnect."}, []string{"route", "reason"}),
		StateSyncsTotal: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "session_state_syncs_total",
			Help: "Session-state syncs: settings applied to an upstream before a client's work."}, []string{"route"}),
		UpstreamErrorsTotal: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "upstream_errors_total",
			Help: "Errors upstreams reported, by SQLSTATE (40001, 53400, 53300, 54000, 0A000, 57014, ...; other)."}, []string{"route", "sqlstate"}),
		BytesTotal: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "bytes_total",
			Help: "Bytes relayed, by direction: client_to_server, server_to_client."}, []string{"direction"}),
		OCCRetriesTotal: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "occ_retries_total",
			Help: "Units of work re-sent upstream after an optimistic-concurrency failure (40001 OC000/OC001), one per attempt."}, []string{"route"}),
		OCCRetriesExhaustedTotal: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "occ_retries_exhausted_total",
			Help: "Retryable units whose optimistic-concurrency failure reached the client after the last attempt or past the retry budget."}, []string{"route"}),
		CancelRequestsReceivedTotal: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "cancel_requests_received_total",
			Help: "CancelRequests read, by source: client, peer (no hops left: forwarded by another replica, or made to look so)."}, []string{"source"}),
		CancelRequestsTotal: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "cancel_requests_total",
			Help: "CancelRequests by outcome: delivered (to a session here), forwarded (to the replica that holds it), ignored (no session matched), failed (the peer was unreachable or busy)."}, []string{"outcome"}),
		Peers: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Name: "peers",
			Help: "Replicas this one knows for forwarding cancels, itself included (1 without peers)."}),
		BuildInfo: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Name: "build_info",
			Help: "Always 1; the labels say which build runs."}, []string{"version", "goversion"}),
		ConfigReloadsTotal: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "config_reloads_total",
			Help: "Configuration reloads (SIGHUP, the admin console's RELOAD) by outcome: ok, error."}, []string{"outcome"}),
		ConfigLastReloadSuccess: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Name: "config_last_reload_success_timestamp_seconds",
			Help: "When the configuration in force was last loaded (start-up or a reload that succeeded), in Unix time."}),
	}
	m.Registry.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.ClientConnections, m.ClientConnectionsOpenedTotal, m.PoolWaitSeconds, m.TransactionSeconds, m.QuerySeconds,
		m.UpstreamDialsTotal, m.TokenMintsTotal, m.TokenMintSeconds, m.UpstreamReplacementsTotal,
		m.StateSyncsTotal, m.UpstreamErrorsTotal, m.BytesTotal,
		m.OCCRetriesTotal, m.OCCRetriesExhaustedTotal,
		m.CancelRequestsReceivedTotal, m.CancelRequestsTotal, m.Peers, m.BuildInfo,
		m.ConfigReloadsTotal, m.ConfigLastReloadSuccess,
	)
	m.addGlobal()
	return m
}

// The label values each series is created with before anything happens,
// so that an alert on one sees 0 rather than nothing. Code that counts
// under a value missing here makes a series appear late; a test scans the
// sources for that.
var (
	clientStates       = []string{"authenticating", "idle", "active", "waiting"}
	openedOutcomes     = []string{"accepted", "auth_failed", "refused", "cancel"}
	byteDirections     = []string{"client_to_server", "server_to_client"}
	cancelSources      = []string{"client", "peer"}
	cancelOutcomes     = []string{"delivered", "forwarded", "ignored", "failed"}
	reloadOutcomes     = []string{"ok", "error"}
	dialOutcomes       = []string{"ok", "error", "rate_limited", "too_many", "auth_failed"}
	mintOutcomes       = []string{"ok", "error"}
	replacementReasons = []string{"lifetime", "lost_idle", "lost_in_transaction", "reconnect"}
)

// addGlobal creates the series without a route label.
func (m *Metrics) addGlobal() {
	for _, vs := range []struct {
		vec    *prometheus.MetricVec
		values []string
	}{
		{m.ClientConnections.MetricVec, clientStates},
		{m.ClientConnectionsOpenedTotal.MetricVec, openedOutcomes},
		{m.BytesTotal.MetricVec, byteDirections},
		{m.CancelRequestsReceivedTotal.MetricVec, cancelSources},
		{m.CancelRequestsTotal.MetricVec, cancelOutcomes},
		{m.ConfigReloadsTotal.MetricVec, reloadOutcomes},
	} {
		for _, v := range vs.values {
			if _, err := vs.vec.GetMetricWithLabelValues(v); err != nil {
				panic(err) // a label count that does not match: a bug here
			}
		}
	}
}

// AddRoute creates the series of a route that must exist before anything
// happens on it: counters that read 0 rather than missing, for every
// outcome, reason and known SQLSTATE, and the route's histograms. Route
// names come from the configuration, so the series stay bounded.
func (m *Metrics) AddRoute(route string) {
	for _, o := range dialOutcomes {
		m.UpstreamDialsTotal.WithLabelValues(route, o)
	}
	for _, o := range mintOutcomes {
		m.TokenMintsTotal.WithLabelValues(route, o)
	}
	for _, r := range replacementReasons {
		m.UpstreamReplacementsTotal.WithLabelValues(route, r)
	}
	for _, c := range SQLStateLabels() {
		m.UpstreamErrorsTotal.WithLabelValues(route, c)
	}
	for _, v := range []*prometheus.CounterVec{m.StateSyncsTotal, m.OCCRetriesTotal, m.OCCRetriesExhaustedTotal} {
		v.WithLabelValues(route)
	}
	for _, v := range []*prometheus.HistogramVec{m.PoolWaitSeconds, m.TransactionSeconds, m.QuerySeconds, m.TokenMintSeconds} {
		v.WithLabelValues(route)
	}
}

// SetBuildInfo sets dsqlgate_build_info to 1 for version and goversion.
func (m *Metrics) SetBuildInfo(version, goversion string) {
	m.BuildInfo.Reset()
	m.BuildInfo.WithLabelValues(version, goversion).Set(1)
}

// knownSQLStates are the SQLSTATEs counted under their own label; DSQL's
// limits and conflicts among them.
var knownSQLStates = map[string]bool{
	pgerrcode.SerializationFailure:              true,
	pgerrcode.DeadlockDetected:                  true,
	pgerrcode.ConfigurationLimitExceeded:        true,
	pgerrcode.TooManyConnections:                true,
	pgerrcode.OutOfMemory:                       true,
	pgerrcode.ProgramLimitExceeded:              true,
	pgerrcode.FeatureNotSupported:               true,
	pgerrcode.QueryCanceled:                     true,
	pgerrcode.InFailedSQLTransaction:            true,
	pgerrcode.UniqueViolation:                   true,
	pgerrcode.UndefinedTable:                    true,
	pgerrcode.SyntaxError:                       true,
	pgerrcode.ConnectionFailure:                 true,
	pgerrcode.ProtocolViolation:                 true,
	pgerrcode.InvalidAuthorizationSpecification: true,
	pgerrcode.InvalidPassword:                   true,
	pgerrcode.InvalidCatalogName:                true,
	pgerrcode.AdminShutdown:                     true,
	compat.DSQLOCC:                              true,
	compat.DSQLSchemaOCC:                        true,
}

// SQLStateLabels are the sqlstate label's values: the known SQLSTATEs,
// sorted, and "other".
func SQLStateLabels() []string {
	out := make([]string, 0, len(knownSQLStates)+1)
	for c := range knownSQLStates {
		out = append(out, c)
	}
	slices.Sort(out)
	return append(out, "other")
}

// SQLStateLabel bounds the sqlstate label's values.
func SQLStateLabel(code string) string {
	if knownSQLStates[code] {
		return code
	}
	return "other"
}
