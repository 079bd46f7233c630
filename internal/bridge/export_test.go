package bridge

import "time"

// withNow sets the clock used for timestamps and the replay window.
func withNow(now func() time.Time) Option { return func(b *Bridge) { b.now = now } }

// withPublishTimeout sets how long a request waits for the PubAck.
func withPublishTimeout(d time.Duration) Option { return func(b *Bridge) { b.pubTimeout = d } }
