package subjects

import (
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// The claim-check: a result (or arguments) too large for one NATS message
// is stored in the JetStream Object Store bucket BucketBlobs, and the
// message carries a Claim naming the object instead.
//
// An object is named <agent>.<call_id>.<kind>.<nonce> and its chunks are
// the messages on $O.toolbus_blobs.C.<object>.<n>, n = 0, 1, ...: one chunk
// per subject, so a reader needs nothing but direct gets by exact subject,
// and NATS permissions can grant an agent
// $JS.API.DIRECT.GET.OBJ_toolbus_blobs.$O.toolbus_blobs.C.<agent>.> (its own
// objects) and publishing $O.toolbus_blobs.C.<agent>.> (its argument
// objects) and nothing wider. A result object also has the Object Store's
// meta message (nuid "<object>.*"), so `nats object get toolbus_blobs
// <object>` and any Object Store client read it whole.
const (
	// BucketBlobs is the Object Store bucket of claimed bodies.
	BucketBlobs = "toolbus_blobs"
	// StreamBlobs is the bucket's stream.
	StreamBlobs = "OBJ_" + BucketBlobs

	// ClaimArgs and ClaimResult are the kinds of claimed bodies.
	ClaimArgs   = "args"
	ClaimResult = "result"

	blobChunkPrefix = "$O." + BucketBlobs + ".C."
	blobMetaPrefix  = "$O." + BucketBlobs + ".M."
)

// Claim names a body stored in the Object Store instead of in a message.
// On a result it is the "claim" field of the stored (small) result, which
// still says call_id, agent, server, tool and status; it is also in the
// message's headers (HeaderClaim...), and on a call only there.
type Claim struct {
	// Bucket is always BucketBlobs; a reader refuses any other.
	Bucket string `json:"bucket"`
	// Object is <agent>.<call_id>.<kind>.<nonce>.
	Object string `json:"object"`
	// Size of the body in bytes, Chunks its number of chunks.
	Size   int64 `json:"size"`
	Chunks int   `json:"chunks"`
	// Digest is "SHA-256=" and the URL-safe base64 (padded) SHA-256 of the
	// body, as the Object Store writes it.
	Digest string `json:"digest"`
}

// ErrInvalidClaim is wrapped by claim parsing errors.
var ErrInvalidClaim = errors.New("invalid claim")

// MaxNonceLen bounds a claim object's nonce.
const MaxNonceLen = 64

// ClaimObject returns the object name <agent>.<call_id>.<kind>.<nonce>.
// All four must be plain tokens (ValidateAgent, ValidateCallID).
func ClaimObject(agent, callID, kind, nonce string) string {
	return agent + "." + callID + "." + kind + "." + nonce
}

// ParseClaimObject splits and validates an object name.
func ParseClaimObject(object string) (agent, callID, kind, nonce string, err error) {
	parts := strings.Split(object, ".")
	if len(parts) != 4 {
		return "", "", "", "", fmt.Errorf("%w: object %q is not <agent>.<call_id>.<kind>.<nonce>", ErrInvalidClaim, object)
	}
	agent, callID, kind, nonce = parts[0], parts[1], parts[2], parts[3]
	if err = ValidateAgent(agent); err != nil {
		return "", "", "", "", fmt.Errorf("%w: object %q: %v", ErrInvalidClaim, object, err)
	}
	if err = ValidateCallID(callID); err != nil {
		return "", "", "", "", fmt.Errorf("%w: object %q: %v", ErrInvalidClaim, object, err)
	}
	if kind != ClaimArgs && kind != ClaimResult {
		return "", "", "", "", fmt.Errorf("%w: object %q: kind %q is neither %q nor %q", ErrInvalidClaim, object, kind, ClaimArgs, ClaimResult)
	}
	if nonce == "" || plainToken(nonce, MaxNonceLen, ErrInvalidClaim) != nil {
		return "", "", "", "", fmt.Errorf("%w: object %q: bad nonce", ErrInvalidClaim, object)
	}
	return agent, callID, kind, nonce, nil
}

// BlobChunk returns $O.toolbus_blobs.C.<object>.<n>, the subject of chunk n.
func BlobChunk(object string, n int) string { return blobChunkPrefix + object + "." + strconv.Itoa(n) }

// BlobNUID is the Object Store "nuid" of an object's meta: <object>.*, so
// that $O.toolbus_blobs.C.<nuid> filters all its chunks, in order.
func BlobNUID(object string) string { return object + ".*" }

// BlobChunkDirectGet returns the JetStream API subject of a direct get of
// chunk n of object.
func BlobChunkDirectGet(object string, n int) string {
	return "$JS.API.DIRECT.GET." + StreamBlobs + "." + BlobChunk(object, n)
}

// BlobMeta returns $O.toolbus_blobs.M.<name in URL-safe base64>, the
// Object Store's meta subject of object.
func BlobMeta(object string) string {
	return blobMetaPrefix + base64.URLEncoding.EncodeToString([]byte(object))
}

// BlobChunksOf returns $O.toolbus_blobs.C.<agent>.>, every chunk subject of
// agent's objects: what an agent's permissions name.
func BlobChunksOf(agent string) string { return blobChunkPrefix + agent + ".>" }

// BlobAll lists the bucket stream's subjects.
var BlobAll = []string{blobChunkPrefix + ">", blobMetaPrefix + ">"}
