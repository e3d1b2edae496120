package gateway

import (
	"errors"
	"fmt"
	"syscall"
)

// explainListenError adds to a listen error what a port in use means here.
func explainListenError(err error, reusePort bool) error {
	if err == nil || !errors.Is(err, syscall.EADDRINUSE) {
		return err
	}
	if reusePort {
		return fmt.Errorf("%w (another process holds the port without reuse_port: both must set it to share the port)", err)
	}
	return fmt.Errorf("%w (another process holds the port; to share it with another dsqlgate during a rolling restart, set reuse_port: true in both)", err)
}
