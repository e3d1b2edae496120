package pgwire

import (
	"testing"

	"github.com/dsqlgate/dsqlgate/config"
)

// TestShowConfigChangeable: SHOW CONFIG's changeable column must say no for
// every key a reload cannot change (restartOnly), reuse_port included.
func TestShowConfigChangeable(t *testing.T) {
	g := startMemGateway(t, config.PoolTransaction)
	res := g.srv.showConfig()
	found := map[string]string{}
	for _, row := range res.rows {
		found[row[0]] = row[3]
	}
	for _, k := range restartOnly {
		if v, ok := found[k]; !ok || v != "no" {
			t.Errorf("SHOW CONFIG %s: changeable %q (present %t), want no: a reload refuses to change it", k, v, ok)
		}
	}
}
