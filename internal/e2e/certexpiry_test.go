package e2e

import (
	"crypto/x509"
	"encoding/pem"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dsqlgate/dsqlgate/internal/harness"
)

// TestCertificateExpiryGauge: /metrics exports when the client
// certificate in use expires (the file pair here; the ACME test checks it
// follows a renewal), and 0 without client TLS, from start-up.
func TestCertificateExpiryGauge(t *testing.T) {
	ctx := testCtx(t, time.Minute)
	for _, withTLS := range []bool{true, false} {
		st, err := harness.StartStack(ctx, harness.StackOptions{ClientTLS: withTLS})
		if err != nil {
			t.Fatal(err)
		}
		var want int64
		if withTLS {
			data, err := os.ReadFile(st.ClientCAFile)
			if err != nil {
				t.Fatal(err)
			}
			block, _ := pem.Decode(data)
			cert, err := x509.ParseCertificate(block.Bytes)
			if err != nil {
				t.Fatal(err)
			}
			want = cert.NotAfter.Unix()
		}
		if got := scrapeGauge(t, st.Gateway.OpsAddr, "dsqlgate_client_tls_certificate_expiry_timestamp_seconds"); got != want {
			t.Errorf("client TLS %t: expiry gauge %d, want %d", withTLS, got, want)
		}
		st.Close()
	}
}

// scrapeGauge returns the value of an unlabelled series from /metrics.
func scrapeGauge(t *testing.T, ops, name string) int64 {
	t.Helper()
	resp, err := http.Get("http://" + ops + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(body), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("%s %s: %v", name, v, err)
			}
			return int64(f)
		}
	}
	t.Fatalf("no %s in /metrics", name)
	return 0
}
