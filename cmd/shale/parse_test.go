package main

import (
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int64{
		"1048576": 1 << 20, "16MiB": 16 << 20, "4K": 4 << 10, "1GiB": 1 << 30, "0": 0, "-1": -1, " 2 MiB ": 2 << 20, "512B": 512,
	} {
		if got, err := parseSize(in); err != nil || got != want {
			t.Errorf("parseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "MiB", "1.5MiB", "1TiB", "ten", "9999999999GiB"} {
		if got, err := parseSize(in); err == nil {
			t.Errorf("parseSize(%q) = %d, want an error", in, got)
		}
	}
}

func TestParseCount(t *testing.T) {
	for _, tc := range []struct {
		in     string
		lo, hi int64
		want   int64
		err    string
	}{
		{"4", 1, 100, 4, ""},
		{"1KiB", 1, 1 << 40, 0, "not a count"}, // counts take no units
		{"1K", 1, 1 << 40, 0, "not a count"},
		{"0", 1, 100, 0, "out of range: want 1 to 100"},
		{"4294967297", 1, 1<<31 - 1, 0, "out of range"}, // no int32 truncation
		{"-1", -1, 10, -1, ""},
	} {
		got, err := parseCount(tc.in, tc.lo, tc.hi)
		if tc.err == "" && (err != nil || got != tc.want) || tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)) {
			t.Errorf("parseCount(%q, %d, %d) = %d, %v; want %d, error %q", tc.in, tc.lo, tc.hi, got, err, tc.want, tc.err)
		}
	}
}

func TestParseDuration(t *testing.T) {
	for in, want := range map[string]time.Duration{
		"7d": 7 * 24 * time.Hour, "1d": 24 * time.Hour, "1d12h": 36 * time.Hour, "250ms": 250 * time.Millisecond, "1h30m": 90 * time.Minute, "0": 0,
	} {
		if got, err := parseDuration(in); err != nil || got != want {
			t.Errorf("parseDuration(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "d", "7days", "-1d", "1d-1h", "1w", "5"} {
		if got, err := parseDuration(in); err == nil {
			t.Errorf("parseDuration(%q) = %v, want an error", in, got)
		}
	}
}

func TestParseTime(t *testing.T) {
	for in, want := range map[string]time.Time{
		"2026-11-30":                time.Date(2026, 11, 30, 0, 0, 0, 0, time.UTC),
		"2026-11-30T08:00:00Z":      time.Date(2026, 11, 30, 8, 0, 0, 0, time.UTC),
		"2026-11-30T08:00:00+01:00": time.Date(2026, 11, 30, 7, 0, 0, 0, time.UTC),
		"2026-11-30T08:00:00":       time.Date(2026, 11, 30, 8, 0, 0, 0, time.UTC),
		"1795673581267":             time.UnixMilli(1795673581267),
		"@1795673581267":            time.UnixMilli(1795673581267),
		"-1000":                     time.UnixMilli(-1000),
	} {
		if got, err := parseTime(in); err != nil || !got.Equal(want) {
			t.Errorf("parseTime(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "yesterday", "2026-13-01", "30/11/2026"} {
		if got, err := parseTime(in); err == nil {
			t.Errorf("parseTime(%q) = %v, want an error", in, got)
		}
	}
}

func TestParseOffset(t *testing.T) {
	// Each case resolves against a partition with offsets [10, 20).
	for _, tc := range []struct {
		in   string
		want int64
		err  string
	}{
		{"beginning", 10, ""},
		{"end", 20, ""},
		{"15", 15, ""},
		{"20", 20, ""}, // the next offset: nothing yet, --follow waits there
		{"-5", 15, ""}, // the last 5, not the start
		{"-50", 10, ""},
		{"999", 0, "offset 999 is out of range: the partition has offsets 10 to 19 (next offset 20)"},
		{"3", 0, "out of range"},
		{"five", 0, "not an offset"},
		{"", 0, "not an offset"},
	} {
		o, err := parseOffset(tc.in)
		var got int64
		if err == nil {
			got, err = o.resolve(10, 20)
		}
		if tc.err == "" && (err != nil || got != tc.want) || tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)) {
			t.Errorf("offset %q on [10, 20) = %d, %v; want %d, error %q", tc.in, got, err, tc.want, tc.err)
		}
	}
	if _, err := (startOffset{kind: atOffset, n: 1}).resolve(0, 0); err == nil || !strings.Contains(err.Error(), "empty") {
		t.Errorf("offset 1 of an empty partition: %v", err)
	}
}

func TestParseUntil(t *testing.T) {
	if u, err := parseUntil("42"); err != nil || u.offset != 42 || u.time != nil {
		t.Errorf("--until 42 = %+v, %v", u, err)
	}
	if u, err := parseUntil("2026-11-30"); err != nil || u.offset != -1 || !u.time.Equal(time.Date(2026, 11, 30, 0, 0, 0, 0, time.UTC)) {
		t.Errorf("--until 2026-11-30 = %+v, %v", u, err)
	}
	if u, err := parseUntil("@1795673581267"); err != nil || u.time == nil || u.time.UnixMilli() != 1795673581267 {
		t.Errorf("--until @MS = %+v, %v", u, err)
	}
	for _, in := range []string{"-3", "soon"} {
		if u, err := parseUntil(in); err == nil {
			t.Errorf("--until %q = %+v, want an error", in, u)
		}
	}
}

func TestParseHeader(t *testing.T) {
	if k, v, err := parseHeader("trace=a=b"); err != nil || k != "trace" || string(v) != "a=b" {
		t.Errorf("parseHeader = %q %q %v", k, v, err)
	}
	if k, v, err := parseHeader("empty="); err != nil || k != "empty" || string(v) != "" {
		t.Errorf("parseHeader = %q %q %v", k, v, err)
	}
	for _, in := range []string{"novalue", "=v"} {
		if _, _, err := parseHeader(in); err == nil {
			t.Errorf("parseHeader(%q): no error", in)
		}
	}
}

// TestDefaultHotDir: two buckets in one folder get hot directories of their
// own, never the folder's shared hot/ (where a node deleted a segment file
// it had not written).
func TestDefaultHotDir(t *testing.T) {
	dir := t.TempDir()
	a, err := defaultHotDir("file://" + filepath.Join(dir, "a"))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := defaultHotDir("file://" + filepath.Join(dir, "b"))
	again, _ := defaultHotDir("file://" + filepath.Join(dir, "x", "..", "a"))
	if a == b || a != again || filepath.Dir(a) != dir || a == filepath.Join(dir, "hot") || !strings.HasPrefix(filepath.Base(a), ".shale-hot-a-") {
		t.Fatalf("hot dirs %q %q %q", a, b, again)
	}
	if d, _ := defaultHotDir("minio://h:1/b/p"); d != "" {
		t.Fatalf("minio hot dir %q, want a temporary one", d)
	}
}
