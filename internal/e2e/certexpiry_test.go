package e2e

import (
	"crypto/x509"
	"encoding/pem"
	"os"
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
		const expiry = "dsqlgate_client_tls_certificate_expiry_timestamp_seconds"
		if got, ok := harness.Scrape(t, st.Gateway.OpsAddr)[expiry]; !ok || int64(got) != want {
			t.Errorf("client TLS %t: %s = %v (present %v), want %d", withTLS, expiry, got, ok, want)
		}
		st.Close()
	}
}
