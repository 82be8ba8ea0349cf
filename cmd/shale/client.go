package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/shalelog/shale/httpapi"
	"github.com/shalelog/shale/record"
)

// clientFlags select the server a client command talks to: a running one
// (--server) or an ephemeral node on a bucket (--store).
type clientFlags struct {
	server *string
	node   nodeFlags
}

func addClientFlags(f flags) clientFlags {
	return clientFlags{
		server: f.String("server", "http://"+defaultListen, "URL of a shale server"),
		node:   addNodeFlags(f, ""),
	}
}

// connect returns a client and a function to release it. With --store it
// runs a node in this process for the duration of the command.
func (cf clientFlags) connect(ctx context.Context, stderr io.Writer) (*httpapi.Client, func(), error) {
	if *cf.node.store == "" {
		return httpapi.NewClient(*cf.server), func() {}, nil
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	n, cleanup, err := cf.node.start(ctx, logger)
	if err != nil {
		return nil, nil, err
	}
	srv := httpapi.New(n, httpapi.DefaultLimits())
	addr, err := srv.Listen("127.0.0.1:0")
	if err != nil {
		cleanup()
		return nil, nil, err
	}
	return httpapi.NewClient(addr), func() {
		if err := errors.Join(srv.Close(), cleanup()); err != nil {
			fmt.Fprintf(stderr, "close node: %v\n", err)
		}
	}, nil
}

func runTopic(ctx context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) error {
	const syn = "topic create NAME [--partitions N] [--retention-ms MS] [--retention-bytes N] | list | describe NAME | delete NAME"
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" {
		fmt.Fprintf(stderr, "Usage: shale %s\n", syn)
		if len(args) == 0 {
			return errors.New("missing subcommand")
		}
		return nil
	}
	sub := args[0]
	f := newFlags("topic "+sub, syn, stderr)
	cf := addClientFlags(f)
	partitions := f.Int("partitions", 1, "partition count (create)")
	retMs := f.Int64("retention-ms", -1, "retention time in ms, -1 for unlimited (create)")
	retBytes := f.Int64("retention-bytes", -1, "retention size per partition in bytes, -1 for unlimited (create)")
	pos, err := f.parse(args[1:])
	if err != nil {
		return err
	}
	needName := func() (string, error) {
		if len(pos) != 1 {
			return "", fmt.Errorf("topic %s takes one topic name", sub)
		}
		return pos[0], nil
	}
	c, done, err := cf.connect(ctx, stderr)
	if err != nil {
		return err
	}
	defer done()
	switch sub {
	case "create":
		name, err := needName()
		if err != nil {
			return err
		}
		t, err := c.CreateTopic(ctx, httpapi.TopicRequest{Name: name, Partitions: int32(*partitions), RetentionMs: *retMs, RetentionBytes: *retBytes})
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "created topic %s with %d partitions\n", t.Name, t.Partitions)
	case "list":
		ts, err := c.Topics(ctx)
		if err != nil {
			return err
		}
		for _, t := range ts {
			fmt.Fprintf(stdout, "%s\t%d\n", t.Name, t.Partitions)
		}
	case "describe":
		name, err := needName()
		if err != nil {
			return err
		}
		d, err := c.Describe(ctx, name)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "topic %s  id %s  partitions %d  retention_ms %d  retention_bytes %d\n", d.Name, d.ID, d.Partitions, d.Retention.Ms, d.Retention.Bytes)
		tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "PARTITION\tSTART\tEND\tBYTES\tOBJECTS")
		for _, p := range d.Parts {
			fmt.Fprintf(tw, "%d\t%d\t%d\t%d\t%d\n", p.Partition, p.Start, p.End, p.Bytes, p.Objects)
		}
		tw.Flush()
	case "delete":
		name, err := needName()
		if err != nil {
			return err
		}
		if err := c.DeleteTopic(ctx, name); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "deleted topic %s\n", name)
	default:
		return fmt.Errorf("unknown subcommand %q (want create, list, describe or delete)", sub)
	}
	return nil
}

func runProduce(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	f := newFlags("produce", "produce TOPIC [--partition P] [--key K] [--format text|json] < values", stderr)
	cf := addClientFlags(f)
	partition := f.Int("partition", -1, "partition to write; default: by key hash, or one partition per batch without a key")
	key := f.String("key", "", "key for every record (empty: no key)")
	format := f.String("format", "text", "output: text or json")
	batch := f.Int("batch", 1000, "most lines per produce request")
	pos, err := f.parse(args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return errors.New("produce takes one topic name; values come from stdin, one per line")
	}
	if *format != "text" && *format != "json" {
		return fmt.Errorf("--format %q: want text or json", *format)
	}
	c, done, err := cf.connect(ctx, stderr)
	if err != nil {
		return err
	}
	defer done()

	// Lines are read ahead while a batch is in flight; a batch is sent when
	// it is full or no more input is waiting, so interactive use sees each
	// line acknowledged promptly.
	lines := make(chan []byte, *batch)
	readErr := make(chan error, 1)
	go func() {
		defer close(lines)
		r := bufio.NewReaderSize(stdin, 1<<20)
		for {
			line, err := r.ReadBytes('\n')
			if len(line) > 0 {
				lines <- []byte(strings.TrimSuffix(string(line), "\n"))
			}
			if err != nil {
				if err != io.EOF {
					readErr <- err
				}
				return
			}
		}
	}()
	var k []byte
	if *key != "" {
		k = []byte(*key)
	}
	out := json.NewEncoder(stdout)
	for {
		line, ok := <-lines
		if !ok {
			break
		}
		recs := []record.Record{{Key: k, Value: line}}
	fill:
		for len(recs) < *batch {
			select {
			case line, ok := <-lines:
				if !ok {
					break fill
				}
				recs = append(recs, record.Record{Key: k, Value: line})
			default:
				break fill
			}
		}
		res, err := c.Produce(ctx, pos[0], int32(*partition), recs)
		if err != nil {
			return fmt.Errorf("%d records not acknowledged: %w", len(recs), err)
		}
		for _, r := range res {
			if *format == "json" {
				out.Encode(r)
			} else {
				fmt.Fprintf(stdout, "partition %d offsets %d-%d (%d records)\n", r.Partition, r.FirstOffset, r.LastOffset, r.Records)
			}
		}
	}
	select {
	case err := <-readErr:
		return fmt.Errorf("read stdin: %w", err)
	default:
		return nil
	}
}

func runConsume(ctx context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) error {
	f := newFlags("consume", "consume TOPIC [--partition P] [--offset N | --time RFC3339 | --since DURATION] [--max N] [--follow] [--format text|json]", stderr)
	cf := addClientFlags(f)
	partition := f.Int("partition", -1, "partition to read; default: every partition")
	offset := f.Int64("offset", -1, "first offset to read (default: each partition's start)")
	at := f.String("time", "", "read from the first record at or after this RFC 3339 time")
	since := f.Duration("since", 0, "read from the first record at or after now minus this duration")
	maxRecs := f.Int64("max", 0, "stop after this many records (0: no limit)")
	follow := f.Bool("follow", false, "keep waiting for new records instead of stopping at the end")
	format := f.String("format", "text", "output: text (values, one per line) or json (one object per line)")
	pos, err := f.parse(args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return errors.New("consume takes one topic name")
	}
	if *format != "text" && *format != "json" {
		return fmt.Errorf("--format %q: want text or json", *format)
	}
	var from *time.Time
	switch {
	case *at != "" && *since != 0, (*at != "" || *since != 0) && *offset >= 0:
		return errors.New("give at most one of --offset, --time and --since")
	case *at != "":
		t, err := time.Parse(time.RFC3339Nano, *at)
		if err != nil {
			return fmt.Errorf("--time %q is not an RFC 3339 time such as 2026-01-02T15:04:05Z", *at)
		}
		from = &t
	case *since != 0:
		t := time.Now().Add(-*since)
		from = &t
	}
	topic := pos[0]
	c, done, err := cf.connect(ctx, stderr)
	if err != nil {
		return err
	}
	defer done()
	d, err := c.Describe(ctx, topic)
	if err != nil {
		return err
	}
	var parts []int32
	if *partition >= 0 {
		if *partition >= int(d.Partitions) {
			return fmt.Errorf("topic %s has %d partitions; there is no partition %d", topic, d.Partitions, *partition)
		}
		parts = []int32{int32(*partition)}
	} else {
		for p := range d.Partitions {
			parts = append(parts, p)
		}
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		mu      sync.Mutex
		printed int64
		errs    []error
	)
	enc := json.NewEncoder(stdout)
	w := bufio.NewWriter(stdout)
	emit := func(p int32, recs []record.Record) bool {
		mu.Lock()
		defer mu.Unlock()
		defer w.Flush()
		for i := range recs {
			if *maxRecs > 0 && printed >= *maxRecs {
				cancel()
				return false
			}
			if *format == "json" {
				w.Flush()
				enc.Encode(httpapi.ToJSON(p, &recs[i]))
			} else {
				w.Write(recs[i].Value)
				w.WriteByte('\n')
			}
			printed++
		}
		if *maxRecs > 0 && printed >= *maxRecs {
			cancel()
			return false
		}
		return true
	}
	var wg sync.WaitGroup
	for _, p := range parts {
		info := d.Parts[p]
		wg.Go(func() {
			err := consumePartition(ctx, c, topic, p, info.Start, info.End, *offset, from, *follow, emit)
			if err != nil && ctx.Err() == nil {
				mu.Lock()
				errs = append(errs, fmt.Errorf("partition %d: %w", p, err))
				mu.Unlock()
				cancel()
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

func consumePartition(ctx context.Context, c *httpapi.Client, topic string, p int32, start, end, offset int64, from *time.Time, follow bool, emit func(int32, []record.Record) bool) error {
	next := start
	switch {
	case from != nil:
		off, err := c.OffsetForTime(ctx, topic, p, *from)
		if err != nil {
			return err
		}
		next = off
	case offset >= 0:
		next = offset
	}
	topicID := "" // the incarnation read, echoed so that a re-created topic is an error
	for follow || next < end {
		wait := time.Duration(0)
		if follow {
			wait = 5 * time.Second
		}
		res, err := c.Read(ctx, httpapi.ReadRequest{Topic: topic, Partition: p, Offset: next, Max: 5000, MaxBytes: 4 << 20, Wait: wait, TopicID: topicID})
		if err != nil {
			return err
		}
		recs := res.Records
		topicID = res.TopicID
		if !follow {
			// Stop at the end the partition had when we started.
			for i, r := range recs {
				if r.Offset >= end {
					recs = recs[:i]
					break
				}
			}
		}
		if len(recs) > 0 {
			if !emit(p, recs) {
				return nil
			}
			next = recs[len(recs)-1].Offset + 1
		} else if !follow {
			return fmt.Errorf("no records at offset %d although the end was %d", next, end)
		}
	}
	return nil
}
