// Package claim moves bodies too large for a NATS message (tool results,
// call arguments) through the JetStream Object Store bucket
// subjects.BucketBlobs, and back: Put stores a body and returns the
// subjects.Claim that names it; Get checks a claim against the call it
// must belong to and returns the body. Readers need only direct gets of
// exact chunk subjects, so an agent's NATS permissions can be confined to
// its own objects (see subjects.Claim).
package claim

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/toolbus-dev/toolbus/subjects"
)

// DefaultMaxBytes is the default cap on a claimed body (64 MiB).
const DefaultMaxBytes = 64 << 20

// Errors of Get, for errors.Is.
var (
	// ErrForeign: the claim names a bucket other than toolbus's, or an
	// object of another agent, call or kind.
	ErrForeign = errors.New("claim names an object that is not this call's")
	// ErrTooLarge: the body is over the reader's cap.
	ErrTooLarge = errors.New("claimed body too large")
	// ErrMissing: a chunk is not in the bucket (expired, or never written).
	ErrMissing = errors.New("claimed object not found")
	// ErrCorrupt: the chunks do not add up to the claim's size and digest.
	ErrCorrupt = errors.New("claimed object does not match its claim")
)

// ChunkSize is the chunk size for a connection: 256 KiB, or half the
// server's max payload when that is smaller.
func ChunkSize(nc *nats.Conn) int {
	n := 256 << 10
	if mp := int(nc.MaxPayload()); mp > 0 && mp/2 < n {
		n = mp / 2
	}
	return n
}

// Meta says whether Put writes the Object Store meta message, which makes
// the object readable by `nats object get` and Object Store clients.
// Workers write it for results; agents, who may publish only chunks under
// their own token, do not for arguments.
type Meta bool

// Put stores body as the kind (subjects.ClaimArgs or ClaimResult) object of
// call callID of agent, under a fresh unguessable nonce, and returns its
// claim once JetStream has stored every chunk.
func Put(ctx context.Context, js jetstream.JetStream, chunk int, agent, callID, kind string, body []byte, meta Meta) (*subjects.Claim, error) {
	if chunk <= 0 {
		chunk = 256 << 10
	}
	object := subjects.ClaimObject(agent, callID, kind, nonce())
	if _, _, _, _, err := subjects.ParseClaimObject(object); err != nil {
		return nil, err
	}
	h := sha256.New()
	var acks []jetstream.PubAckFuture
	n := 0
	for off := 0; off < len(body) || n == 0; off += chunk {
		part := body[off:min(off+chunk, len(body))]
		h.Write(part)
		m := &nats.Msg{Subject: subjects.BlobChunk(object, n), Data: part}
		f, err := js.PublishMsgAsync(m, jetstream.WithExpectStream(subjects.StreamBlobs))
		if err != nil {
			return nil, fmt.Errorf("put %s/%s: %w", subjects.BucketBlobs, object, err)
		}
		acks = append(acks, f)
		n++
	}
	for i, f := range acks {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			return nil, fmt.Errorf("put %s/%s chunk %d: %w", subjects.BucketBlobs, object, i, err)
		case <-ctx.Done():
			return nil, fmt.Errorf("put %s/%s chunk %d: %w", subjects.BucketBlobs, object, i, ctx.Err())
		}
	}
	c := &subjects.Claim{Bucket: subjects.BucketBlobs, Object: object, Size: int64(len(body)), Chunks: n,
		Digest: "SHA-256=" + base64.URLEncoding.EncodeToString(h.Sum(nil))}
	if meta {
		info := jetstream.ObjectInfo{
			ObjectMeta: jetstream.ObjectMeta{
				Name:        object,
				Description: "toolbus " + kind + " of call " + callID + " of agent " + agent,
				Metadata:    map[string]string{"toolbus-agent": agent, "toolbus-call-id": callID, "toolbus-kind": kind},
				Opts:        &jetstream.ObjectMetaOptions{ChunkSize: uint32(chunk)},
			},
			Bucket: subjects.BucketBlobs, NUID: subjects.BlobNUID(object),
			Size: uint64(c.Size), Chunks: uint32(n), Digest: c.Digest, ModTime: time.Now().UTC(),
		}
		data, _ := json.Marshal(info)
		if _, err := js.PublishMsg(ctx, &nats.Msg{Subject: subjects.BlobMeta(object), Data: data}, jetstream.WithExpectStream(subjects.StreamBlobs)); err != nil {
			return nil, fmt.Errorf("put %s/%s meta: %w", subjects.BucketBlobs, object, err)
		}
	}
	return c, nil
}

func nonce() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// SetHeader writes c into h (subjects.HeaderClaim...).
func SetHeader(h nats.Header, c *subjects.Claim) {
	h.Set(subjects.HeaderClaim, c.Bucket+"/"+c.Object)
	h.Set(subjects.HeaderClaimSize, strconv.FormatInt(c.Size, 10))
	h.Set(subjects.HeaderClaimChunks, strconv.Itoa(c.Chunks))
	h.Set(subjects.HeaderClaimDigest, c.Digest)
}

// FromHeader reads a claim from h: nil, nil when h has none.
func FromHeader(h nats.Header) (*subjects.Claim, error) {
	ref := h.Get(subjects.HeaderClaim)
	if ref == "" {
		return nil, nil
	}
	bucket, object, ok := strings.Cut(ref, "/")
	if !ok {
		return nil, fmt.Errorf("%w: header %s is %q, not <bucket>/<object>", subjects.ErrInvalidClaim, subjects.HeaderClaim, ref)
	}
	c := &subjects.Claim{Bucket: bucket, Object: object, Digest: h.Get(subjects.HeaderClaimDigest)}
	var err error
	if c.Size, err = strconv.ParseInt(h.Get(subjects.HeaderClaimSize), 10, 64); err != nil || c.Size < 0 {
		return nil, fmt.Errorf("%w: header %s is %q, not a size in bytes", subjects.ErrInvalidClaim, subjects.HeaderClaimSize, h.Get(subjects.HeaderClaimSize))
	}
	if c.Chunks, err = strconv.Atoi(h.Get(subjects.HeaderClaimChunks)); err != nil || c.Chunks < 1 {
		return nil, fmt.Errorf("%w: header %s is %q, not a number of chunks", subjects.ErrInvalidClaim, subjects.HeaderClaimChunks, h.Get(subjects.HeaderClaimChunks))
	}
	return c, nil
}

// Requester is the one call Get needs of a connection (*nats.Conn).
type Requester interface {
	RequestWithContext(ctx context.Context, subj string, data []byte) (*nats.Msg, error)
}

// minChunk is the smallest chunk (but the last) Get accepts.
const minChunk = 1 << 10

// parallel bounds Get's direct gets in flight.
const parallel = 8

// Get returns the body c names, after checking that c names the kind
// object of call callID of agent in toolbus's bucket, is at most max bytes,
// and that its chunks add up to c's size and digest. Chunks are read by
// direct gets of their exact subjects.
func Get(ctx context.Context, nc Requester, c *subjects.Claim, agent, callID, kind string, max int64) ([]byte, error) {
	if c.Bucket != subjects.BucketBlobs {
		return nil, fmt.Errorf("%w: bucket %q; toolbus reads claims from bucket %q only", ErrForeign, c.Bucket, subjects.BucketBlobs)
	}
	oa, oc, ok, _, err := subjects.ParseClaimObject(c.Object)
	if err != nil {
		return nil, err
	}
	if oa != agent || oc != callID || ok != kind {
		return nil, fmt.Errorf("%w: object %s is the %s of call %s of agent %q, not the %s of call %s of agent %q", ErrForeign, c.Object, ok, oc, oa, kind, callID, agent)
	}
	if c.Size > max {
		return nil, fmt.Errorf("%w: %d bytes, over the %d-byte limit", ErrTooLarge, c.Size, max)
	}
	// Chunks are at least minChunk bytes but the last: a claim may not
	// make the reader allocate and ask for more parts than that.
	if c.Chunks < 1 || int64(c.Chunks) > c.Size/minChunk+1 {
		return nil, fmt.Errorf("%w: %d chunks for %d bytes", subjects.ErrInvalidClaim, c.Chunks, c.Size)
	}
	parts := make([][]byte, c.Chunks)
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		total int64
	)
	sem := make(chan struct{}, parallel)
	for i := range parts {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			data, err := chunk(ctx, nc, c.Object, i)
			if err != nil {
				cancel(err)
				return
			}
			mu.Lock()
			total += int64(len(data))
			over := total > c.Size
			mu.Unlock()
			if over {
				cancel(fmt.Errorf("%w: the chunks hold more than the claimed %d bytes", ErrCorrupt, c.Size))
				return
			}
			parts[i] = data
		}()
	}
	wg.Wait()
	if err := context.Cause(ctx); err != nil {
		return nil, err
	}
	body := bytes.Join(parts, nil)
	if int64(len(body)) != c.Size {
		return nil, fmt.Errorf("%w: %d bytes read, %d claimed", ErrCorrupt, len(body), c.Size)
	}
	sum := sha256.Sum256(body)
	if d := "SHA-256=" + base64.URLEncoding.EncodeToString(sum[:]); d != c.Digest {
		return nil, fmt.Errorf("%w: digest %s, claimed %s", ErrCorrupt, d, c.Digest)
	}
	return body, nil
}

// chunk reads chunk i of object by a direct get of its subject.
func chunk(ctx context.Context, nc Requester, object string, i int) ([]byte, error) {
	subj := subjects.BlobChunkDirectGet(object, i)
	m, err := nc.RequestWithContext(ctx, subj, nil)
	switch {
	case errors.Is(err, nats.ErrNoResponders):
		return nil, fmt.Errorf("no stream %s (is `toolbus serve` running, and did it provision the bucket %s?): %w", subjects.StreamBlobs, subjects.BucketBlobs, err)
	case err != nil:
		return nil, fmt.Errorf("read %s/%s chunk %d: %w", subjects.BucketBlobs, object, i, err)
	}
	switch st := m.Header.Get("Status"); st {
	case "":
	case "404":
		return nil, fmt.Errorf("%w: %s/%s chunk %d is not in the bucket: it expired (the bucket keeps objects about as long as results) or was never written", ErrMissing, subjects.BucketBlobs, object, i)
	default:
		return nil, fmt.Errorf("read %s/%s chunk %d: status %s %s", subjects.BucketBlobs, object, i, st, m.Header.Get("Description"))
	}
	if s := m.Header.Get(jetstream.SubjectHeader); s != "" && s != subjects.BlobChunk(object, i) {
		return nil, fmt.Errorf("%w: chunk %d came from %s", ErrCorrupt, i, s)
	}
	return m.Data, nil
}
