package manifest

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
)

// recordVersion reads commit seq's format version from the bucket.
func recordVersion(t *testing.T, l *Log, seq int64) int {
	t.Helper()
	data, _, err := l.store.Get(context.Background(), LogKey(seq), 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	var c Commit
	if err := json.Unmarshal(data, &c); err != nil {
		t.Fatal(err)
	}
	return c.Version
}

// TestAddPartitions: a topic grows on one node, the other node appends to
// the new partition at offset 0, and existing offsets stay; shrinking,
// passing the cluster limit and validate-only commit nothing.
func TestAddPartitions(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	a := openLog(t, s, Options{MaxPartitions: 6, CheckpointEvery: 3})
	b := openLog(t, s, Options{MaxPartitions: 6})
	if _, err := a.CreateTopic(ctx, "t", 2, Retention{Ms: -1, Bytes: -1}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Append(ctx, []PendingObject{pending("o1", "t", 0, 1)}); err != nil {
		t.Fatal(err)
	}
	seq := a.Seq()
	if tp, err := a.AddPartitions(ctx, "t", 4, true); err != nil || tp.Partitions != 4 || a.Seq() != seq {
		t.Fatalf("validate only: %+v, %v, seq %d; want 4 partitions and no commit", tp, err, a.Seq())
	}
	for _, n := range []int32{2, 1} {
		if _, err := a.AddPartitions(ctx, "t", n, false); !errors.Is(err, ErrInvalidTopic) || errors.Is(err, ErrPartitionLimit) {
			t.Fatalf("shrink to %d: %v, want ErrInvalidTopic", n, err)
		}
	}
	if _, err := a.AddPartitions(ctx, "t", 7, false); !errors.Is(err, ErrPartitionLimit) {
		t.Fatalf("past the cluster limit: %v", err)
	}
	if _, err := a.AddPartitions(ctx, "nope", 3, true); !errors.Is(err, ErrUnknownTopic) {
		t.Fatalf("unknown topic: %v", err)
	}
	if a.Seq() != seq {
		t.Fatalf("refused changes committed: seq %d, want %d", a.Seq(), seq)
	}
	if tp, err := a.AddPartitions(ctx, "t", 4, false); err != nil || tp.Partitions != 4 {
		t.Fatalf("grow: %+v, %v", tp, err)
	}
	if v := recordVersion(t, a, a.Seq()); v != 3 {
		t.Fatalf("add_partitions record is version %d, want 3", v)
	}
	// b, which saw the topic with 2 partitions, learns of the growth
	// when asked for a new partition, and appends to it from offset 0
	// beside the old ones.
	if _, err := b.Topic(ctx, "t"); err != nil {
		t.Fatal(err)
	}
	if tp, err := b.TopicPartition(ctx, "t", 3); err != nil || tp.Partitions != 4 {
		t.Fatalf("b, behind, asked for a new partition: %+v, %v", tp, err)
	}
	if _, err := b.TopicPartition(ctx, "t", 4); !errors.Is(err, ErrUnknownPartition) {
		t.Fatalf("partition 4: %v", err)
	}
	res, err := b.Append(ctx, []PendingObject{pending("o2", "t", 0, 3)})
	if err != nil || res[0].Err[0] != nil || res[0].Err[1] != nil || res[0].Base[0] != 3 || res[0].Base[1] != 0 {
		t.Fatalf("append after growth: %+v, %v", res, err)
	}
	if v := recordVersion(t, b, b.Seq()); v != 1 {
		t.Fatalf("an append to a grown topic is version %d, want 1", v)
	}
	// A node replaying the log (from a checkpoint) gets the same.
	c := openLog(t, s, Options{})
	tp, parts, err := c.Describe("t")
	if err != nil || tp.Partitions != 4 || len(parts) != 4 {
		t.Fatalf("describe: %+v %+v %v", tp, parts, err)
	}
	for i, want := range []int64{6, 3, 0, 3} {
		if parts[i].End != want || parts[i].Start != 0 {
			t.Errorf("partition %d: %+v, want end %d", i, parts[i], want)
		}
	}
}

// TestSetRetention: a change sets only the values given, every node sees
// it, and a change to the current values commits nothing.
func TestSetRetention(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	a := openLog(t, s, Options{})
	b := openLog(t, s, Options{})
	if _, err := a.CreateTopic(ctx, "t", 1, Retention{Ms: -1, Bytes: -1}); err != nil {
		t.Fatal(err)
	}
	ms, bytes := int64(60000), int64(1<<30)
	if tp, err := b.SetRetention(ctx, "t", &ms, nil, true); err != nil || tp.Retention != (Retention{Ms: 60000, Bytes: -1}) || b.Seq() != 1 {
		t.Fatalf("validate only: %+v, %v, seq %d", tp, err, b.Seq())
	}
	if _, err := b.SetRetention(ctx, "t", &ms, nil, false); err != nil {
		t.Fatal(err)
	}
	if _, err := a.SetRetention(ctx, "t", nil, &bytes, false); err != nil {
		t.Fatal(err)
	}
	if v := recordVersion(t, a, 3); v != 3 {
		t.Fatalf("set_topic_config record is version %d, want 3", v)
	}
	seq := a.Seq()
	if _, err := a.SetRetention(ctx, "t", &ms, &bytes, false); err != nil || a.Seq() != seq {
		t.Fatalf("no change: %v, seq %d, want %d", err, a.Seq(), seq)
	}
	if err := b.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	tp, err := b.Topic(ctx, "t")
	if err != nil || tp.Retention != (Retention{Ms: 60000, Bytes: 1 << 30}) {
		t.Fatalf("b sees %+v, %v; want both changes", tp, err)
	}
	if _, err := a.SetRetention(ctx, "nope", &ms, nil, false); !errors.Is(err, ErrUnknownTopic) {
		t.Fatalf("unknown topic: %v", err)
	}
}

// TestTrim: the start offset advances, never goes back, never passes the
// end, and survives a replay; readers' Locate reports it.
func TestTrim(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	a := openLog(t, s, Options{})
	if _, err := a.CreateTopic(ctx, "t", 2, Retention{Ms: -1, Bytes: -1}); err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{"o1", "o2"} {
		if _, err := a.Append(ctx, []PendingObject{pending(key, "t", 0)}); err != nil {
			t.Fatal(err)
		}
	}
	trim := func(reqs ...TrimRequest) []TrimResult {
		t.Helper()
		res, err := a.Trim(ctx, reqs)
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	for _, c := range []struct {
		offset, want int64
		err          error
	}{
		{4, 4, nil},
		{2, 4, nil}, // backwards: nothing changes
		{7, 0, ErrOffsetOutOfRange},
		{-5, 0, ErrOffsetOutOfRange},
		{TrimToEnd, 6, nil},
	} {
		r := trim(TrimRequest{"t", 0, c.offset})[0]
		if !errors.Is(r.Err, c.err) || (r.Err == nil && r.Start != c.want) {
			t.Fatalf("trim to %d: start %d, %v; want %d, %v", c.offset, r.Start, r.Err, c.want, c.err)
		}
	}
	if a.Seq() != 5 || recordVersion(t, a, 4) != 3 {
		t.Fatalf("seq %d, want 5 (create, 2 appends, 2 trims)", a.Seq())
	}
	// Several partitions in one commit; the failures are left out.
	if _, err := a.Append(ctx, []PendingObject{pending("o3", "t", 1)}); err != nil {
		t.Fatal(err)
	}
	res := trim(TrimRequest{"t", 2, 0}, TrimRequest{"t", 1, 1}, TrimRequest{"nope", 0, 0}, TrimRequest{"t", 1, 2}, TrimRequest{"t", 1, 1}, TrimRequest{"t", 0, TrimToEnd})
	want := []TrimResult{{0, ErrUnknownPartition}, {1, nil}, {0, ErrUnknownTopic}, {2, nil}, {2, nil}, {6, nil}}
	for i, r := range res {
		if !errors.Is(r.Err, want[i].Err) || (r.Err == nil && r.Start != want[i].Start) {
			t.Errorf("request %d: %+v, want %+v", i, r, want[i])
		}
	}
	if a.Seq() != 7 {
		t.Fatalf("seq %d, want 7 (one commit for the trims)", a.Seq())
	}
	// A time lookup skips what is below the start: every entry of t/0
	// has timestamps 1-2 (pending), all below the start 6.
	if off, err := a.FindTime(ctx, "t", 0, 0); err != nil || off != 6 {
		t.Fatalf("find time below the start: %d, %v; want 6", off, err)
	}
	if off, err := a.FindTime(ctx, "t", 1, 0); err != nil || off != 2 {
		t.Fatalf("find time in an entry straddling the start: %d, %v; want the start 2", off, err)
	}
	b := openLog(t, s, Options{})
	start, end, entries, err := b.Locate(ctx, "t", 0, 0, 10)
	if err != nil || start != 6 || end != 6 || len(entries) != 2 {
		t.Fatalf("locate after replay: [%d, %d) %d entries, %v; want [6, 6) and the entries kept for the compactor", start, end, len(entries), err)
	}
}

// TestVersion2IgnoresAdminOps: a version 2 record cannot hold the topic
// admin operations, so one that names them has an element with no
// operation and is skipped, as a version 2 node judges it.
func TestVersion2IgnoresAdminOps(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	a := openLog(t, s, Options{})
	tp, err := a.CreateTopic(ctx, "t", 1, Retention{})
	if err != nil {
		t.Fatal(err)
	}
	data, _ := json.Marshal(Commit{Version: 2, Seq: 2, Ops: []Op{{AddPartitions: &AddPartitionsOp{Name: "t", ID: tp.ID, Partitions: 2}}}})
	putRaw(t, s, 2, data)
	if err := a.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if tp, _ := a.Topic(ctx, "t"); a.Skipped() != 1 || tp.Partitions != 1 {
		t.Fatalf("skipped %d, partitions %d; want 1, 1", a.Skipped(), tp.Partitions)
	}
}

// TestAdminSeedsApply: the fuzzer's topic admin seed is valid and its
// shrink seed is not.
func TestAdminSeedsApply(t *testing.T) {
	seeds := seedCommits()
	c, err := decodeCommit(LogKey(3), seeds[9])
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
	tt := st.Topics["t"]
	if tt.Partitions != 4 || tt.Parts[3].End != 2 || tt.Parts[3].Start != 2 || tt.Parts[1].Start != 7 || st.Topics["u"].Retention.Ms != 1000 {
		t.Fatalf("after the admin seed: %+v", st)
	}
	if c, err = decodeCommit(LogKey(3), seeds[10]); err != nil {
		t.Fatal(err)
	}
	if fuzzState().checkCommit(c) == nil {
		t.Fatal("a shrink is valid")
	}
}
