package config

import (
	"fmt"
	"strconv"
	"strings"
)

// DefaultMemoryLimit is the soft memory limit (runtime/debug.SetMemoryLimit)
// serve and worker set when GOMEMLIMIT is unset: the garbage collector
// works harder as the heap nears it, so a burst of calls in flight is
// collected instead of growing the process. It is soft: a process that
// needs more still gets it.
const DefaultMemoryLimit int64 = 192 << 20

// ParseMemoryLimit reads a memory limit: "" for DefaultMemoryLimit, "off"
// (or "0") for none (returns -1), else a size in bytes with an optional
// unit: B, KiB, MiB, GiB (powers of 1024) or KB, MB, GB (powers of 1000),
// as in "192MiB" or "1GiB".
func ParseMemoryLimit(s string) (int64, error) {
	s = strings.TrimSpace(s)
	switch strings.ToLower(s) {
	case "":
		return DefaultMemoryLimit, nil
	case "off", "0", "none":
		return -1, nil
	}
	units := []struct {
		suffix string
		mult   int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"B", 1}}
	num, mult := s, int64(1)
	for _, u := range units {
		if strings.HasSuffix(strings.ToLower(s), strings.ToLower(u.suffix)) {
			num, mult = strings.TrimSpace(s[:len(s)-len(u.suffix)]), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n <= 0 || n > (1<<62)/mult {
		return 0, fmt.Errorf("%q is not a memory size like \"192MiB\", \"1GiB\" or \"off\"", s)
	}
	if n*mult < 16<<20 {
		return 0, fmt.Errorf("%q is below 16MiB: too low to run in (use \"off\" for no limit)", s)
	}
	return n * mult, nil
}
