package manifest

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/shalelog/shale/tier"
)

// TestVerify: a clean bucket has no problems; each injected problem is
// reported on the key it is in.
func TestVerify(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	l, err := Open(ctx, s, Options{CheckpointEvery: 4, PageEntries: 2})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.CreateTopic(ctx, "t", 2, Retention{}); err != nil {
		t.Fatal(err)
	}
	for i := range 11 {
		key := fmt.Sprintf("data/o%d", i)
		if _, err := s.Put(ctx, key, make([]byte, 100)); err != nil {
			t.Fatal(err)
		}
		o := pending(key, "t", 0, 1)
		o.Parts[0].MaxTs = int64(-i) // pages of negative timestamps too
		o.Parts[0].MinTs = o.Parts[0].MaxTs - 1
		if _, err := l.Append(ctx, []PendingObject{o}); err != nil {
			t.Fatal(err)
		}
		waitCheckpoint(l)
	}
	l.Close()
	problems, err := Verify(ctx, s, VerifyOptions{})
	if err != nil || len(problems) != 0 {
		t.Fatalf("clean bucket: %v, %v", problems, err)
	}

	// Inject: an invalid record, a missing object, an object of the wrong
	// size, a page that disagrees with the log, a page whose max timestamp
	// disagrees with its reference, an invalid checkpoint.
	putRaw(t, s, 13, []byte(`{"v":1,"seq":13,"ops":[{"create_topic":{"name":"u","id":"u1","partitions":-1}}]}`))
	if err := s.Delete(ctx, "data/o3"); err != nil {
		t.Fatal(err)
	}
	overwrite(t, s, "data/o4", make([]byte, 99))
	var cp checkpoint
	data, _, err := s.Get(ctx, checkpointKey(12), 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &cp); err != nil {
		t.Fatal(err)
	}
	refs := cp.State.Topics["t"].Parts[0].Pages
	if len(refs) < 3 {
		t.Fatalf("checkpoint 12 has %d pages; the test needs 3", len(refs))
	}
	editPage(t, s, refs[0].Key, func(es []Entry) { es[1].Object = "data/elsewhere" })
	editPage(t, s, refs[1].Key, func(es []Entry) { es[0].MaxTs = 7; es[0].MinTs = 7 })
	editCheckpoint(t, s, 8, func(st *State) { st.Topics["t"].Parts[1].End = 5 })

	problems, err = Verify(ctx, s, VerifyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		LogKey(13):       "invalid commit record",
		"data/o3":        "missing",
		"data/o4":        "99 bytes",
		refs[0].Key:      "differs from the log",
		refs[1].Key:      "max timestamp",
		checkpointKey(8): "invalid checkpoint",
	}
	for _, p := range problems {
		t.Log(p)
	}
	for key, what := range want {
		found := false
		for _, p := range problems {
			found = found || p.Key == key && strings.Contains(p.What, what)
		}
		if !found {
			t.Errorf("no problem %q reported for %s", what, key)
		}
	}
	if len(problems) != len(want) {
		t.Errorf("%d problems, want %d", len(problems), len(want))
	}
}

func editPage(t *testing.T, s tier.Store, key string, f func([]Entry)) {
	t.Helper()
	data, _, err := s.Get(context.Background(), key, 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	var pg page
	if err := json.Unmarshal(data, &pg); err != nil {
		t.Fatal(err)
	}
	f(pg.Entries)
	data, _ = json.Marshal(pg)
	overwrite(t, s, key, data)
}
