package main

import (
	"bufio"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"sync"
	"text/template"
	"time"

	"github.com/shalelog/shale/httpapi"
	"github.com/shalelog/shale/record"
)

const consumeAbout = `Prints records of a topic (every partition, or --partition) from --offset,
--time or --since, up to each partition's end when it started (or --until),
or, with --follow, waiting for new records; --follow reconnects after a server
restart and goes on from the next offset.
Output (--format): text prints each value on a line (or --template); json
prints one JSON object per record, the input of 'produce --input json'.
With --group G, each partition starts at G's committed offset (where there is
none, where --offset, --time or --since say), and the offsets of what was
printed are committed to G at the end (and every 5s with --follow): the next
run with --group G goes on from there. G is the same group Kafka consumers
with group.id G use; it must have no live Kafka members.
Times are RFC 3339 (2026-11-30T08:00:00Z), dates (2026-11-30, UTC) or
milliseconds since the epoch.`

const consumeExample = `shale consume orders --offset -10                  # the last 10 records of each partition
shale consume orders --since 1d --until 2026-11-30 --format json
shale consume orders --partition 2 --offset end --follow
shale consume orders --group audit --max 1000      # the next 1000, from where audit stopped
shale consume orders --template '{{.Partition}}/{{.Offset}} {{.Key}}={{.Value}} {{header "trace"}}'`

// consumeOpts are consume's settings, independent of flags.
type consumeOpts struct {
	topic     string
	partition int32 // -1: every partition
	offset    startOffset
	from      *time.Time
	until     until
	max       int64 // 0: no limit
	follow    bool
	json      bool
	tmpl      *template.Template
	group     string // resume from and commit to this group; "" for none
}

func runConsume(ctx context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) error {
	f := newFlags("consume", "consume TOPIC [flags]", stdout)
	f.about, f.example = consumeAbout, consumeExample
	partition := f.Count("partition", -1, math.MinInt32, math.MaxInt32, "partition to read (default: every partition)")
	f.last().def = ""
	offset := f.String("offset", "beginning", "where to start in each partition: beginning, end, N (offset N) or -N (the last N records)")
	at := f.String("time", "", "start at each partition's first record at or after this time")
	since := f.DurationDef("since", 0, "none", "start at the first record at or after now minus this duration (30m, 12h, 7d)")
	untilS := f.String("until", "", "stop before this offset (a whole number), or before the first record at or after this time (RFC 3339, a date, or @MS)")
	maxRecs := f.Count("max", 0, 0, math.MaxInt64, "stop after this many records in all (0: no limit)")
	follow := f.Bool("follow", false, "at the end, wait for new records instead of stopping")
	format := f.String("format", "text", "output: text (values, one per line, or --template) or json (one object per line)")
	tmpl := f.String("template", "", "Go text/template for each record's text line, over .Key .Value .Partition .Offset .Timestamp (ms) .Time .Headers and {{header \"NAME\"}}")
	groupName := f.String("group", "", "resume from this consumer group's committed offsets and commit what was printed")
	cf := addClientFlags(f)
	pos, err := f.parse(args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usagef("consume takes one topic name")
	}
	o := consumeOpts{topic: pos[0], partition: int32(*partition), max: *maxRecs, follow: *follow, group: *groupName}
	if o.group != "" {
		if err := serverOnly(cf, "consume --group"); err != nil {
			return err
		}
	}
	if o.offset, err = parseOffset(*offset); err != nil {
		return usagef("--offset: %v", err)
	}
	starts := 0
	for _, name := range []string{"offset", "time", "since"} {
		if f.given(name) {
			starts++
		}
	}
	if starts > 1 {
		return usagef("give at most one of --offset, --time and --since")
	}
	switch {
	case *at != "":
		t, err := parseTime(*at)
		if err != nil {
			return usagef("--time: %v", err)
		}
		o.from = &t
	case *since > 0:
		t := time.Now().Add(-*since)
		o.from = &t
	}
	o.until = until{offset: -1}
	if *untilS != "" {
		if o.until, err = parseUntil(*untilS); err != nil {
			return usagef("--until: %v", err)
		}
	}
	switch *format {
	case "text":
	case "json":
		o.json = true
		if *tmpl != "" {
			return usagef("--template applies to --format text")
		}
	default:
		return usagef("--format %q: want text or json", *format)
	}
	if *tmpl != "" {
		if o.tmpl, err = parseTemplate(*tmpl); err != nil {
			return usagef("--template: %v", err)
		}
	}
	a, d, done, err := cf.connectTopic(ctx, f, o.topic, *partition, stderr)
	if err != nil {
		return err
	}
	defer done()
	return consume(ctx, a, o, d, stdout, stderr)
}

// tmplRecord is what --template sees.
type tmplRecord struct {
	Partition  int32
	Offset     int64
	Timestamp  int64 // ms since the epoch
	Time       time.Time
	Key, Value string
	Headers    []tmplHeader
}

type tmplHeader struct{ Key, Value string }

func parseTemplate(s string) (*template.Template, error) {
	return template.New("record").Option("missingkey=error").Funcs(template.FuncMap{
		// header is replaced per record; this one only lets Parse see it.
		"header": func(string) string { return "" },
	}).Parse(s)
}

func consume(ctx context.Context, a *api, o consumeOpts, d httpapi.TopicDescription, stdout, stderr io.Writer) error {
	var parts []int32
	if o.partition >= 0 {
		parts = []int32{o.partition}
	} else {
		for p := range d.Partitions {
			parts = append(parts, p)
		}
	}
	// Every partition's start is resolved before anything is printed, so
	// an offset out of range fails the command instead of printing some
	// partitions and not others.
	next := make([]int64, len(parts))
	committed := map[int32]int64{}
	if o.group != "" {
		gd, _, err := a.describeGroup(ctx, o.group)
		if err != nil {
			return err
		}
		if len(gd.Members) > 0 {
			return fmt.Errorf("group %s: %w", o.group, errGroupActive)
		}
		for _, c := range gd.Offsets {
			if c.Topic == o.topic {
				committed[c.Partition] = c.Committed
			}
		}
	}
	for i, p := range parts {
		info := d.Parts[p]
		var err error
		if c, ok := committed[p]; ok {
			// Retention may have passed the committed offset: go on from
			// the first record still kept, as Kafka's auto.offset.reset
			// would.
			next[i] = min(max(c, info.Start), info.End)
			continue
		}
		if o.from != nil {
			next[i], err = a.offsetForTime(ctx, o.topic, p, *o.from)
		} else {
			next[i], err = o.offset.resolve(info.Start, info.End)
		}
		if err != nil {
			return fmt.Errorf("partition %d: %w", p, err)
		}
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		mu      sync.Mutex
		printed int64
		errs    []error
		warned  bool
		pos     = map[int32]int64{} // the offset after the last record printed
		synced  = map[int32]int64{} // what was committed to the group
	)
	// commit commits the group's new positions; under mu.
	commit := func(ctx context.Context) error {
		var offs []httpapi.PartitionOffset
		for p, n := range pos {
			if synced[p] != n {
				offs = append(offs, httpapi.PartitionOffset{Topic: o.topic, Partition: p, Offset: n})
			}
		}
		if len(offs) == 0 {
			return nil
		}
		if err := a.setGroupOffsets(ctx, o.group, offs); err != nil {
			return fmt.Errorf("commit to group %s: %w", o.group, err)
		}
		for _, c := range offs {
			synced[c.Partition] = c.Offset
		}
		return nil
	}
	w := bufio.NewWriter(stdout)
	enc := json.NewEncoder(w)
	var tmpl *template.Template
	if o.tmpl != nil {
		tmpl, _ = o.tmpl.Clone()
	}
	emit := func(p int32, recs []record.Record) (bool, error) {
		mu.Lock()
		defer mu.Unlock()
		defer w.Flush()
		for i := range recs {
			if o.max > 0 && printed >= o.max {
				cancel()
				return false, nil
			}
			r := &recs[i]
			switch {
			case o.json:
				enc.Encode(httpapi.ToJSON(p, r))
			case tmpl != nil:
				if err := execTemplate(tmpl, w, p, r); err != nil {
					return false, fmt.Errorf("--template: %w", err)
				}
				w.WriteByte('\n')
			default:
				w.Write(r.Value)
				w.WriteByte('\n')
			}
			printed++
			pos[p] = r.Offset + 1
		}
		if o.max > 0 && printed >= o.max {
			cancel()
			return false, nil
		}
		return true, nil
	}
	warn := func(err error) {
		mu.Lock()
		defer mu.Unlock()
		if !warned {
			fmt.Fprintf(stderr, "shale consume: %v; retrying\n", err)
			warned = true
		}
	}
	var wg sync.WaitGroup
	for i, p := range parts {
		end := int64(-1) // follow: no end
		if !o.follow {
			end = d.Parts[p].End
		}
		if o.until.time == nil && o.until.offset >= 0 && (end < 0 || o.until.offset < end) {
			end = o.until.offset
		}
		wg.Go(func() {
			err := consumePartition(ctx, a, o, d.ID, p, next[i], end, emit, warn)
			if err != nil && ctx.Err() == nil {
				mu.Lock()
				errs = append(errs, fmt.Errorf("partition %d: %w", p, err))
				mu.Unlock()
				cancel()
			}
		})
	}
	if o.group != "" && o.follow {
		stop := make(chan struct{})
		defer close(stop)
		go func() {
			t := time.NewTicker(5 * time.Second)
			defer t.Stop()
			for {
				select {
				case <-stop:
					return
				case <-ctx.Done():
					return
				case <-t.C:
				}
				mu.Lock()
				err := commit(ctx)
				mu.Unlock()
				if err != nil && ctx.Err() == nil {
					warn(err)
				}
			}
		}()
	}
	wg.Wait()
	if o.group != "" {
		// What was printed is committed even when the run was
		// interrupted (ctx cancelled by a signal): a fresh context,
		// bounded by the client's timeout.
		cctx, ccancel := context.WithTimeout(context.WithoutCancel(ctx), cmp.Or(a.timeout, defaultTimeout))
		defer ccancel()
		mu.Lock()
		if err := commit(cctx); err != nil {
			errs = append(errs, err)
		}
		mu.Unlock()
	}
	return errors.Join(errs...)
}

func execTemplate(t *template.Template, w io.Writer, p int32, r *record.Record) error {
	tr := tmplRecord{Partition: p, Offset: r.Offset, Timestamp: r.Timestamp, Time: time.UnixMilli(r.Timestamp).UTC(),
		Key: string(r.Key), Value: string(r.Value)}
	for _, h := range r.Headers {
		tr.Headers = append(tr.Headers, tmplHeader{Key: h.Key, Value: string(h.Value)})
	}
	t.Funcs(template.FuncMap{"header": func(k string) string {
		for _, h := range tr.Headers {
			if h.Key == k {
				return h.Value
			}
		}
		return ""
	}})
	return t.Execute(w, tr)
}

// consumePartition reads partition p of topic incarnation topicID from
// next until end (-1: forever), or until a record at or after
// o.until.time. With --follow, a server that cannot be reached or answers
// 503 is retried with backoff from the next offset; a topic deleted and
// re-created meanwhile is an error.
func consumePartition(ctx context.Context, a *api, o consumeOpts, topicID string, p int32, next, end int64, emit func(int32, []record.Record) (bool, error), warn func(error)) error {
	const maxBackoff = 5 * time.Second
	backoff := 100 * time.Millisecond
	for end < 0 || next < end {
		wait := time.Duration(0)
		if o.follow {
			wait = 5 * time.Second
		}
		recs, err := a.read(ctx, o.topic, topicID, p, next, wait)
		if err != nil {
			if !o.follow || !transient(err) || ctx.Err() != nil {
				return err
			}
			warn(err)
			select {
			case <-time.After(backoff):
			case <-ctx.Done():
				return nil
			}
			backoff = min(2*backoff, maxBackoff)
			continue
		}
		backoff = 100 * time.Millisecond
		stop := false
		for i, r := range recs {
			if end >= 0 && r.Offset >= end || o.until.time != nil && r.Timestamp >= o.until.time.UnixMilli() {
				recs, stop = recs[:i], true
				break
			}
		}
		if len(recs) > 0 {
			more, err := emit(p, recs)
			if err != nil || !more {
				return err
			}
			next = recs[len(recs)-1].Offset + 1
		} else if !o.follow && !stop {
			return fmt.Errorf("no records at offset %d although the end was %d", next, end)
		}
		if stop {
			return nil
		}
	}
	return nil
}
