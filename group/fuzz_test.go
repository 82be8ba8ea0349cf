package group

import (
	"errors"
	"reflect"
	"testing"

	"github.com/shalelog/shale/tier"
)

// The state object is read from the bucket, which other processes (and
// other versions) write: its decoder must refuse anything malformed with a
// CorruptError and never panic, and what it accepts must survive a round
// trip.
func FuzzDecodeState(f *testing.F) {
	st := state{Group: "g", Node: "n1", Epoch: 3, Generation: 7, ProtocolType: "consumer", Protocol: "range", Leader: "m1",
		Members: []storedMember{{ID: "m1", Instance: "i", Client: "c", Host: "h"}}}
	st.setOffset("t", 0, storedOffset{Offset: 5, LeaderEpoch: -1, Metadata: "x", Time: 1})
	f.Add(encodeState(&st))
	f.Add(encodeState(&state{Group: "g", Node: "n", Epoch: 1}))
	f.Add([]byte(`{"v":2}`))
	f.Add([]byte(`{"v":1,"group":"g","node":"n","epoch":1,"offsets":{"t":{"-1":{"o":1}}}}`))
	f.Add([]byte(`{"v":1,"group":"g","node":"n","epoch":1}{}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := decodeState("groups/g/state", "g", b)
		if err != nil {
			var ce *tier.CorruptError
			if !errors.As(err, &ce) {
				t.Fatalf("error %v is not a CorruptError", err)
			}
			return
		}
		again, err := decodeState("groups/g/state", "g", encodeState(&s))
		if err != nil {
			t.Fatalf("re-decode: %v", err)
		}
		if !reflect.DeepEqual(normal(s), normal(again)) {
			t.Fatalf("round trip: %+v != %+v", s, again)
		}
	})
}

// normal makes empty and nil collections compare equal.
func normal(s state) state {
	if len(s.Members) == 0 {
		s.Members = nil
	}
	for t, ps := range s.Offsets {
		if len(ps) == 0 {
			delete(s.Offsets, t)
		}
	}
	if len(s.Offsets) == 0 {
		s.Offsets = nil
	}
	return s
}
