// Command devstack starts the harness stack and runs client run.sh files
// with the runner's environment. Development aid only; not committed.
package main

import (
	"context"
	"flag"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/dsqlgate/dsqlgate/config"
	"github.com/dsqlgate/dsqlgate/internal/harness"
	"github.com/dsqlgate/dsqlgate/internal/pgtest"
)

func main() {
	modes := flag.String("modes", "transaction,session", "")
	flag.Parse()
	failed := false
	for _, mode := range strings.Split(*modes, ",") {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		st, err := harness.StartStack(ctx, harness.StackOptions{Control: true, ClientTLS: true,
			Gateway: func(c *config.Config) {
				for i := range c.Routes {
					c.Routes[i].Pool.Mode = mode
				}
			}})
		cancel()
		if err != nil {
			fmt.Println("start:", err)
			os.Exit(1)
		}
		for _, dir := range flag.Args() {
			schema := "c_" + pgtest.RandomHex(4)
			if out, err := st.PG.Psql(context.Background(), "postgres", "-qc", "CREATE SCHEMA "+schema+" AUTHORIZATION admin"); err != nil {
				fmt.Println("schema:", err, out)
				os.Exit(1)
			}
			host, port, _ := strings.Cut(st.Gateway.Addr, ":")
			q := url.Values{"sslmode": {"verify-full"}, "sslrootcert": {st.ClientCAFile}}
			u := url.URL{Scheme: "postgres", User: url.UserPassword(st.User, st.Password), Host: st.Gateway.Addr, Path: "/" + harness.StackDatabase, RawQuery: q.Encode()}
			abs, _ := filepath.Abs(dir)
			rctx, rcancel := context.WithTimeout(context.Background(), 3*time.Minute)
			cmd := exec.CommandContext(rctx, "./run.sh")
			cmd.Dir = abs
			cmd.Env = append(os.Environ(),
				"DSQLGATE_TEST_URL="+u.String(),
				"DSQLGATE_TEST_HOST="+host, "DSQLGATE_TEST_PORT="+port,
				"DSQLGATE_TEST_USER="+st.User, "DSQLGATE_TEST_PASSWORD="+st.Password,
				"DSQLGATE_TEST_DATABASE="+harness.StackDatabase,
				"DSQLGATE_TEST_CA_FILE="+st.ClientCAFile,
				"DSQLGATE_TEST_CONTROL_URL="+st.ControlURL,
				"DSQLGATE_TEST_MODE="+mode,
				"DSQLGATE_TEST_SCHEMA="+schema)
			cmd.Stderr = os.Stderr
			start := time.Now()
			out, err := cmd.Output()
			rcancel()
			fmt.Printf("=== %s mode=%s (%s) err=%v\n", filepath.Base(abs), mode, time.Since(start).Round(time.Millisecond), err)
			for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
				fmt.Println("   ", l)
				if strings.Contains(l, `"ok":false`) {
					failed = true
				}
			}
			if err != nil {
				failed = true
			}
		}
		st.Close()
	}
	if failed {
		fmt.Println("FAILED")
		os.Exit(1)
	}
}
