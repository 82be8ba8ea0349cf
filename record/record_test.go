package record

import (
	"errors"
	"strings"
	"testing"
)

// TestCheckLimits: Check accepts a record exactly at each limit and
// refuses one past it with ErrInvalid; Validate names the record.
func TestCheckLimits(t *testing.T) {
	const topic = "topic"
	for _, tc := range []struct {
		name string
		r    Record
		ok   bool
	}{
		{"max headers", Record{Headers: make([]Header, MaxHeaders)}, true},
		{"one header too many", Record{Headers: make([]Header, MaxHeaders+1)}, false},
		// Large slices are allocated but never touched, so they cost
		// address space, not memory.
		{"max bytes", Record{Value: make([]byte, MaxRecordBytes-len(topic))}, true},
		{"one byte too many", Record{Value: make([]byte, MaxRecordBytes-len(topic)+1)}, false},
		{"header overhead counts", Record{Value: make([]byte, MaxRecordBytes-len(topic)-HeaderOverhead+1), Headers: []Header{{}}}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.r.Check(topic)
			if tc.ok != (err == nil) || (err != nil && !errors.Is(err, ErrInvalid)) {
				t.Fatalf("Check = %v, want ok %v or ErrInvalid", err, tc.ok)
			}
			err = Validate(topic, []Record{{}, {}, tc.r})
			if !tc.ok && (!errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "record 2 ")) {
				t.Fatalf("Validate = %v, want ErrInvalid naming record 2", err)
			}
		})
	}
}
