package ingest

import (
	"errors"
	"reflect"
	"testing"

	"github.com/shalelog/shale/record"
	"github.com/shalelog/shale/tier"
)

func sampleSegment() []byte {
	b := []byte(segmentMagic)
	b = appendFrame(b, "t", "id1", 3, []record.Record{
		{Timestamp: 5, Key: []byte("k"), Value: []byte{0, 1, 2}, Headers: []record.Header{{Key: "h", Value: []byte("v")}}},
		{Timestamp: 6, Key: nil, Value: []byte{}},
	}, 0, nil)
	b = appendFrame(b, "u", "id2", 0, []record.Record{{Timestamp: 1, Value: []byte("x")}}, 0, nil)
	return appendFrame(b, "u", "id2", 1, []record.Record{{Timestamp: 1, Value: []byte("y")}, {Timestamp: 2}}, 0, &Producer{ID: 1 << 40, Epoch: 3, Seq: 1<<31 - 1})
}

func TestSegmentRoundTrip(t *testing.T) {
	frames, err := DecodeSegment("s", sampleSegment())
	if err != nil {
		t.Fatal(err)
	}
	if len(frames) != 3 || frames[0].Producer != nil || !reflect.DeepEqual(frames[2].Producer, &Producer{ID: 1 << 40, Epoch: 3, Seq: 1<<31 - 1}) || frames[0].Topic != "t" || frames[0].TopicID != "id1" || frames[0].Partition != 3 || len(frames[0].Records) != 2 {
		t.Fatalf("frames = %+v", frames)
	}
	r := frames[0].Records
	if r[0].Key == nil || r[1].Key != nil || r[1].Value == nil || len(r[1].Value) != 0 || !reflect.DeepEqual(r[0].Headers, []record.Header{{Key: "h", Value: []byte("v")}}) {
		t.Fatalf("records = %+v", r)
	}
}

// TestSegmentCorruption: every torn tail and every bit flip is reported as
// a tier.CorruptError with the file and the offset of the bad frame, and the
// frames before it survive.
func TestSegmentCorruption(t *testing.T) {
	good := sampleSegment()
	first := len(appendFrame([]byte(segmentMagic), "t", "id1", 3, []record.Record{
		{Timestamp: 5, Key: []byte("k"), Value: []byte{0, 1, 2}, Headers: []record.Header{{Key: "h", Value: []byte("v")}}},
		{Timestamp: 6, Key: nil, Value: []byte{}},
	}, 0, nil))
	second := first + len(appendFrame(nil, "u", "id2", 0, []record.Record{{Timestamp: 1, Value: []byte("x")}}, 0, nil))
	for cut := len(segmentMagic) + 1; cut < len(good); cut++ {
		if cut == first || cut == second {
			continue // a cut at a frame boundary is a shorter, valid segment
		}
		frames, err := DecodeSegment("seg", good[:cut])
		var ce *tier.CorruptError
		if !errors.As(err, &ce) || ce.Key != "seg" {
			t.Fatalf("truncated at %d: err %v", cut, err)
		}
		if cut > first && cut < second && (len(frames) != 1 || ce.Offset != int64(first)) {
			t.Fatalf("truncated at %d: %d frames, offset %d", cut, len(frames), ce.Offset)
		}
	}
	for i := len(segmentMagic); i < len(good); i++ {
		bad := append([]byte(nil), good...)
		bad[i] ^= 0x10
		if _, err := DecodeSegment("seg", bad); err == nil {
			t.Fatalf("bit flip at byte %d not detected", i)
		}
	}
}

func FuzzDecodeSegment(f *testing.F) {
	f.Add(sampleSegment())
	f.Add([]byte(segmentMagic))
	f.Fuzz(func(t *testing.T, data []byte) {
		frames, err := DecodeSegment("fuzz", data)
		if err != nil {
			var ce *tier.CorruptError
			if !errors.As(err, &ce) {
				t.Fatalf("error is not a tier.CorruptError: %v", err)
			}
			return
		}
		// What decodes re-encodes to the same bytes.
		b := []byte(segmentMagic)
		for _, fr := range frames {
			b = appendFrame(b, fr.Topic, fr.TopicID, fr.Partition, fr.Records, 0, fr.Producer)
		}
		if string(b) != string(data) {
			t.Fatalf("re-encoding differs")
		}
	})
}
