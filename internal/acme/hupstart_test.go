package acme_test

import (
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/dsqlgate/dsqlgate/internal/scram"
)

// TestSIGHUPWhileObtaining: `dsqlgate serve` answers health checks while
// ACME obtains the first certificate, which can take minutes; a SIGHUP
// then (a configuration reloader, systemctl reload) must not kill the
// process, as Go's default action for the signal does while nothing
// listens for it.
func TestSIGHUPWhileObtaining(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs dsqlgate")
	}
	bin := buildGateway(t)
	ports := freePorts(t, 4)
	v, err := scram.GenerateVerifier("x")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	admin := "127.0.0.1:" + strconv.Itoa(ports[1])
	doc := fmt.Sprintf(`listen: 127.0.0.1:%d
metrics: {listen: %s}
client_tls:
  acme:
    domains: [hup.dsqlgate-acme.test]
    directory: https://127.0.0.1:%d/dir
    dns_provider: pebble-challtestsrv
    challtestsrv_url: http://127.0.0.1:%d
    storage: %s
users:
  - name: u
    verifier: %q
routes:
  - database: app
    kind: postgres
    endpoint: 127.0.0.1:%d
    user: u
    password: p
`, ports[0], admin, ports[2], ports[2], filepath.Join(dir, "acme"), v.Encode(), ports[3])
	cfgFile := filepath.Join(dir, "dsqlgate.yaml")
	if err := os.WriteFile(cfgFile, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	log := &syncBuffer{}
	cmd := exec.Command(bin, "serve", "--config", cfgFile)
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
	})
	waitFor(t, 30*time.Second, "/livez while the certificate is obtained", func() error {
		select {
		case <-exited:
			t.Fatalf("dsqlgate exited: %s\n%s", cmd.ProcessState, log.String())
		default:
		}
		resp, err := http.Get("http://" + admin + "/livez")
		if err != nil {
			return err
		}
		resp.Body.Close()
		return nil
	})
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	select {
	case <-exited:
		t.Fatalf("dsqlgate died of a SIGHUP while obtaining its certificate: %s\n%s", cmd.ProcessState, tail(log.String(), 4000))
	case <-time.After(2 * time.Second):
	}
}
