//go:build unix

package mcppool

import (
	"syscall"
)

// closedByPeer reports whether the server closed this idle connection, or
// sent something on it unasked (which it never does on a healthy HTTP/1.1
// connection between responses): one non-blocking peek at the socket.
func (c *h1Conn) closedByPeer() bool {
	sc, ok := c.nc.(syscall.Conn)
	if !ok {
		return false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return true
	}
	dead := false
	err = rc.Read(func(fd uintptr) bool {
		var b [1]byte
		n, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		dead = n >= 0 && err == nil || err != nil && err != syscall.EAGAIN && err != syscall.EWOULDBLOCK && err != syscall.EINTR
		return true
	})
	return dead || err != nil
}

// waitReadable waits until the response starts to arrive (or the deadline
// that a cancelled context sets) without a buffer, so a call waiting for its
// server holds no read buffer, and waits a few frames shallower than a
// blocked read would. It peeks at the socket before it waits: readiness
// alone would miss a response that came before the wait began.
func (c *h1Conn) waitReadable() error {
	sc, ok := c.nc.(syscall.Conn)
	if !ok {
		return nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	peeked := false
	return rc.Read(func(fd uintptr) bool {
		if peeked {
			// Woken by the poller after the peek found nothing: what came
			// is the answer's start, its end or an error, and the read that
			// follows takes it (a wake with nothing there would leave that
			// read to wait itself).
			return true
		}
		peeked = true
		var b [1]byte
		_, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		// Bytes, the end, or an error the read that follows reports.
		return err != syscall.EAGAIN && err != syscall.EWOULDBLOCK
	})
}
