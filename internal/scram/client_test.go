package scram_test

import "github.com/dsqlgate/dsqlgate/internal/scramclient"

// newTestClient is the client side of the tests' exchanges: scramclient,
// written from the RFCs and sharing no code with this package, with RFC
// 7677's example nonce.
func newTestClient(password, gs2Header string, cbData []byte) *scramclient.Client {
	return &scramclient.Client{Password: password, GS2Header: gs2Header, CBData: cbData, Nonce: "fyko+d2lbbFgONRv9qkxdawL"}
}
