package main

// Pure parsers of what people type: sizes, counts, durations, times,
// offsets and headers. Each has a table test in parse_test.go.

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

var sizeUnits = []struct {
	suffix string
	mult   int64
}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"K", 1 << 10}, {"M", 1 << 20}, {"G", 1 << 30}, {"B", 1}}

// parseSize parses a byte count with an optional KiB/MiB/GiB (or K/M/G)
// suffix: 1048576, 16MiB, 4K.
func parseSize(s string) (int64, error) {
	num, mult := strings.TrimSpace(s), int64(1)
	for _, u := range sizeUnits {
		if strings.HasSuffix(num, u.suffix) {
			num, mult = strings.TrimSpace(strings.TrimSuffix(num, u.suffix)), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n > (1<<62)/mult || n < -(1<<62)/mult {
		return 0, fmt.Errorf("%q is not a byte size such as 1048576 or 16MiB", s)
	}
	return n * mult, nil
}

// formatSize prints n in the largest unit that divides it.
func formatSize(n int64) string {
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if n != 0 && n%u.mult == 0 {
			return strconv.FormatInt(n/u.mult, 10) + u.suffix
		}
	}
	return strconv.FormatInt(n, 10)
}

// parseCount parses a whole number in [lo, hi], without units.
func parseCount(s string, lo, hi int64) (int64, error) {
	n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%q is not a count (a whole number, without units)", s)
	}
	if n < lo || n > hi {
		return 0, fmt.Errorf("%d is out of range: want %d to %d", n, lo, hi)
	}
	return n, nil
}

// parseDuration parses a Go duration (250ms, 1h30m) that may start with
// days (7d, 1d12h).
func parseDuration(s string) (time.Duration, error) {
	bad := fmt.Errorf("%q is not a duration such as 250ms, 30s, 1h30m or 7d", s)
	s = strings.TrimSpace(s)
	var days int64
	if d, rest, ok := strings.Cut(s, "d"); ok {
		n, err := strconv.ParseInt(d, 10, 64)
		if err != nil || n < 0 || n > 100000 {
			return 0, bad
		}
		days, s = n, rest
		if s == "" {
			return time.Duration(days) * 24 * time.Hour, nil
		}
	}
	x, err := time.ParseDuration(s)
	if err != nil || days > 0 && x < 0 {
		return 0, bad
	}
	return time.Duration(days)*24*time.Hour + x, nil
}

// parseTime parses an RFC 3339 time (2026-11-30T08:00:00Z), a date
// (2026-11-30, midnight UTC), or milliseconds since the Unix epoch
// (1795673581267, or @1795673581267).
func parseTime(s string) (time.Time, error) {
	s = strings.TrimSpace(s)
	if ms, err := strconv.ParseInt(strings.TrimPrefix(s, "@"), 10, 64); err == nil {
		return time.UnixMilli(ms).UTC(), nil
	}
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05", "2006-01-02"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("%q is not a time: give RFC 3339 (2026-11-30T08:00:00Z), a date (2026-11-30) or milliseconds since the epoch", s)
}

// startOffset is where consume starts in each partition.
type startOffset struct {
	kind int   // one of the constants below
	n    int64 // the offset (atOffset) or the count (lastN)
}

const (
	atBeginning = iota
	atEnd
	atOffset
	lastN
)

// parseOffset parses --offset: beginning, end, N (an absolute offset) or
// -N (the last N records of each partition).
func parseOffset(s string) (startOffset, error) {
	switch s = strings.TrimSpace(s); s {
	case "beginning", "start", "earliest", "oldest":
		return startOffset{kind: atBeginning}, nil
	case "end", "latest", "newest":
		return startOffset{kind: atEnd}, nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return startOffset{}, fmt.Errorf("%q is not an offset: want beginning, end, N (from offset N) or -N (the last N records)", s)
	}
	if n < 0 {
		if n == -1<<63 {
			return startOffset{}, fmt.Errorf("%q is out of range", s)
		}
		return startOffset{kind: lastN, n: -n}, nil
	}
	return startOffset{kind: atOffset, n: n}, nil
}

// resolve returns the first offset to read of a partition with offsets
// [start, end), or an error naming that range.
func (o startOffset) resolve(start, end int64) (int64, error) {
	switch o.kind {
	case atEnd:
		return end, nil
	case lastN:
		return max(start, end-o.n), nil
	case atOffset:
		if o.n < start || o.n > end {
			return 0, fmt.Errorf("offset %d is out of range: %s", o.n, describeRange(start, end))
		}
		return o.n, nil
	}
	return start, nil
}

func describeRange(start, end int64) string {
	if start == end {
		return fmt.Sprintf("the partition is empty (next offset %d)", end)
	}
	return fmt.Sprintf("the partition has offsets %d to %d (next offset %d)", start, end-1, end)
}

// until is where consume stops: before an offset, or before the first
// record at or after a time.
type until struct {
	offset int64 // -1 if not an offset
	time   *time.Time
}

// parseUntil parses --until: a whole number is an offset (the first not
// printed); anything else is a time as parseTime reads it, where
// milliseconds since the epoch need their @ (@1795673581267).
func parseUntil(s string) (until, error) {
	s = strings.TrimSpace(s)
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		if n < 0 {
			return until{}, fmt.Errorf("offset %d is negative", n)
		}
		return until{offset: n}, nil
	}
	t, err := parseTime(s)
	if err != nil {
		return until{}, fmt.Errorf("%q is neither an offset nor a time (RFC 3339, a date, or @MS since the epoch)", s)
	}
	return until{offset: -1, time: &t}, nil
}

// parseHeader parses KEY=VALUE.
func parseHeader(s string) (string, []byte, error) {
	k, v, ok := strings.Cut(s, "=")
	if !ok || k == "" {
		return "", nil, errors.New("want KEY=VALUE")
	}
	return k, []byte(v), nil
}
