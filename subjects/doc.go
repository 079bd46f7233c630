// Package subjects is toolbus's wire contract: the subject names and the
// reversible token escape, the header names, the JSON types that cross the
// bus (call results, progress, events, registry entries), and the stream,
// consumer and key-value bucket definitions.
//
// It does no I/O and imports nothing of toolbus's own, so any client — an
// agent, a bridge, a test — can build against it alone. The README's "Wire
// protocol" section is the same contract in words.
package subjects
