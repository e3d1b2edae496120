package main

import (
	"runtime/debug"
	"strings"
	"testing"
)

func TestDescribeVersion(t *testing.T) {
	vcs := func(rev, modified string) *debug.BuildInfo {
		bi := &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}}
		if rev != "" {
			bi.Settings = append(bi.Settings, debug.BuildSetting{Key: "vcs.revision", Value: rev})
		}
		if modified != "" {
			bi.Settings = append(bi.Settings, debug.BuildSetting{Key: "vcs.modified", Value: modified})
		}
		return bi
	}
	const rev = "4e980ad3c2b1f00dfeedbeef0123456789abcdef"
	for _, tc := range []struct {
		name, stamped string
		bi            *debug.BuildInfo
		want          string
	}{
		{"no build info", "", nil, "dev"},
		{"stamped only", "v0.3.0", nil, "v0.3.0"},
		{"go install of a version", "", &debug.BuildInfo{Main: debug.Module{Version: "v0.3.0"}}, "v0.3.0"},
		{"devel without vcs", "", vcs("", ""), "dev"},
		{"devel clean tree", "", vcs(rev, "false"), "dev (rev 4e980ad3c2b1)"},
		{"devel modified tree", "", vcs(rev, "true"), "dev (rev 4e980ad3c2b1, modified)"},
		{"stamped by git describe", "4e980ad-dirty", vcs(rev, "true"), "4e980ad-dirty"},
		{"stamped tag, vcs known", "v0.3.0", vcs(rev, "false"), "v0.3.0 (rev 4e980ad3c2b1)"},
	} {
		if got := describeVersion(tc.stamped, tc.bi); got != tc.want {
			t.Errorf("%s: describeVersion = %q, want %q", tc.name, got, tc.want)
		}
	}
}

func TestVersionFlag(t *testing.T) {
	for _, args := range [][]string{{"--version"}, {"version"}} {
		var out, errb strings.Builder
		if code := execute(args, streams{in: strings.NewReader(""), out: &out, err: &errb}); code != 0 {
			t.Fatalf("%v: exit %d: %s", args, code, errb.String())
		}
		if !strings.HasPrefix(out.String(), "dsqlgate ") || !strings.Contains(out.String(), "go1.") {
			t.Errorf("%v printed %q", args, out.String())
		}
	}
}
