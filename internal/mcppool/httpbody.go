package mcppool

import (
	"bytes"
	"io"
	"mime"
	"net/http"
)

// wholeBodies is the transport of the MCP servers' HTTP clients. mcp-go
// decodes a JSON response with a json.Decoder, which stops at the end of the
// JSON value, and cancels the request before it closes the body. A body not
// read to its end (any result over about 2 KB leaves its last bytes unread:
// the chunked encoding's terminator, the encoder's newline) makes net/http
// close the connection, so every such call dialed a new one, and over https
// paid a new TLS handshake. RoundTrip reads a response to its end first, up
// to eagerBodyMax, and hands on the bytes: the connection is back in the
// pool before mcp-go sees the body. SSE streams pass through as they come.
type wholeBodies struct{ http.RoundTripper }

// eagerBodyMax bounds what RoundTrip reads ahead; the rest of a larger body
// follows from the connection.
const eagerBodyMax = 8 << 20

func (t wholeBodies) RoundTrip(req *http.Request) (*http.Response, error) {
	return readWhole(t.RoundTripper.RoundTrip(req))
}

// readWhole is what RoundTrip does with a round trip's outcome.
func readWhole(resp *http.Response, err error) (*http.Response, error) {
	if err != nil || resp.Body == nil || resp.Body == http.NoBody {
		return resp, err
	}
	if mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); mt == "text/event-stream" {
		return resp, nil
	}
	var buf bytes.Buffer
	if resp.ContentLength > 0 && resp.ContentLength <= eagerBodyMax {
		buf.Grow(int(resp.ContentLength))
	}
	n, rerr := io.Copy(&buf, io.LimitReader(resp.Body, eagerBodyMax))
	switch {
	case rerr != nil:
		// Broken mid-body: the reader gets what came, then the error.
		resp.Body = readCloser{io.MultiReader(&buf, errReader{rerr}), resp.Body}
	case n == eagerBodyMax:
		// Perhaps more: the rest follows from the connection.
		resp.Body = readCloser{io.MultiReader(&buf, resp.Body), resp.Body}
	default:
		_ = resp.Body.Close() // at its end: the connection is reused
		resp.Body = wholeBody{&buf}
	}
	return resp, nil
}

// wholeBody is a body read to its end; Bytes is what is left of it to read,
// for a reader that needs no copy (httpTransport.call).
type wholeBody struct{ *bytes.Buffer }

func (wholeBody) Close() error { return nil }

type readCloser struct {
	io.Reader
	io.Closer
}

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }

// CloseIdleConnections passes http.Client's call on: an embedded interface
// promotes only RoundTrip, so without it the client's CloseIdleConnections
// did nothing.
func (t wholeBodies) CloseIdleConnections() {
	if ci, ok := t.RoundTripper.(interface{ CloseIdleConnections() }); ok {
		ci.CloseIdleConnections()
	}
}
