package scheduler

import "errors"

var (
	// ErrInvalidSchedule is wrapped by every Schedule.Validate error.
	ErrInvalidSchedule = errors.New("invalid schedule")
	// ErrNotFound is returned by Delete for a schedule the bucket does not hold.
	ErrNotFound = errors.New("schedule not found")
	// ErrNotLeader is a tick's error (Fire.Err) when this replica lost the
	// lease before publishing it; the new leader publishes it instead.
	ErrNotLeader = errors.New("not the scheduler leader")
)
