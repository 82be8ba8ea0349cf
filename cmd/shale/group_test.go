package main

import (
	"bufio"
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// groupRows parses the offsets table of `shale group describe`:
// "topic/partition" -> committed, end, lag.
func groupRows(t *testing.T, out string) map[string][3]int64 {
	t.Helper()
	rows := map[string][3]int64{}
	in := false
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) > 0 && f[0] == "TOPIC":
			in = true
		case len(f) == 0:
			in = false
		case in && len(f) == 5:
			var v [3]int64
			for i := range 3 {
				n, err := strconv.ParseInt(f[2+i], 10, 64)
				if err != nil {
					t.Fatalf("describe line %q: %v", line, err)
				}
				v[i] = n
			}
			rows[f[0]+"/"+f[1]] = v
		}
	}
	return rows
}

// TestGroupCLI: a franz-go group consumer commits through one node's Kafka
// listener; `shale group describe` on the other node shows its offsets
// and lag; `group reset` is refused while it is live and works once it
// left, and a new member resumes at the reset offsets; `consume --group`
// resumes where a previous run stopped.
func TestGroupCLI(t *testing.T) {
	store := minioStore(t)
	a := startServer(t, store, t.TempDir(), nil)
	b := startServer(t, store, t.TempDir(), nil)
	env := []string{"SHALE_SERVER=" + b.url}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	prod := kafkaClient(t, kgo.SeedBrokers(a.kafka), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	kafkaCreateTopic(t, prod, "orders", 3)
	produce := func(perPartition int) {
		var recs []*kgo.Record
		for p := range int32(3) {
			for i := range perPartition {
				recs = append(recs, &kgo.Record{Topic: "orders", Partition: p, Value: []byte(fmt.Sprintf("%d-%d", p, i))})
			}
		}
		if err := prod.ProduceSync(ctx, recs...).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	produce(100)

	// A group member consumes all 300 and commits, then more arrive.
	member := func() *kgo.Client {
		c, err := kgo.NewClient(kgo.SeedBrokers(a.kafka), kgo.ConsumerGroup("billing"), kgo.ConsumeTopics("orders"),
			kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.DisableAutoCommit())
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	c := member()
	defer c.Close()
	for n := 0; n < 300; {
		fs := c.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("consumed %d of 300", n)
		}
		n += len(fs.Records())
	}
	if err := c.CommitUncommittedOffsets(ctx); err != nil {
		t.Fatal(err)
	}
	produce(20)

	out := mustCLI(t, env, "", "group", "describe", "billing")
	rows := groupRows(t, out)
	for p := range 3 {
		if got, want := rows[fmt.Sprintf("orders/%d", p)], [3]int64{100, 120, 20}; got != want {
			t.Fatalf("describe partition %d: %v, want %v:\n%s", p, got, want, out)
		}
	}
	if !strings.Contains(out, "members 1") || !strings.Contains(out, "MEMBER") {
		t.Fatalf("describe does not show the live member:\n%s", out)
	}
	if out := mustCLI(t, env, "", "group", "list"); !strings.Contains(out, "billing\tStable\t1") {
		t.Fatalf("group list: %q", out)
	}

	// Refused while the member is live: exit 1 and a clear message.
	_, errOut, code := cli(t, env, "", "group", "reset", "billing", "--topic", "orders", "--to-earliest")
	if code != 1 || !strings.Contains(errOut, "live members") {
		t.Fatalf("reset of a live group: exit %d: %s", code, errOut)
	}
	if _, errOut, code := cli(t, env, "", "consume", "orders", "--group", "billing"); code != 1 || !strings.Contains(errOut, "live members") {
		t.Fatalf("consume --group of a live group: exit %d: %s", code, errOut)
	}
	// Usage mistakes: exit 2.
	for _, args := range [][]string{
		{"group", "reset", "billing", "--topic", "orders"},
		{"group", "reset", "billing", "--topic", "orders", "--to-earliest", "--to-latest"},
		{"group", "reset", "billing", "--to-earliest"},
		{"group", "describe"},
		{"group", "nope"},
	} {
		if _, errOut, code := cli(t, env, "", args...); code != 2 {
			t.Errorf("shale %s: exit %d, want 2: %s", strings.Join(args, " "), code, errOut)
		}
	}

	c.Close() // leaves the group
	// --dry-run prints the plan and commits nothing.
	out = mustCLI(t, env, "", "group", "reset", "billing", "--topic", "orders", "--shift-by", "-10", "--dry-run")
	if !strings.Contains(out, "dry run") || len(strings.Fields(strings.Split(out, "\n")[1])) != 4 || strings.Fields(strings.Split(out, "\n")[1])[3] != "90" {
		t.Fatalf("dry run: %s", out)
	}
	if rows := groupRows(t, mustCLI(t, env, "", "group", "describe", "billing")); rows["orders/0"][0] != 100 {
		t.Fatalf("dry run committed: %v", rows)
	}
	mustCLI(t, env, "", "group", "reset", "billing", "--topic", "orders", "--shift-by", "-10")
	out = mustCLI(t, []string{"SHALE_SERVER=" + a.url}, "", "group", "describe", "billing")
	rows = groupRows(t, out)
	for p := range 3 {
		if got, want := rows[fmt.Sprintf("orders/%d", p)], [3]int64{90, 120, 30}; got != want {
			t.Fatalf("after reset, partition %d: %v, want %v:\n%s", p, got, want, out)
		}
	}
	if strings.Contains(out, "MEMBER") {
		t.Fatalf("members after the member left:\n%s", out)
	}
	// A new member resumes at the reset offsets.
	c2 := member()
	defer c2.Close()
	first := map[int32]int64{}
	for n := 0; n < 90; {
		fs := c2.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("new member consumed %d of 90", n)
		}
		for _, r := range fs.Records() {
			if _, ok := first[r.Partition]; !ok {
				first[r.Partition] = r.Offset
			}
			n++
		}
	}
	if first[0] != 90 || first[1] != 90 || first[2] != 90 {
		t.Fatalf("new member started at %v, want 90 in each partition", first)
	}
	c2.Close()

	// --to-time and --to-latest compute absolute offsets client-side.
	mustCLI(t, env, "", "group", "reset", "billing", "--topic", "orders", "--to-time", "2000-01-01")
	if rows := groupRows(t, mustCLI(t, env, "", "group", "describe", "billing")); rows["orders/2"] != [3]int64{0, 120, 120} {
		t.Fatalf("after --to-time: %v", rows)
	}
	mustCLI(t, env, "", "group", "reset", "billing", "--topic", "orders", "--to-time", "2100-01-01")
	if rows := groupRows(t, mustCLI(t, env, "", "group", "describe", "billing")); rows["orders/2"] != [3]int64{120, 120, 0} {
		t.Fatalf("after --to-time in the future: %v", rows)
	}
	mustCLI(t, env, "", "group", "reset", "billing", "--topic", "orders", "--to-offset", "5")
	mustCLI(t, env, "", "group", "reset", "billing", "--topic", "orders", "--partition", "1", "--to-latest")
	if rows := groupRows(t, mustCLI(t, env, "", "group", "describe", "billing")); rows["orders/1"] != [3]int64{120, 120, 0} || rows["orders/2"][0] != 5 {
		t.Fatalf("after --to-latest of partition 1: %v", rows)
	}

	// consume --group: the second run goes on where the first stopped;
	// together they print every record once.
	type rec struct {
		Partition int32 `json:"partition"`
		Offset    int64 `json:"offset"`
	}
	seen := map[rec]bool{}
	for i, max := range []string{"50", "1000"} {
		out := mustCLI(t, env, "", "consume", "orders", "--group", "audit", "--format", "json", "--max", max)
		recs := parseLines[rec](t, out)
		if want := []int{50, 310}[i]; len(recs) != want {
			t.Fatalf("consume run %d printed %d records, want %d", i, len(recs), want)
		}
		for _, r := range recs {
			if seen[r] {
				t.Fatalf("record %+v printed twice", r)
			}
			seen[r] = true
		}
	}
	out = mustCLI(t, env, "", "consume", "orders", "--group", "audit")
	if out != "" {
		t.Fatalf("a third run printed %q, want nothing", out)
	}
	for k, v := range groupRows(t, mustCLI(t, env, "", "group", "describe", "audit")) {
		if v != [3]int64{120, 120, 0} {
			t.Fatalf("audit %s: %v", k, v)
		}
	}
}

// TestConsumeGroupFollow: `consume --group --follow` commits what it
// printed while it runs (every 5s) and when interrupted; the next run
// prints only what came after.
func TestConsumeGroupFollow(t *testing.T) {
	srv := startServer(t, fileStore(t), t.TempDir(), nil)
	env := []string{"SHALE_SERVER=" + srv.url}
	mustCLI(t, env, "", "topic", "create", "f", "--partitions", "2")
	mustCLI(t, env, numbers(1, 10), "produce", "f")

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := shaleCmd(ctx, env, "consume", "f", "--group", "tail", "--follow")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr lockedWriter
	stderr.w = &strings.Builder{}
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string, 100)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	read := func(n int) {
		for range n {
			select {
			case <-lines:
			case <-ctx.Done():
				t.Fatalf("consume --follow printed too few lines: %s", stderr.String())
			}
		}
	}
	read(10)
	mustCLI(t, env, numbers(11, 15), "produce", "f")
	read(5)
	// The periodic commit, while the command still runs.
	waitFor(t, func() bool {
		time.Sleep(200 * time.Millisecond)
		out, _, code := cli(t, env, "", "group", "describe", "tail")
		if code != 0 {
			return false // no commit yet
		}
		var sum int64
		for _, v := range groupRows(t, out) {
			sum += v[0]
		}
		return sum == 15
	})
	mustCLI(t, env, numbers(16, 17), "produce", "f")
	read(2)
	cmd.Process.Signal(syscall.SIGINT)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("consume --follow after SIGINT: %v: %s", err, stderr.String())
	}
	mustCLI(t, env, numbers(18, 20), "produce", "f")
	out := mustCLI(t, env, "", "consume", "f", "--group", "tail")
	got := strings.Fields(out)
	sort.Strings(got)
	if strings.Join(got, " ") != "18 19 20" {
		t.Fatalf("after the interrupted run: %q, want 18 19 20", out)
	}
}
