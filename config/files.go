package config

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
)

// checkFiles checks the files the configuration names that the gateway
// reads as it starts: the client certificate and its key, which must load
// as a pair, and each route's CA file. Load and Parse run it after
// Validate, which reads nothing; the users file is the users package's.
func (c *Config) checkFiles() []Problem {
	k := &checker{src: c.src}
	t := &c.ClientTLS
	var cert, key []byte
	if t.CertFile != "" {
		cert = k.readable("client_tls.cert_file", t.CertFile)
	}
	if t.KeyFile != "" {
		key = k.readable("client_tls.key_file", t.KeyFile)
	}
	if cert != nil && key != nil {
		// crypto/tls describes what is wrong without quoting the key.
		if _, err := tls.X509KeyPair(cert, key); err != nil {
			k.add("client_tls.cert_file", "%s and %s are not a certificate and its key: %v", t.CertFile, t.KeyFile, err)
		}
	}
	if a := &t.ACME; a.Enabled() && a.CAFile != "" {
		const key = "client_tls.acme.ca_file"
		if pem := k.readable(key, a.CAFile); pem != nil && !x509.NewCertPool().AppendCertsFromPEM(pem) {
			k.add(key, "%s holds no PEM certificate", a.CAFile)
		}
	}
	for i, r := range c.Routes {
		if r.CAFile == "" {
			continue
		}
		key := fmt.Sprintf("routes[%d].ca_file", i)
		if pem := k.readable(key, r.CAFile); pem != nil && !x509.NewCertPool().AppendCertsFromPEM(pem) {
			k.add(key, "%s holds no PEM certificate", r.CAFile)
		}
	}
	return k.problems
}

// maxSmallFile bounds the files Load reads: certificate, key, CA and
// users files.
const maxSmallFile = 4 << 20

// readable checks that path names a regular file of at most 4 MiB that
// this process can read, and returns its content, or nil after adding a
// problem. Devices and pipes are refused: reading /dev/zero never ends.
func (k *checker) readable(key, path string) []byte {
	data, err := ReadSmallFile(path)
	if err != nil {
		k.add(key, "cannot read %s: %v", path, err)
		return nil
	}
	return data
}

// ReadSmallFile returns the content of a file the configuration names
// (certificate, key, CA, users file), which must be a regular file of at
// most 4 MiB: reading a device or a pipe (/dev/zero) might never end. Its
// errors do not repeat the path.
func ReadSmallFile(path string) ([]byte, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, unwrapPath(err)
	}
	switch {
	case fi.IsDir():
		return nil, errors.New("it is a directory")
	case !fi.Mode().IsRegular():
		return nil, errors.New("it is not a regular file")
	case fi.Size() > maxSmallFile:
		return nil, fmt.Errorf("it is larger than %s", ByteSize(maxSmallFile))
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, unwrapPath(err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxSmallFile+1))
	if err != nil {
		return nil, unwrapPath(err)
	}
	if len(data) > maxSmallFile {
		return nil, fmt.Errorf("it is larger than %s", ByteSize(maxSmallFile))
	}
	return data, nil
}

// unwrapPath drops the "open path:" of an *fs.PathError, which the message
// already names.
func unwrapPath(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}
