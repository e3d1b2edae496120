//go:build !unix || solaris

package gateway

import (
	"context"
	"errors"
	"fmt"
	"net"
	"runtime"
	"syscall"
)

// listen opens a plain TCP listener. Windows and Solaris (illumos) have no
// SO_REUSEPORT: two gateways cannot share a port there, so reuse_port is
// refused and a rolling restart must stop the old process before the new
// one listens.
func listen(addr string, reusePort bool) (net.Listener, error) {
	if reusePort {
		return nil, errors.New("reuse_port is not supported on " + runtime.GOOS + ": it has no SO_REUSEPORT")
	}
	var lc net.ListenConfig
	l, err := lc.Listen(context.Background(), "tcp", addr)
	if err != nil && errors.Is(err, syscall.EADDRINUSE) {
		// Not explainListenError's hint: reuse_port is refused here.
		err = fmt.Errorf("%w (another process holds the port; stop it first: %s has no SO_REUSEPORT)", err, runtime.GOOS)
	}
	return l, err
}
