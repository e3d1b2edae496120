package main

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/dsqlgate/dsqlgate/internal/selfsigned"
)

type certFlags struct {
	certFile string
	keyFile  string
	hosts    []string // DNS names and IP addresses the certificate is for
	days     int      // validity from now, in days
	force    bool     // overwrite existing files
}

func newCertCommand(st streams) *cobra.Command {
	var f certFlags
	cmd := &cobra.Command{
		Use:   "cert",
		Short: "Write a self-signed certificate and key for the client-facing TLS listener (local use)",
		Long: `Write a self-signed ECDSA P-256 certificate and its private key (mode 0600) for
client_tls, for local use and tests; production wants a certificate from a CA
(an ACME client's files work as they are, and are reloaded when renewed).
Each --host that is an IP address becomes an IP SAN, any other a DNS SAN.
Existing files are left alone unless --force is given. Clients can trust the
certificate itself, e.g. psql "sslmode=verify-full sslrootcert=dsqlgate.crt".`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runCert(f, st, time.Now)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.certFile, "cert-file", "dsqlgate.crt", "where to write the certificate (PEM)")
	fl.StringVar(&f.keyFile, "key-file", "dsqlgate.key", "where to write the private key (PEM, mode 0600)")
	fl.StringSliceVar(&f.hosts, "host", []string{"localhost", "127.0.0.1", "::1"}, "DNS name or IP address the certificate is for; repeatable")
	fl.IntVar(&f.days, "days", 365, "days the certificate is valid")
	fl.BoolVar(&f.force, "force", false, "overwrite existing files")
	return cmd
}

// runCert writes the certificate and key that f describes, valid from now.
func runCert(f certFlags, st streams, now func() time.Time) error {
	const maxDays = 100 * 366 // and time.Duration does not overflow
	if f.days < 1 || f.days > maxDays {
		return fmt.Errorf("--days %d: want 1 to %d", f.days, maxDays)
	}
	if f.certFile == "" || f.keyFile == "" {
		return errors.New("--cert-file and --key-file must not be empty")
	}
	if filepath.Clean(f.certFile) == filepath.Clean(f.keyFile) {
		return errors.New("--cert-file and --key-file must differ")
	}
	var hosts []string
	for _, h := range f.hosts {
		if h = strings.TrimSpace(h); h == "" {
			return errors.New("--host: empty name")
		}
		hosts = append(hosts, h)
	}
	if len(hosts) == 0 {
		return errors.New("--host: at least one name or address is needed")
	}
	if !f.force {
		for _, path := range []string{f.certFile, f.keyFile} {
			if _, err := os.Lstat(path); err == nil {
				return fmt.Errorf("%s exists; pass --force to overwrite it", path)
			} else if !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("check %s: %w", path, err)
			}
		}
	}
	pair, err := selfsigned.Generate(hosts, now(), time.Duration(f.days)*24*time.Hour)
	if err != nil {
		return err
	}
	// The key first: a certificate without its key is of no use.
	if err := writeFileReplacing(f.keyFile, pair.KeyPEM, 0o600); err != nil {
		return err
	}
	if err := writeFileReplacing(f.certFile, pair.CertPEM, 0o644); err != nil {
		return err
	}
	der := pair.Cert.Raw
	tmpl := pair.Cert

	certPath, keyPath := absPath(f.certFile), absPath(f.keyFile)
	sum := sha256.Sum256(der)
	fmt.Fprintf(st.out, "certificate: %s (for %s; valid until %s)\n", certPath,
		strings.Join(hosts, ", "), tmpl.NotAfter.UTC().Format(time.DateOnly))
	fmt.Fprintf(st.out, "private key: %s (mode 0600)\n", keyPath)
	fmt.Fprintf(st.out, "sha256 fingerprint: %s\n", strings.ReplaceAll(fmt.Sprintf("% X", sum[:]), " ", ":"))
	fmt.Fprintf(st.out, "in the config: client_tls: {cert_file: %s, key_file: %s}\n",
		strconv.Quote(certPath), strconv.Quote(keyPath))
	return nil
}

// writeFileReplacing writes data to path with exactly mode perm: to a new
// file beside it first, then renamed over path, so that a reader (a running
// gateway reloading its certificate) never sees half a file and an existing
// key file's looser mode is not kept.
func writeFileReplacing(path string, data []byte, perm fs.FileMode) (err error) {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if err := tmp.Chmod(perm); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if _, err := tmp.Write(data); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// absPath is path made absolute for printing, or path when that fails.
func absPath(path string) string {
	if abs, err := filepath.Abs(path); err == nil {
		return abs
	}
	return path
}
