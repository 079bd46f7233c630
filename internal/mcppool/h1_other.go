//go:build !unix

package mcppool

// closedByPeer cannot peek at the socket here; a connection the server
// closed fails its next request.
func (c *h1Conn) closedByPeer() bool { return false }

// waitReadable leaves the wait to the first read.
func (c *h1Conn) waitReadable() error { return nil }
