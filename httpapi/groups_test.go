package httpapi

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/shalelog/shale"
	"github.com/shalelog/shale/group"
	"github.com/shalelog/shale/kafka"
	"github.com/shalelog/shale/record"
	"github.com/shalelog/shale/tier"
	"github.com/shalelog/shale/tier/minio"
	"github.com/shalelog/shale/tier/tiertest"
)

// startGroupNode runs a node as serve does: one membership and one group
// manager shared by the Kafka and HTTP front ends. It returns the HTTP
// client and the Kafka address.
func startGroupNode(t *testing.T, s tier.Store, name string) (*Client, string) {
	t.Helper()
	ctx := context.Background()
	opts := shale.DefaultOptions()
	opts.Name = name
	opts.HotDir = t.TempDir()
	opts.RollAge = 20 * time.Millisecond
	opts.CacheBytes = 1 << 20
	n, err := shale.Start(ctx, s, opts)
	if err != nil {
		t.Fatal(err)
	}
	// Bind first: the membership advertises the Kafka address.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	kaddr := ln.Addr().String()
	members, err := shale.StartMembers(ctx, s, shale.Member{Name: name, ID: shale.MemberID(name), Addr: kaddr}, 500*time.Millisecond, nil)
	if err != nil {
		t.Fatal(err)
	}
	groups := kafka.NewGroups(n, members)
	ks := kafka.New(n, kafka.Options{Members: members, Groups: groups})
	if _, err := ks.Serve(ctx, ln); err != nil {
		t.Fatal(err)
	}
	srv := New(n, DefaultLimits())
	srv.SetGroups(groups, members)
	addr, err := srv.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ks.Close()
		srv.Close()
		groups.Close()
		members.Close()
		n.Close()
	})
	return NewClient(addr), kaddr
}

func statusCode(err error) int {
	var se *StatusError
	if errors.As(err, &se) {
		return se.Status
	}
	return 0
}

// offsetsOf maps a description's offsets to "topic/partition" keys.
func offsetsOf(d GroupDescription) map[string]GroupOffset {
	out := map[string]GroupOffset{}
	for _, o := range d.Offsets {
		out[fmt.Sprintf("%s/%d", o.Topic, o.Partition)] = o
	}
	return out
}

// TestGroups drives the group endpoints of two nodes on one MinIO bucket,
// with a franz-go group member joined through the Kafka front end: the
// offsets set over HTTP are where the member starts, and they cannot be
// changed while it is live.
func TestGroups(t *testing.T) {
	ctx := context.Background()
	ep := tiertest.StartMinIO(t)
	s, err := minio.Open(ctx, fmt.Sprintf("minio://%s:%s@%s/%s/groups", ep.AccessKey, ep.SecretKey, ep.Addr, ep.Bucket))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	a, ka := startGroupNode(t, s, "node-a")
	b, kb := startGroupNode(t, s, "node-b")

	if _, err := a.CreateTopic(ctx, TopicRequest{Name: "t", Partitions: 2}); err != nil {
		t.Fatal(err)
	}
	for p := range int32(2) {
		var recs []record.Record
		for i := range 10 {
			recs = append(recs, record.Record{Value: []byte(fmt.Sprintf("%d-%d", p, i)), Timestamp: time.Now().UnixMilli()})
		}
		if _, err := a.Produce(ctx, "t", p, recs); err != nil {
			t.Fatal(err)
		}
	}
	if gs, err := a.Groups(ctx); err != nil || len(gs) != 0 {
		t.Fatalf("groups before any: %v %v", gs, err)
	}
	if _, err := a.DescribeGroup(ctx, "g"); statusCode(err) != http.StatusNotFound {
		t.Fatalf("describe unknown group: %v, want 404", err)
	}

	// Set offsets on one node; both describe them, with the lag.
	if err := b.SetGroupOffsets(ctx, "g", []PartitionOffset{{"t", 0, 4}, {"t", 1, 10}}); err != nil {
		t.Fatal(err)
	}
	for _, c := range []*Client{a, b} {
		d, err := c.DescribeGroup(ctx, "g")
		if err != nil {
			t.Fatal(err)
		}
		o := offsetsOf(d)
		if o["t/0"].Committed != 4 || o["t/0"].End != 10 || o["t/0"].Lag != 6 || o["t/1"].Committed != 10 || o["t/1"].Lag != 0 || len(d.Members) != 0 {
			t.Fatalf("describe: %+v", d)
		}
		gs, err := c.Groups(ctx)
		if err != nil || len(gs) != 1 || gs[0].Group != "g" || gs[0].State != "Empty" {
			t.Fatalf("list: %+v %v", gs, err)
		}
	}

	// Bad offsets are refused before anything is written.
	for _, tc := range []struct {
		offs []PartitionOffset
		want int
	}{
		{[]PartitionOffset{{"t", 0, 11}}, http.StatusBadRequest},
		{[]PartitionOffset{{"t", 0, -1}}, http.StatusBadRequest},
		{[]PartitionOffset{{"t", 2, 0}}, http.StatusNotFound},
		{[]PartitionOffset{{"nope", 0, 0}}, http.StatusNotFound},
		{nil, http.StatusBadRequest},
	} {
		if err := a.SetGroupOffsets(ctx, "g", tc.offs); statusCode(err) != tc.want {
			t.Errorf("set %v: %v, want %d", tc.offs, err, tc.want)
		}
	}

	// A Kafka member of g starts from the offsets set over HTTP.
	cl, err := kgo.NewClient(kgo.SeedBrokers(ka, kb), kgo.ConsumerGroup("g"), kgo.ConsumeTopics("t"),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.DisableAutoCommit())
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	pctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	var got []*kgo.Record
	for len(got) < 6 && pctx.Err() == nil {
		fs := cl.PollFetches(pctx)
		got = append(got, fs.Records()...)
	}
	if len(got) != 6 || got[0].Partition != 0 || got[0].Offset != 4 {
		t.Fatalf("member consumed %d records, first %+v; want 6 from t/0 offset 4", len(got), got[0])
	}
	// While it is live, its offsets cannot be set or the group deleted,
	// on either node.
	for _, c := range []*Client{a, b} {
		if err := c.SetGroupOffsets(ctx, "g", []PartitionOffset{{"t", 0, 0}}); statusCode(err) != http.StatusConflict || !strings.Contains(err.Error(), "live members") {
			t.Fatalf("set offsets of a live group: %v, want 409", err)
		}
		if err := c.DeleteGroup(ctx, "g"); statusCode(err) != http.StatusConflict {
			t.Fatalf("delete a live group: %v, want 409", err)
		}
	}
	d, err := a.DescribeGroup(ctx, "g")
	if err != nil || len(d.Members) != 1 || d.State != "Stable" || d.Generation < 1 {
		t.Fatalf("describe live group: %+v %v", d, err)
	}
	if err := cl.CommitUncommittedOffsets(pctx); err != nil {
		t.Fatal(err)
	}
	cl.Close() // leaves the group

	// Once it left, the offsets can be set again, and the group deleted
	// (through whichever node; the other forwards to the coordinator).
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := b.SetGroupOffsets(ctx, "g", []PartitionOffset{{"t", 0, 2}})
		if err == nil {
			break
		}
		if statusCode(err) != http.StatusConflict || time.Now().After(deadline) {
			t.Fatalf("set offsets after the member left: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	d, err = a.DescribeGroup(ctx, "g")
	if o := offsetsOf(d); err != nil || o["t/0"].Committed != 2 || o["t/0"].Lag != 8 || o["t/1"].Committed != 10 {
		t.Fatalf("after reset: %+v %v", d, err)
	}
	// Each node sets and deletes a group the other coordinates: both
	// requests are forwarded to the coordinator's Kafka listener.
	for _, tc := range []struct {
		c     *Client
		coord string
	}{{a, "node-b"}, {b, "node-a"}} {
		name := ""
		for i := 0; name == ""; i++ {
			if n := fmt.Sprintf("del-%d", i); group.Pick(n, []string{"node-a", "node-b"}) == tc.coord {
				name = n
			}
		}
		if err := tc.c.SetGroupOffsets(ctx, name, []PartitionOffset{{"t", 1, 3}}); err != nil {
			t.Fatal(err)
		}
		for _, c := range []*Client{a, b} {
			d, err := c.DescribeGroup(ctx, name)
			if o := offsetsOf(d); err != nil || o["t/1"].Committed != 3 || o["t/1"].Lag != 7 || d.Coordinator != tc.coord {
				t.Fatalf("describe %s: %+v %v", name, d, err)
			}
		}
		if err := tc.c.DeleteGroup(ctx, name); err != nil {
			t.Fatalf("delete %s: %v", name, err)
		}
		for _, c := range []*Client{a, b} {
			if _, err := c.DescribeGroup(ctx, name); statusCode(err) != http.StatusNotFound {
				t.Fatalf("describe deleted group: %v", err)
			}
			if err := c.DeleteGroup(ctx, name); statusCode(err) != http.StatusNotFound {
				t.Fatalf("delete deleted group: %v, want 404", err)
			}
		}
	}
}

// TestGroupsWithoutManager: a server given no group manager says so.
func TestGroupsWithoutManager(t *testing.T) {
	s, _ := fsStore(t)
	_, c := startNode(t, s, nil)
	if _, err := c.Groups(context.Background()); statusCode(err) != http.StatusServiceUnavailable {
		t.Fatalf("groups without a manager: %v, want 503", err)
	}
}
