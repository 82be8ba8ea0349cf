package manifest

import (
	"encoding/json"
	"fmt"
	"testing"
)

// fuzzState is the state commit 3 of the fuzzed records is checked
// against: topic t (2 partitions, 3 records each, one with sealed pages
// of 2 entries) and topic u, its entries valid.
func fuzzState() *State {
	span := Span{Count: 3, MinTs: -5, MaxTs: 2, Bytes: 30, Batches: Batches{{Delta: 0, Rows: 1, Off: 8, Len: 10, CRC: 7}, {Delta: 1, Rows: 2, Off: 18, Len: 40, CRC: 9}}}
	part := func(n int) *Partition {
		p := &Partition{}
		for i := range n {
			p.Entries = append(p.Entries, Entry{Object: fmt.Sprint("o", i), ObjectSize: 100, Base: p.End, Span: span})
			p.End += 3
			p.Bytes += 30
		}
		return p
	}
	st := &State{Seq: 2, Topics: map[string]*TopicState{
		"t": {Topic: Topic{Name: "t", ID: "tid", Partitions: 2}, Parts: []*Partition{part(1), part(5)}},
		"u": {Topic: Topic{Name: "u", ID: "uid", Partitions: 1, Retention: Retention{Ms: -1, Bytes: -1}}, Parts: []*Partition{part(0)}},
	}, ClockMs: 1000, NextProducerID: 10, ProducerLimits: ProducerLimits{Max: 3}}
	// Producer 3 wrote offsets 0-2 of t/0 in two batches; producer 4 the
	// last record of t/1, long ago.
	st.Topics["t"].Parts[0].Producers = map[int64]*ProducerState{3: {Epoch: 1, LastMs: 900, Commit: 1, Batches: []SeqBatch{{0, 1, 0}, {2, 2, 2}}}}
	st.Topics["t"].Parts[1].Producers = map[int64]*ProducerState{4: {Epoch: 0, LastMs: 1, Commit: 2, Batches: []SeqBatch{{7, 7, 14}}}}
	return st
}

func seedCommits() [][]byte {
	span := Span{Count: 2, MinTs: 1, MaxTs: 9, Bytes: 20, Batches: Batches{{Delta: 0, Rows: 2, Off: 0, Len: 64, CRC: 1}}}
	commits := []Commit{
		{Ops: []Op{{Append: &AppendOp{Object: "a", Size: 64, Parts: []AppendPart{
			{Topic: "t", TopicID: "tid", Partition: 0, Base: 3, Span: span},
			{Topic: "t", TopicID: "tid", Partition: 1, Base: 15, Span: span},
		}}}, {Append: &AppendOp{Object: "b", Size: 64, Parts: []AppendPart{{Topic: "t", TopicID: "tid", Partition: 0, Base: 5, Span: span}}}}}},
		{Ops: []Op{{CreateTopic: &Topic{Name: "v", ID: "vid", Partitions: 3, CreatedMs: 1}},
			{Append: &AppendOp{Object: "c", Size: 64, Parts: []AppendPart{{Topic: "v", TopicID: "vid", Partition: 2, Base: 0, Span: span}}}}}},
		{Ops: []Op{{DeleteTopic: &TopicRef{Name: "u", ID: "uid"}}, {CreateTopic: &Topic{Name: "u", ID: "u2", Partitions: 1}}}},
		{Ops: []Op{{CreateTopic: &Topic{Name: "w", ID: "wid", Partitions: -1}}}},
		{Ops: []Op{{Append: &AppendOp{Object: "d", Size: 64, Parts: []AppendPart{{Topic: "t", TopicID: "tid", Partition: 7, Base: -1, Span: span}}}}}},
		{},
		// Producer batches: in sequence (valid), a duplicate, a new
		// producer, a reservation and new limits.
		{TimeMs: 2000, Ops: []Op{{Append: &AppendOp{Object: "p", Size: 64, Parts: []AppendPart{
			{Topic: "t", TopicID: "tid", Partition: 0, Base: 3, Span: span, Producers: []ProducerBatch{{ID: 3, Epoch: 1, FirstSeq: 3, LastSeq: 3}, {ID: 5, FirstSeq: 0, LastSeq: 0, Delta: 1}}},
			{Topic: "t", TopicID: "tid", Partition: 1, Base: 15, Span: span, Producers: []ProducerBatch{{ID: 4, Epoch: 2, FirstSeq: 0, LastSeq: 1}}},
		}}}, {ProducerIDs: &ProducerIDsOp{Node: "n", First: 10, Count: 5}}, {ProducerLimits: &ProducerLimits{ExpiryMs: 500, Max: 1}}}},
		{Ops: []Op{{Append: &AppendOp{Object: "p", Size: 64, Parts: []AppendPart{
			{Topic: "t", TopicID: "tid", Partition: 0, Base: 3, Span: span, Producers: []ProducerBatch{{ID: 3, Epoch: 1, FirstSeq: 2, LastSeq: 2}}}}}}}},
		{Ops: []Op{{ProducerIDs: &ProducerIDsOp{First: 9, Count: 5}}}},
		// Topic admin (version 3): grow t and append to a new partition,
		// set u's retention, trim t/1; then a shrink and a trim backwards.
		{Ops: []Op{{AddPartitions: &AddPartitionsOp{Name: "t", ID: "tid", Partitions: 4}},
			{Append: &AppendOp{Object: "q", Size: 64, Parts: []AppendPart{{Topic: "t", TopicID: "tid", Partition: 3, Base: 0, Span: span}}}},
			{SetTopicConfig: &TopicConfigOp{Name: "u", ID: "uid", Retention: Retention{Ms: 1000, Bytes: -1}}},
			{Trim: &TrimOp{Topic: "t", TopicID: "tid", Partition: 1, Start: 7}},
			{Trim: &TrimOp{Topic: "t", TopicID: "tid", Partition: 3, Start: 2}}}},
		{Ops: []Op{{AddPartitions: &AddPartitionsOp{Name: "t", ID: "tid", Partitions: 1}}, {Trim: &TrimOp{Topic: "t", TopicID: "tid", Partition: 1, Start: 16}}}},
	}
	var out [][]byte
	for _, c := range commits {
		c.Version, c.Seq, c.ID = commitVersion(c.Ops), 3, "id"
		b, _ := json.Marshal(c)
		out = append(out, b)
	}
	return append(out, []byte(`{"v":1,"seq":3,"ops":[null,{}]}`), []byte(`{"v":4}`), []byte(`[]`))
}

// FuzzDecodeCommit: decoding and checking any bytes never panics, and a
// record that passes the check leaves a state that passes the checkpoint
// check: what nodes apply is always loadable.
func FuzzDecodeCommit(f *testing.F) {
	for _, s := range seedCommits() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := decodeCommit(LogKey(3), data)
		if err != nil {
			return
		}
		st := fuzzState()
		if st.checkCommit(c) != nil {
			return
		}
		st.apply(c)
		if err := checkState(st, 3); err != nil {
			t.Fatalf("a valid commit %s made an invalid state: %v", data, err)
		}
	})
}

// FuzzCheckpoint: decoding and checking any bytes never panics, and a
// checkpoint that passes can be used: sealed into pages that pass their
// own check, searched, and appended to.
func FuzzCheckpoint(f *testing.F) {
	st := fuzzState()
	st.Seq = 5
	b, _ := json.Marshal(checkpoint{Version: 2, State: st})
	f.Add(b)
	snap, _ := snapshotSealed(st, 2)
	b, _ = json.Marshal(checkpoint{Version: 2, State: snap})
	f.Add(b)
	b, _ = json.Marshal(checkpoint{Version: 1, State: snap}) // producers ignored
	f.Add(b)
	f.Add([]byte(`{"v":1,"state":{"seq":5,"topics":{}}}`))
	f.Add([]byte(`{"v":1,"state":{"seq":5,"topics":{"t":{"name":"t","id":"x","partitions":1,"parts":[{"start":0,"end":0,"entries":[]}]}}}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		key := checkpointKey(5)
		st, err := decodeCheckpoint(key, 5, data)
		if err != nil {
			return
		}
		snap, pages := snapshotSealed(st, 2)
		if err := checkState(snap, 5); err != nil {
			t.Fatalf("sealing a valid checkpoint made an invalid one: %v", err)
		}
		for _, pg := range pages {
			if err := checkPage(pg.ref, pg.entries); err != nil {
				t.Fatalf("sealed an invalid page: %v", err)
			}
		}
		span := Span{Count: 1, Batches: Batches{{Rows: 1, Len: 1}}}
		c := &Commit{Version: 1, Seq: 6}
		for name, ts := range st.Topics {
			for i, p := range ts.Parts {
				p.page(p.End - 1)
				findEntry(p.Entries, p.Start)
				c.Ops = append(c.Ops, Op{Append: &AppendOp{Object: fmt.Sprint(name, i), Size: 1, Parts: []AppendPart{
					{Topic: name, TopicID: ts.ID, Partition: int32(i), Base: p.End, Span: span}}}})
			}
		}
		if st.checkCommit(c) != nil {
			return // a partition whose end is at the top of int64 takes no more
		}
		st.apply(c)
		if err := checkState(st, 6); err != nil {
			t.Fatalf("appending to a valid checkpoint made an invalid state: %v", err)
		}
	})
}

// TestProducerSeedApplies: the fuzzer's producer seed is a valid record,
// so the fuzzer starts from one that reaches apply, and its limits prune.
func TestProducerSeedApplies(t *testing.T) {
	seeds := seedCommits()
	c, err := decodeCommit(LogKey(3), seeds[6])
	if err != nil {
		t.Fatal(err)
	}
	st := fuzzState()
	if err := st.checkCommit(c); err != nil {
		t.Fatal(err)
	}
	st.apply(c)
	if err := checkState(st, 3); err != nil {
		t.Fatal(err)
	}
	if n := st.producers().Len(); n != 1 || st.NextProducerID != 15 || st.ClockMs != 2000 {
		t.Fatalf("%d producer entries, next id %d, clock %d; want 1 (the limit), 15, 2000", n, st.NextProducerID, st.ClockMs)
	}
	for _, i := range []int{7, 8} {
		c, err := decodeCommit(LogKey(3), seeds[i])
		if err != nil {
			t.Fatal(err)
		}
		if fuzzState().checkCommit(c) == nil {
			t.Fatalf("seed %d is valid, want invalid", i)
		}
	}
}
