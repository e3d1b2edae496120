package config_test

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.yaml.in/yaml/v3"

	"github.com/dsqlgate/dsqlgate/config"
)

func TestDurationUnmarshal(t *testing.T) {
	tests := []struct {
		name    string
		yaml    string
		want    time.Duration
		wantErr string // part of the message; empty for success
	}{
		{name: "seconds", yaml: "30s", want: 30 * time.Second},
		{name: "compound", yaml: "1h30m", want: 90 * time.Minute},
		{name: "quoted", yaml: `"10m"`, want: 10 * time.Minute},
		{name: "fraction", yaml: "1.5s", want: 1500 * time.Millisecond},
		{name: "zero with unit", yaml: "0s", want: 0},
		{name: "negative", yaml: "-1m", want: -time.Minute},
		{name: "bare integer", yaml: "30", wantErr: `duration 30 has no unit; write "30s"`},
		{name: "bare zero", yaml: "0", wantErr: `write "0s"`},
		{name: "bare float", yaml: "1.5", wantErr: `write "1.5s"`},
		{name: "quoted bare number", yaml: `"30"`, wantErr: `write "30s"`},
		{name: "unknown unit", yaml: "30 sec", wantErr: `"30 sec" is not a duration`},
		{name: "word", yaml: "forever", wantErr: "is not a duration"},
		{name: "list", yaml: "[30s]", wantErr: "got a list"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var d config.Duration
			err := yaml.Unmarshal([]byte(tt.yaml), &d)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Unmarshal(%q) error = %v, want it to contain %q", tt.yaml, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Unmarshal(%q): %v", tt.yaml, err)
			}
			if d.D() != tt.want {
				t.Errorf("Unmarshal(%q) = %v, want %v", tt.yaml, d.D(), tt.want)
			}
		})
	}
}

func TestParseBadDuration(t *testing.T) {
	runProblemCases(t, "", []problemCase{
		{name: "bare integer", doc: "limits:\n  startup_timeout: 30 # <-\n" + user + dsqlRoute, key: "limits.startup_timeout", msg: `duration 30 has no unit; write "30s"`},
		{name: "not a duration", doc: user + dsqlRoute + "    pool: {idle_timeout: soon} # <-\n", key: "routes[0].pool.idle_timeout", msg: `"soon" is not a duration`},
		{name: "mapping", doc: user + dsqlRoute + "    token_expiry: {minutes: 15} # <-\n", key: "routes[0].token_expiry", msg: `expected a duration such as "30s", got a mapping`},
	})
}

func TestParseByteSize(t *testing.T) {
	tests := []struct {
		in      string
		want    config.ByteSize
		wantErr string
	}{
		{in: "1048576", want: 1 << 20},
		{in: "512B", want: 512},
		{in: "64KiB", want: 64 << 10},
		{in: "1MiB", want: 1 << 20},
		{in: "1 MiB", want: 1 << 20},
		{in: " 1GiB ", want: 1 << 30},
		{in: "0", want: 0},
		{in: "8589934591GiB", want: 8589934591 << 30},
		{in: "", wantErr: "is not a size"},
		{in: "MiB", wantErr: "is not a size"},
		{in: "-1", wantErr: "is not a size"},
		{in: "64MB", wantErr: `unknown unit "MB" in "64MB"; use B, KiB, MiB or GiB`},
		{in: "64k", wantErr: `unknown unit "k"`},
		{in: "1TiB", wantErr: `unknown unit "TiB"`},
		{in: "1.5MiB", wantErr: "a size is a whole number"},
		{in: "8589934592GiB", wantErr: "too large"},
		{in: "99999999999999999999", wantErr: "too large"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := config.ParseByteSize(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseByteSize(%q) = %v, %v; want an error containing %q", tt.in, got, err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("ParseByteSize(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
			}
		})
	}
}

func TestByteSizeYAML(t *testing.T) {
	tests := []struct {
		name    string
		yaml    string
		want    config.ByteSize
		wantErr string
	}{
		{name: "integer", yaml: "1048576", want: 1 << 20},
		{name: "hex integer", yaml: "0x100000", want: 1 << 20},
		{name: "unit", yaml: "64KiB", want: 64 << 10},
		{name: "quoted", yaml: `"1GiB"`, want: 1 << 30},
		{name: "negative", yaml: "-5", wantErr: "negative"},
		{name: "float", yaml: "1.5", wantErr: "1.5 is not a size"},
		{name: "decimal unit", yaml: "1MB", wantErr: `unknown unit "MB"`},
		{name: "mapping", yaml: "{a: 1}", wantErr: "got a mapping"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b config.ByteSize
			err := yaml.Unmarshal([]byte(tt.yaml), &b)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Unmarshal(%q) error = %v, want it to contain %q", tt.yaml, err, tt.wantErr)
				}
				return
			}
			if err != nil || b != tt.want {
				t.Fatalf("Unmarshal(%q) = %v, %v; want %v", tt.yaml, b, err, tt.want)
			}
			if b.Int() != int(tt.want) {
				t.Errorf("Int() = %d, want %d", b.Int(), int(tt.want))
			}
		})
	}
}

func TestByteSizeString(t *testing.T) {
	tests := []struct {
		in   config.ByteSize
		want string
	}{
		{0, "0B"}, {1000, "1000B"}, {1025, "1025B"}, {1536, "1536B"}, {64 * config.KiB, "64KiB"},
		{64 * config.MiB, "64MiB"}, {config.GiB, "1GiB"}, {3 * config.GiB, "3GiB"},
	}
	for _, tt := range tests {
		if got := tt.in.String(); got != tt.want {
			t.Errorf("ByteSize(%d).String() = %q, want %q", int64(tt.in), got, tt.want)
		}
		back, err := config.ParseByteSize(tt.in.String())
		if err != nil || back != tt.in {
			t.Errorf("ParseByteSize(%q) = %v, %v; want %d", tt.in.String(), back, err, int64(tt.in))
		}
	}
}

// TestMarshalRoundTrip checks that a Config written as YAML reads back the
// same, durations and sizes included.
func TestMarshalRoundTrip(t *testing.T) {
	t.Setenv("TEST_VERIFIER", testVerifier)
	c, err := config.Parse([]byte(user+dsqlRoute+"    pool: {idle_timeout: 90s}\n"), "test.yaml")
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	out, err := yaml.Marshal(c)
	if err != nil {
		t.Fatalf("Marshal: %v", err)
	}
	back, err := config.Parse(out, "marshalled")
	if err != nil {
		t.Fatalf("Parse of marshalled config: %v\n%s", err, out)
	}
	if diff := cmp.Diff(c, back, ignoreResolved); diff != "" {
		t.Errorf("round trip mismatch (-want +got):\n%s", diff)
	}
}
