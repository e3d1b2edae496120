package authbridge

import (
	"syscall"
	"unsafe"
)

// peekIdle reports whether the socket fd has nothing to be read: a
// non-blocking peek of one byte fails with EAGAIN.
func peekIdle(fd uintptr) bool {
	// A non-blocking peek returns at once: no need for the scheduler's
	// bookkeeping around a system call that may block.
	var buf [1]byte
	_, _, errno := syscall.RawSyscall6(syscall.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&buf[0])), 1,
		syscall.MSG_PEEK|syscall.MSG_DONTWAIT, 0, 0)
	return errno == syscall.EAGAIN
}
