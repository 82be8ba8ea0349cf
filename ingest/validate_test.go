package ingest

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/shalelog/shale/record"
	"github.com/shalelog/shale/tier"
	"github.com/shalelog/shale/tier/manifest"
)

// TestAppendRejectsInvalidRecords: a record over a limit of the roll's
// encoder or decoder is refused by Append itself, naming the record and the
// limit, and a valid producer in the same roll window, on another topic,
// commits. (Before, Append took a record with 4097 headers, the roll
// refused its whole segment, and every producer in it failed.)
func TestAppendRejectsInvalidRecords(t *testing.T) {
	ctx := context.Background()
	n, l := newNode(t, newStore(t), Options{RollAge: 200 * time.Millisecond})
	for _, name := range []string{"t", "other"} {
		if _, err := l.CreateTopic(ctx, name, 1, manifest.Retention{}); err != nil {
			t.Fatal(err)
		}
	}
	ok := []record.Record{{Value: []byte("fine")}}
	for _, tc := range []struct {
		name string
		bad  record.Record
		want string
	}{
		{"too many headers", record.Record{Headers: make([]record.Header, record.MaxHeaders+1)}, "4097 headers, the limit is 4096"},
		{"too many bytes", record.Record{Value: make([]byte, record.MaxRecordBytes-len("t")+1)}, "the limit is 134217728"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			good := make(chan error, 1)
			go func() { _, err := n.Append(ctx, "other", 0, ok); good <- err }()
			_, err := n.Append(ctx, "t", 0, []record.Record{ok[0], tc.bad})
			if !errors.Is(err, record.ErrInvalid) || !strings.Contains(err.Error(), "record 1 ") || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("append of a bad record: %v, want record.ErrInvalid naming record 1 and %q", err, tc.want)
			}
			if err := <-good; err != nil {
				t.Fatalf("valid append in the same roll window: %v", err)
			}
		})
	}
	// The limits themselves are accepted, and roll.
	atLimit := []record.Record{
		{Headers: make([]record.Header, record.MaxHeaders)},
		{Value: []byte("after")},
	}
	if _, err := n.Append(ctx, "t", 0, atLimit); err != nil {
		t.Fatalf("append of a record with %d headers: %v", record.MaxHeaders, err)
	}
}

// TestRollFailsOnlyTheBadFrame: if a bad frame gets into a segment after
// all (Append is bypassed here), the roll refuses that frame alone: its
// producer gets the error, and the other frames of the roll are uploaded
// and committed.
func TestRollFailsOnlyTheBadFrame(t *testing.T) {
	ctx := context.Background()
	n, l := newNode(t, newStore(t), Options{RollAge: 200 * time.Millisecond})
	for _, name := range []string{"t", "other"} {
		if _, err := l.CreateTopic(ctx, name, 1, manifest.Retention{}); err != nil {
			t.Fatal(err)
		}
	}
	topicID := func(name string) string {
		tp, err := l.Topic(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		return tp.ID
	}
	// inject writes a frame straight into the current segment, as Append
	// would without its checks.
	inject := func(topic string, recs []record.Record, damage func([]byte)) chan result {
		t.Helper()
		id := topicID(topic)
		buf := appendFrame(nil, topic, id, 0, recs, time.Now().UnixMilli(), nil)
		if damage != nil {
			damage(buf)
		}
		done := make(chan result, 1)
		if err := n.write(ctx, frameRef{topic: topic, topicID: id, partition: 0, count: len(recs), done: done}, buf); err != nil {
			t.Fatal(err)
		}
		return done
	}
	for _, tc := range []struct {
		name   string
		recs   []record.Record
		damage func([]byte)
		check  func(error) bool
	}{
		// The frame decoder refuses the headers before the check does:
		// either way the error is one a front end maps to a client error.
		{"over a limit", []record.Record{{Headers: make([]record.Header, record.MaxHeaders+1)}}, nil, isClientError},
		{"over the byte limit", []record.Record{{Value: make([]byte, record.MaxRecordBytes)}}, nil, isClientError},
		{"corrupt", []record.Record{{Value: []byte("x")}}, func(b []byte) { b[len(b)-1] ^= 0xff },
			func(err error) bool { var ce *tier.CorruptError; return errors.As(err, &ce) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			good := make(chan error, 2)
			go func() { _, err := n.Append(ctx, "other", 0, []record.Record{{Value: []byte("v")}}); good <- err }()
			time.Sleep(20 * time.Millisecond) // the good frame first, then the bad one, then another good one
			bad := inject("t", tc.recs, tc.damage)
			go func() { _, err := n.Append(ctx, "t", 0, []record.Record{{Value: []byte("w")}}); good <- err }()
			if r := <-bad; !tc.check(r.err) {
				t.Fatalf("bad frame: %+v", r)
			}
			for range 2 {
				if err := <-good; err != nil {
					t.Fatalf("valid append in the roll of a bad frame: %v", err)
				}
			}
		})
	}
	// Every good record is committed and readable; no bad one is.
	for topic, want := range map[string]int64{"other": 3, "t": 3} {
		if _, end, _, _ := l.Locate(ctx, topic, 0, 0, 1); end != want {
			t.Fatalf("%s ends at %d, want %d", topic, end, want)
		}
	}
	// A roll whose only frame is bad commits nothing and fails just it.
	bad := inject("t", []record.Record{{Headers: make([]record.Header, record.MaxHeaders+1)}}, nil)
	if r := <-bad; !isClientError(r.err) {
		t.Fatalf("lone bad frame: %+v", r)
	}
	if _, err := n.Append(ctx, "t", 0, []record.Record{{Value: []byte("z")}}); err != nil {
		t.Fatalf("append after a roll of only a bad frame: %v", err)
	}
}

func isClientError(err error) bool {
	return errors.Is(err, record.ErrInvalid) || errors.Is(err, record.ErrMalformed)
}
