package shale

import (
	"context"
	"testing"
	"time"

	"github.com/shalelog/shale/tier"
	"github.com/shalelog/shale/tier/minio"
	"github.com/shalelog/shale/tier/tiertest"
)

func liveNames(t *testing.T, m *Members) []string {
	t.Helper()
	ms, err := m.Live(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, x := range ms {
		out = append(out, x.Name)
	}
	return out
}

// TestMembers: nodes see each other through their heartbeats; a node that
// closes leaves at once, one that stops beating (died) within the bound.
// On MinIO too, whose writes do not return a modification time (a dead
// node stayed live forever there).
func TestMembers(t *testing.T) {
	t.Run("mem", func(t *testing.T) { testMembers(t, tiertest.NewMemStore(), 50*time.Millisecond) })
	t.Run("minio", func(t *testing.T) {
		ep := tiertest.StartMinIO(t)
		s, err := minio.Open(t.Context(), "minio://"+ep.AccessKey+":"+ep.SecretKey+"@"+ep.Addr+"/"+ep.Bucket+"/members")
		if err != nil {
			t.Fatal(err)
		}
		testMembers(t, s, 200*time.Millisecond)
	})
}

func testMembers(t *testing.T, store tier.Store, interval time.Duration) {
	ctx := context.Background()
	a, err := StartMembers(ctx, store, Member{Name: "a", Addr: "127.0.0.1:1"}, interval, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := StartMembers(ctx, store, Member{Name: "b", Addr: "127.0.0.1:2"}, interval, nil)
	if err != nil {
		t.Fatal(err)
	}
	if a.Self().ID != MemberID("a") || a.Self().ID < 0 {
		t.Fatalf("self %+v", a.Self())
	}
	// A heartbeat nobody refreshes: a node that died.
	if _, err := store.Put(ctx, MembersPrefix+"dead.json", []byte(`{"version":1,"name":"dead","id":7,"addr":"127.0.0.1:3"}`)); err != nil {
		t.Fatal(err)
	}
	// Junk under the prefix hides nothing else.
	if _, err := store.Put(ctx, MembersPrefix+"junk.json", []byte(`{`)); err != nil {
		t.Fatal(err)
	}
	time.Sleep(interval) // past Live's cache
	if got := liveNames(t, a); len(got) != 3 {
		t.Fatalf("live %v, want a, b and dead", got)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add((MissedHeartbeats + 2) * interval * 4)
	for {
		got := liveNames(t, a)
		if len(got) == 1 && got[0] == "a" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("live %v after b closed and dead stopped, want only a", got)
		}
		time.Sleep(interval / 2)
	}
}
