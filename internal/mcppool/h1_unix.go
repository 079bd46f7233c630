//go:build unix

package mcppool

import (
	"syscall"
)

// closedByPeer reports whether the server closed this idle connection, or
// sent something on it unasked (which it never does on a healthy HTTP/1.1
// connection between responses): one non-blocking peek at the socket.
func (c *h1Conn) closedByPeer() bool {
	rc, ok, err := c.rawConn()
	if !ok {
		return err != nil
	}
	dead := false
	err = rc.Read(func(fd uintptr) bool {
		n, err := peek(fd)
		dead = n >= 0 && err == nil || err != nil && !nothingYet(err) && err != syscall.EINTR
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
	rc, ok, _ := c.rawConn()
	if !ok {
		return nil // the read that follows waits
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
		_, err := peek(fd)
		// Bytes, the end, or an error the read that follows reports.
		return !nothingYet(err)
	})
}

// rawConn is c's socket; ok is false where there is none to peek at (err
// when the connection has no socket any more).
func (c *h1Conn) rawConn() (rc syscall.RawConn, ok bool, err error) {
	sc, isSock := c.nc.(syscall.Conn)
	if !isSock {
		return nil, false, nil
	}
	rc, err = sc.SyscallConn()
	return rc, err == nil, err
}

// peek looks at the socket's next byte without taking it or waiting.
func peek(fd uintptr) (int, error) {
	var b [1]byte
	n, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
	return n, err
}

// nothingYet reports whether a peek found the socket empty and open.
func nothingYet(err error) bool { return err == syscall.EAGAIN || err == syscall.EWOULDBLOCK }
