package compat

import (
	"testing"

	"github.com/jackc/pgerrcode"
)

func TestRefuseStartupParameter(t *testing.T) {
	for _, name := range []string{"application_name", "client_encoding", "datestyle", "extra_float_digits",
		"intervalstyle", "timezone", "search_path", "enable_seqscan", "enable_hashjoin"} {
		if e := RefuseStartupParameter(name); e != nil {
			t.Errorf("%s: refused (%v); DSQL accepts it", name, e)
		}
	}
	for _, name := range []string{"default_transaction_read_only", "work_mem", "geqo", "enable", "search_path_x"} {
		e := RefuseStartupParameter(name)
		if e == nil {
			t.Errorf("%s: accepted; DSQL refuses it", name)
			continue
		}
		if e.Code != pgerrcode.FeatureNotSupported || e.Hint == "" {
			t.Errorf("%s: %+v, want 0A000 with a hint", name, e)
		}
	}
}
