package config_test

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/dsqlgate/dsqlgate/config"
)

func TestRegionFromEndpoint(t *testing.T) {
	tests := []struct {
		host   string
		region string
		ok     bool
	}{
		{"abcdefghijklmnopqrstuvwxyz.dsql.us-east-1.on.aws", "us-east-1", true},
		{"weaxxxxxxxxxxxxxxxxqdqqm.dsql.ap-southeast-2.on.aws", "ap-southeast-2", true},
		{"abc123.dsql.us-gov-west-1.on.aws", "us-gov-west-1", true},
		{"ABCDEFGHIJKLMNOPQRSTUVWXYZ.DSQL.EU-WEST-1.ON.AWS", "eu-west-1", true},
		{"abcdefghijklmnopqrstuvwxyz.dsql.us-east-1.on.aws.", "us-east-1", true},
		{"vftmkydwxvxys6asbsc6ih2the.dsql-fnh4.us-east-1.on.aws", "us-east-1", true},
		{"abc.dsql-fips.ca-central-1.on.aws", "ca-central-1", true},
		{"", "", false},
		{"localhost", "", false},
		{"dsql.us-east-1.on.aws", "", false},
		{"abc.dsql.on.aws", "", false},
		{"abc.dsql.us-east-1.api.aws", "", false},
		{"abc.dsql.us-east-1.on.aws:5432", "", false},
		{"abc.rds.us-east-1.on.aws", "", false},
		{"abc.dsql-.us-east-1.on.aws", "", false},
		{"abc.dsqlx.us-east-1.on.aws", "", false},
		{"a-b.dsql.us-east-1.on.aws", "", false},
		{"x.abc.dsql.us-east-1.on.aws", "", false},
		{"abc.dsql.useast1.on.aws", "", false},
		{"abc.dsql.us-east.on.aws", "", false},
		{"mydb.abc123xyz.us-east-1.rds.amazonaws.com", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.host, func(t *testing.T) {
			region, ok := config.RegionFromEndpoint(tt.host)
			if region != tt.region || ok != tt.ok {
				t.Errorf("RegionFromEndpoint(%q) = %q, %v; want %q, %v", tt.host, region, ok, tt.region, tt.ok)
			}
		})
	}
}

func TestRouteAddress(t *testing.T) {
	tests := []struct {
		name    string
		route   config.Route
		host    string
		port    int
		address string
		region  string
	}{
		{
			name:  "dsql endpoint",
			route: config.Route{Kind: "dsql", Endpoint: "abcdefghijklmnopqrstuvwxyz.dsql.us-east-1.on.aws"},
			host:  "abcdefghijklmnopqrstuvwxyz.dsql.us-east-1.on.aws", port: 5432,
			address: "abcdefghijklmnopqrstuvwxyz.dsql.us-east-1.on.aws:5432", region: "us-east-1",
		},
		{
			name:  "dial address wins for dialling only",
			route: config.Route{Kind: "dsql", Endpoint: "abcdefghijklmnopqrstuvwxyz.dsql.us-east-1.on.aws", DialAddress: "127.0.0.1:15432", Region: "us-east-1"},
			host:  "abcdefghijklmnopqrstuvwxyz.dsql.us-east-1.on.aws", port: 5432, address: "127.0.0.1:15432", region: "us-east-1",
		},
		{
			name:  "explicit region",
			route: config.Route{Kind: "dsql", Endpoint: "dsql.internal.example:6543", Region: "eu-central-1"},
			host:  "dsql.internal.example", port: 6543, address: "dsql.internal.example:6543", region: "eu-central-1",
		},
		{
			name:  "postgres with port",
			route: config.Route{Kind: "postgres", Endpoint: "localhost:5433"},
			host:  "localhost", port: 5433, address: "localhost:5433",
		},
		{
			name:  "ipv6 in brackets",
			route: config.Route{Kind: "postgres", Endpoint: "[::1]"},
			host:  "::1", port: 5432, address: "[::1]:5432",
		},
		{
			name:  "ipv6 with port",
			route: config.Route{Kind: "postgres", Endpoint: "[::1]:5433"},
			host:  "::1", port: 5433, address: "[::1]:5433",
		},
		{
			name:  "invalid endpoint",
			route: config.Route{Kind: "postgres", Endpoint: "db:notaport"},
			host:  "db:notaport", port: 0, address: "db:notaport",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := tt.route
			got := []any{r.Host(), r.Port(), r.Address(), r.ResolvedRegion()}
			want := []any{tt.host, tt.port, tt.address, tt.region}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("Host, Port, Address, ResolvedRegion mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestClientTLSResolvedMode(t *testing.T) {
	tests := []struct {
		name string
		tls  config.ClientTLS
		want string
	}{
		{"nothing", config.ClientTLS{}, config.TLSDisable},
		{"certificate", config.ClientTLS{CertFile: "c", KeyFile: "k"}, config.TLSAllow},
		{"explicit", config.ClientTLS{Mode: config.TLSRequire, CertFile: "c", KeyFile: "k"}, config.TLSRequire},
		{"explicit disable", config.ClientTLS{Mode: config.TLSDisable, CertFile: "c", KeyFile: "k"}, config.TLSDisable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.tls.ResolvedMode(); got != tt.want {
				t.Errorf("ResolvedMode() = %q, want %q", got, tt.want)
			}
		})
	}
}
