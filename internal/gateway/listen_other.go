//go:build !unix || solaris

package gateway

import (
	"context"
	"net"
)

// listen opens a plain TCP listener. Windows and Solaris (illumos) have no
// SO_REUSEPORT: two gateways cannot share the port there, so a rolling
// restart must stop the old process before the new one listens.
func listen(addr string) (net.Listener, error) {
	var lc net.ListenConfig
	return lc.Listen(context.Background(), "tcp", addr)
}
