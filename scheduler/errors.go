package scheduler

import "errors"

var (
	// ErrInvalidSchedule is wrapped by every Schedule.Validate error.
	ErrInvalidSchedule = errors.New("invalid schedule")
	// ErrNotFound is returned by Delete for a schedule the bucket does not hold.
	ErrNotFound = errors.New("schedule not found")
)
