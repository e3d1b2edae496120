//go:build !unix

package authbridge

// peekIdle cannot look at the socket here (Windows has no peek that
// net's overlapped sockets answer without waiting), so it reports every
// socket idle. An upstream that died while idle is then found by the
// first write or read on it instead, which fails that client's statement
// with a lost connection where on unix systems the pool would have dialled
// a fresh one; and an idle reserved upstream's notifications wait for the
// session's next read of it.
func peekIdle(uintptr) bool { return true }
