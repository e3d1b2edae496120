package config_test

import (
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"go.yaml.in/yaml/v3"

	"github.com/dsqlgate/dsqlgate/config"
)

// FuzzParse checks that no input panics, that every failure is a
// *ValidationError with at least one placed problem, and that an accepted
// Config validates again and survives a YAML round trip.
//
// Parse reads no secret, and the seeds name no DSQLGATE_ variable (the
// sample's are renamed), so that inputs are judged on the file alone
// (env_test.go covers the environment).
func FuzzParse(f *testing.F) {
	if sample, err := os.ReadFile(samplePath); err == nil {
		f.Add(strings.NewReplacer("DSQLGATE_ALICE_VERIFIER", "TEST_VERIFIER", "DSQLGATE_LOCAL_PASSWORD", "TEST_PASSWORD").Replace(string(sample)))
	}
	f.Add(user + dsqlRoute)
	f.Add(user + dsqlRoute + "    pool: {size: 0, dial_rate: .inf}\n")
	f.Add("routes: &r [*r]\n")
	f.Add("a: &a {<<: *a}\n")
	f.Add("<<: [{listen: ':1'}, 5]\n")
	f.Add("---\n---\n")
	f.Add("limits: {max_message_size: 99999999999999999999GiB}\n")
	f.Add(user + dsqlRoute + "    user_roles: {alice: a, <<: {bob: b}}\n")
	f.Fuzz(func(t *testing.T, doc string) {
		c, err := config.Parse([]byte(doc), "fuzz.yaml")
		if err != nil {
			var ve *config.ValidationError
			if !errors.As(err, &ve) || len(ve.Problems) == 0 {
				t.Fatalf("error %v (%T) is not a non-empty *ValidationError", err, err)
			}
			for _, p := range ve.Problems {
				if p.File != "fuzz.yaml" || p.Env != "" || p.Line < 0 || p.Message == "" {
					t.Fatalf("badly placed problem %#v", p)
				}
			}
			return
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("accepted config fails Validate: %v", err)
		}
		out, err := yaml.Marshal(c)
		if err != nil {
			t.Fatalf("Marshal: %v", err)
		}
		back, err := config.Parse(out, "marshalled")
		if err != nil {
			t.Fatalf("marshalled config does not parse: %v\n%s", err, out)
		}
		if diff := cmp.Diff(c, back, ignoreResolved); diff != "" {
			t.Fatalf("round trip mismatch (-want +got):\n%s", diff)
		}
	})
}

// FuzzParseByteSize checks that an accepted size is not negative and that
// its String form parses back to it.
func FuzzParseByteSize(f *testing.F) {
	for _, s := range []string{"0", "512B", "64KiB", "1 MiB", "1GiB", "8589934591GiB", "1.5MiB", "-1", "64MB"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		b, err := config.ParseByteSize(s)
		if err != nil {
			return
		}
		if b < 0 {
			t.Fatalf("ParseByteSize(%q) = %d, negative", s, int64(b))
		}
		back, err := config.ParseByteSize(b.String())
		if err != nil || back != b {
			t.Fatalf("ParseByteSize(%q) = %v, %v; want %d", b.String(), back, err, int64(b))
		}
	})
}

// FuzzRegionFromEndpoint checks that a region found is one the route's
// region check accepts.
func FuzzRegionFromEndpoint(f *testing.F) {
	f.Add("abcdefghijklmnopqrstuvwxyz.dsql.us-east-1.on.aws")
	f.Add("abc.dsql-fnh4.eu-west-1.on.aws.")
	f.Fuzz(func(t *testing.T, host string) {
		region, ok := config.RegionFromEndpoint(host)
		if !ok {
			return
		}
		if !strings.Contains(strings.ToLower(host), "."+region+".on.aws") {
			t.Fatalf("RegionFromEndpoint(%q) = %q, which is not in the host", host, region)
		}
	})
}
