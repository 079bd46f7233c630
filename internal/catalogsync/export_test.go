package catalogsync

// withDialer replaces mcppool's dialer.
func withDialer(d dialer) Option { return func(s *Syncer) { s.dl = d } }

// withSyncHook calls f after every sync attempt.
func withSyncHook(f func(server string, d Diff, err error)) Option {
	return func(s *Syncer) { s.hook = f }
}
