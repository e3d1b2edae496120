package scram

import (
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"errors"
	"hash"
)

// TLSServerEndPoint returns the tls-server-end-point channel binding data of
// cert, the certificate the gateway presents to its clients (RFC 5929
// section 4.1): the hash of the certificate's DER bytes with the hash
// function of its signature algorithm, SHA-256 when that is MD5 or SHA-1.
// libpq and pgx compute the same on their side. A signature algorithm
// without a single hash function (Ed25519, for one) has no binding data:
// TLSServerEndPoint returns an error, and the server must then advertise
// SCRAM-SHA-256 only.
func TLSServerEndPoint(cert *x509.Certificate) ([]byte, error) {
	if cert == nil || len(cert.Raw) == 0 {
		return nil, errors.New("scram: tls-server-end-point: no certificate")
	}
	var h hash.Hash
	switch cert.SignatureAlgorithm {
	case x509.MD5WithRSA, x509.SHA1WithRSA, x509.DSAWithSHA1, x509.ECDSAWithSHA1,
		x509.SHA256WithRSA, x509.SHA256WithRSAPSS, x509.DSAWithSHA256, x509.ECDSAWithSHA256:
		h = sha256.New()
	case x509.SHA384WithRSA, x509.SHA384WithRSAPSS, x509.ECDSAWithSHA384:
		h = sha512.New384()
	case x509.SHA512WithRSA, x509.SHA512WithRSAPSS, x509.ECDSAWithSHA512:
		h = sha512.New()
	default:
		return nil, errors.New("scram: tls-server-end-point is undefined for the certificate's signature algorithm " + cert.SignatureAlgorithm.String())
	}
	h.Write(cert.Raw)
	return h.Sum(nil), nil
}
