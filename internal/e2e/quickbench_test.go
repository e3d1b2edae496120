package e2e

import (
	"context"
	"net/url"
	"os"
	"os/exec"
	"regexp"
	"runtime/pprof"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dsqlgate/dsqlgate/config"
	"github.com/dsqlgate/dsqlgate/internal/gateway"
	"github.com/dsqlgate/dsqlgate/internal/pgtest"
	"github.com/dsqlgate/dsqlgate/internal/scram"
)

// TestQuickBench (QUICKBENCH=1; QB_MODE, QB_PROTOS, QB_EXTRA=pgbench args,
// QB_PROFILE=file) profiles the gateway in front of a plain
// PostgreSQL under pgbench: a development aid, not part of the suite.
func TestQuickBench(t *testing.T) {
	if os.Getenv("QUICKBENCH") == "" {
		t.Skip("set QUICKBENCH=1")
	}
	ctx := testCtx(t, 10*time.Minute)
	pg, err := pgtest.StartPostgres(ctx, pgtest.PostgresOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer pg.Close()
	bin := pg.BinDir() + "/pgbench"
	if out, err := exec.Command(bin, "-i", "-s", "5", "-q", "-h", pg.SocketDir, "-p", strconv.Itoa(pg.Port), "-U", "postgres", "postgres").CombinedOutput(); err != nil {
		t.Fatal(string(out))
	}
	v, _ := scram.GenerateVerifier("pw")
	cfg := config.Default()
	cfg.Listen = "127.0.0.1:0"
	cfg.Metrics.Listen = ""
	cfg.Users = []config.User{{Name: "bench", Verifier: v.Encode()}}
	r := config.DefaultRoute(config.KindPostgres, "postgres")
	r.Endpoint, r.User, r.Password, r.TLS = pg.Addr(), "postgres", pg.Password, "disable"
	r.Pool.Mode = os.Getenv("QB_MODE")
	if r.Pool.Mode == "" {
		r.Pool.Mode = "transaction"
	}
	cfg.Routes = []config.Route{r}
	gw, err := gateway.Start(context.Background(), cfg, gateway.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer gw.Close()
	host, port, _ := strings.Cut(gw.Addr, ":")
	re := regexp.MustCompile(`tps = ([0-9.]+) \(without`)
	run := func(name, password string, args ...string) {
		c := exec.Command(bin, args...)
		c.Env = append(os.Environ(), "PGSSLMODE=disable", "PGPASSWORD="+password)
		out, _ := c.CombinedOutput()
		if m := re.FindStringSubmatch(string(out)); m != nil {
			t.Logf("%-40s tps %s", name, m[1])
		} else {
			t.Logf("%s: %s", name, out)
		}
	}
	modes := strings.Fields(os.Getenv("QB_PROTOS"))
	if len(modes) == 0 {
		modes = []string{"simple", "prepared"}
	}
	for _, mode := range modes {
		run("direct -M "+mode, pg.Password, "-S", "-M", mode, "-c", "16", "-j", "2", "-T", "6", "-n", "-h", "127.0.0.1", "-p", strconv.Itoa(pg.Port), "-U", "postgres", "postgres")
		if f := os.Getenv("QB_PROFILE"); f != "" {
			pf, _ := os.Create(f + "." + mode)
			pprof.StartCPUProfile(pf)
		}
		args := append([]string{"-S", "-M", mode, "-c", "16", "-j", "2", "-T", "6", "-n", "-h", host, "-p", port, "-U", "bench"}, strings.Fields(os.Getenv("QB_EXTRA"))...)
		run("gateway -M "+mode+" "+os.Getenv("QB_EXTRA"), "pw", append(args, "postgres")...)
		pprof.StopCPUProfile()
	}
	_ = url.URL{}
}
