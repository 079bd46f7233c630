//go:build unix

package mcppool

import (
	"syscall"
)

// closedByPeer reports whether the server closed this idle connection, or
// sent something on it unasked (which it never does on a healthy HTTP/1.1
// connection between responses): one non-blocking peek at the socket.
func (c *h1Conn) closedByPeer() bool {
	if c.br.Buffered() > 0 {
		return true
	}
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
