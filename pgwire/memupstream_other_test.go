//go:build !unix

package pgwire

import "syscall"

// peekSocket cannot peek here: the caller falls back to a short read
// deadline.
func peekSocket(sc syscall.Conn) (readable, ok bool) { return false, false }
