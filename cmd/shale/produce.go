package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"time"

	"github.com/shalelog/shale/httpapi"
	"github.com/shalelog/shale/record"
)

const produceAbout = `Appends records read from stdin and waits until they are committed in the
bucket. Input (--input):
  lines  one record per line, the line (without its newline) as the value
         (default); --key-delimiter splits a key off each line
  json   one JSON record per line, exactly as 'consume --format json' prints
         them (keys, headers, timestamps, binary values as *_b64, and the
         partition, used unless --partition is given)
  raw    all of stdin as one record
Records go to --partition, else to their key's partition (Kafka's murmur2),
else to one partition per batch. Records are sent in batches of up to
--batch-bytes and --batch-records, up to --inflight requests at once and one
at a time per partition, so each partition keeps the input's order.
At the end it prints a one-line summary; --verbose (or --output json) adds a
line per acknowledged batch. On a failure it says how many records were
acknowledged and the first input line that was not, and exits 1.`

const produceExample = `seq 1 200000 | shale produce numbers
printf 'user-1:login\nuser-2:logout\n' | shale produce events --key-delimiter :
shale consume src --format json | shale produce dst --input json`

// produceOpts are produce's settings, independent of flags.
type produceOpts struct {
	topic        string
	partition    int32 // -1: by key, or sticky
	input        string
	key          []byte
	keyDelim     []byte
	headers      []record.Header
	timestamp    int64
	batchBytes   int
	batchRecords int
	inflight     int
	jsonOut      bool
	verbose      bool
}

func runProduce(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	f := newFlags("produce", "produce TOPIC [flags] < input", stdout)
	f.about, f.example = produceAbout, produceExample
	partition := f.Count("partition", -1, math.MinInt32, math.MaxInt32, "partition to write (default: by key, else one partition per batch)")
	f.last().def = ""
	input := f.String("input", "lines", "input format: lines, json or raw")
	key := f.String("key", "", "key of every record (default: no key)")
	keyDelim := f.String("key-delimiter", "", "split each input line at the first DELIM into key and value (lines input)")
	headers := f.Strings("header", "header KEY=VALUE added to every record")
	ts := f.String("timestamp", "", "timestamp of every record: RFC 3339, a date, or ms since the epoch (default: when the server accepts it)")
	output := f.String("output", "text", "output: text (a summary line) or json (a JSON object per batch and a summary object)")
	verbose := f.Bool("verbose", false, "print a line per acknowledged batch")
	batchBytes := f.Size("batch-bytes", 4<<20, 1, "most bytes of records (encoded) per request; the server refuses batches above its --max-batch-bytes (default 8MiB)")
	batchRecords := f.Count("batch-records", 100_000, 1, math.MaxInt32, "most records per request")
	inflight := f.Count("inflight", 4, 1, 1024, "requests in flight at once, to different partitions")
	format := f.String("format", "", "renamed: use --input json for JSON input or --output json for JSON acknowledgements")
	f.last().hidden = true
	cf := addClientFlags(f)
	pos, err := f.parse(args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usagef("produce takes one topic name; records come from stdin")
	}
	if f.given("format") {
		return usagef("--format %s: produce has --input (lines, json, raw) and --output (text, json) instead", *format)
	}
	o := produceOpts{topic: pos[0], partition: int32(*partition), input: *input, batchBytes: int(*batchBytes),
		batchRecords: int(*batchRecords), inflight: int(*inflight), verbose: *verbose}
	switch *output {
	case "text":
	case "json":
		o.jsonOut = true
	default:
		return usagef("--output %q: want text or json", *output)
	}
	switch o.input {
	case "lines", "raw":
	case "json":
		if f.given("key") || f.given("key-delimiter") || f.given("header") || f.given("timestamp") {
			return usagef("--input json takes keys, headers and timestamps from each record; --key, --key-delimiter, --header and --timestamp apply to lines and raw input")
		}
	default:
		return usagef("--input %q: want lines, json or raw", o.input)
	}
	if *batchBytes > 1<<30 {
		return usagef("--batch-bytes %d is above 1GiB", *batchBytes)
	}
	if f.given("key") {
		o.key = []byte(*key)
	}
	if *keyDelim != "" {
		if o.input != "lines" {
			return usagef("--key-delimiter applies to lines input")
		}
		if f.given("key") {
			return usagef("give --key or --key-delimiter, not both")
		}
		o.keyDelim = []byte(*keyDelim)
	}
	for _, h := range *headers {
		k, v, err := parseHeader(h)
		if err != nil {
			return usagef("--header %q: %v", h, err)
		}
		o.headers = append(o.headers, record.Header{Key: k, Value: v})
	}
	if *ts != "" {
		t, err := parseTime(*ts)
		if err != nil {
			return usagef("--timestamp: %v", err)
		}
		o.timestamp = t.UnixMilli()
	}
	a, d, done, err := cf.connectTopic(ctx, f, o.topic, *partition, stderr)
	if err != nil {
		return err
	}
	defer done()
	return produceInput(ctx, o, d.Partitions, a.produce, stdin, stdout)
}

// produceInput runs the pipeline over stdin and reports.
func produceInput(ctx context.Context, o produceOpts, partitions int32, send func(context.Context, string, int32, []record.Record) (httpapi.ProduceResult, error), stdin io.Reader, stdout io.Writer) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	out := bufio.NewWriter(stdout)
	defer out.Flush()
	enc := json.NewEncoder(out)
	pl := &pipeline{
		send: func(ctx context.Context, p int32, recs []record.Record) (httpapi.ProduceResult, error) {
			return send(ctx, o.topic, p, recs)
		},
		partitions: partitions,
		maxBytes:   o.batchBytes,
		maxRecords: o.batchRecords,
		inflight:   o.inflight,
		onAck: func(b *batch, r httpapi.ProduceResult) {
			switch {
			case o.jsonOut:
				enc.Encode(ackJSON{Partition: r.Partition, FirstOffset: r.FirstOffset, LastOffset: r.LastOffset, Records: r.Records,
					FirstLine: b.lines[0], LastLine: b.lines[len(b.lines)-1]})
			case o.verbose:
				fmt.Fprintf(out, "partition %d offsets %d-%d (%d records, input lines %d-%d)\n", r.Partition, r.FirstOffset, r.LastOffset, r.Records, b.lines[0], b.lines[len(b.lines)-1])
			}
			if o.verbose || o.jsonOut {
				out.Flush()
			}
		},
	}
	in := make(chan chunk, 4)
	go readInput(ctx, o, partitions, stdin, in)
	st, err := pl.run(ctx, in)
	sum := summaryJSON{Records: st.records, Bytes: st.bytes, Partitions: len(st.partitions), Batches: st.batches,
		ElapsedMs: st.elapsed.Milliseconds(), RecordsPerSecond: math.Round(float64(st.records) / max(st.elapsed.Seconds(), 1e-9))}
	if err != nil {
		sum.Error, sum.FirstUnacked = err.Error(), st.firstUnacked
	}
	if o.jsonOut {
		enc.Encode(sum)
	} else if err == nil {
		fmt.Fprintf(out, "produced %d records (%s) to %d partition%s of %s in %v: %.0f records/s\n", st.records, formatBytes(st.bytes),
			len(st.partitions), plural(len(st.partitions)), o.topic, st.elapsed.Round(time.Millisecond), sum.RecordsPerSecond)
	}
	if err == nil {
		return nil
	}
	msg := fmt.Sprintf("%d records acknowledged; input line %d is the first not acknowledged", st.records, st.firstUnacked)
	if len(st.partitions) > 1 || partitions > 1 && st.records > 0 {
		msg += " (later lines of other partitions may have been)"
	}
	if s := statusOf(err); s == http.StatusServiceUnavailable || errors.Is(err, context.DeadlineExceeded) {
		msg += "; the failed request may still have been committed"
	}
	return fmt.Errorf("%w\n%s", err, msg)
}

type ackJSON struct {
	Partition   int32 `json:"partition"`
	FirstOffset int64 `json:"first_offset"`
	LastOffset  int64 `json:"last_offset"`
	Records     int   `json:"records"`
	FirstLine   int64 `json:"first_line"`
	LastLine    int64 `json:"last_line"`
}

type summaryJSON struct {
	Records          int64   `json:"records"`
	Bytes            int64   `json:"bytes"`
	Partitions       int     `json:"partitions"`
	Batches          int     `json:"batches"`
	ElapsedMs        int64   `json:"elapsed_ms"`
	RecordsPerSecond float64 `json:"records_per_second"`
	Error            string  `json:"error,omitempty"`
	FirstUnacked     int64   `json:"first_unacknowledged_line,omitempty"`
}

// readInput parses stdin into records and hands them over in chunks. A
// chunk ends where the input has nothing more buffered, so interactive use
// sees each line sent at once.
func readInput(ctx context.Context, o produceOpts, partitions int32, stdin io.Reader, out chan<- chunk) {
	defer close(out)
	send := func(c chunk) bool {
		select {
		case out <- c:
			return true
		case <-ctx.Done():
			return false
		}
	}
	base := record.Record{Key: o.key, Headers: o.headers, Timestamp: o.timestamp}
	if o.input == "raw" {
		v, err := io.ReadAll(stdin)
		if err != nil {
			send(chunk{err: fmt.Errorf("read input: %w", err)})
			return
		}
		r := base
		r.Value = v
		if r.Value == nil {
			r.Value = []byte{}
		}
		send(chunk{recs: []inRec{{rec: r, line: 1, part: o.partition}}})
		return
	}
	br := bufio.NewReaderSize(stdin, 1<<20)
	var (
		recs  []inRec
		arena []byte
		n     int64
	)
	// own copies b into the arena: one allocation per 64 KiB of input, not
	// one per line.
	own := func(b []byte) []byte {
		if cap(arena)-len(arena) < len(b) {
			arena = make([]byte, 0, max(64<<10, len(b)))
		}
		s := len(arena)
		arena = append(arena, b...)
		return arena[s:len(arena):len(arena)]
	}
	for {
		line, err := br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			long := append([]byte(nil), line...)
			for errors.Is(err, bufio.ErrBufferFull) {
				line, err = br.ReadSlice('\n')
				long = append(long, line...)
			}
			line = long
		}
		if len(line) > 0 {
			n++
			line = bytes.TrimSuffix(line, []byte("\n"))
			r, perr := parseLine(o, partitions, base, line, own)
			if perr != nil {
				send(chunk{recs: recs, err: lineError{line: n, err: perr}})
				return
			}
			if r.part < 0 || o.partition >= 0 {
				r.part = o.partition
			}
			r.line = n
			recs = append(recs, r)
		}
		if err != nil {
			if err != io.EOF {
				send(chunk{recs: recs, err: lineError{line: n + 1, err: fmt.Errorf("read input: %w", err)}})
			} else {
				send(chunk{recs: recs})
			}
			return
		}
		if len(recs) >= 4096 || br.Buffered() == 0 {
			if !send(chunk{recs: recs, more: br.Buffered() > 0}) {
				return
			}
			recs = nil
		}
	}
}

// parseLine makes the record of one input line (without its newline).
func parseLine(o produceOpts, partitions int32, base record.Record, line []byte, own func([]byte) []byte) (inRec, error) {
	r := inRec{rec: base, part: -1}
	switch {
	case o.input == "json":
		if len(bytes.TrimSpace(line)) == 0 {
			return r, errors.New("empty line: --input json wants one JSON record per line")
		}
		var j httpapi.JSONRecord
		if err := json.Unmarshal(line, &j); err != nil {
			return r, fmt.Errorf("not a JSON record: %w", err)
		}
		rec, err := httpapi.FromJSON(&j)
		if err != nil {
			return r, err
		}
		rec.Offset = 0
		r.rec = rec
		if j.Partition != nil {
			if *j.Partition < 0 || *j.Partition >= partitions {
				return r, fmt.Errorf("partition %d is out of range: the topic has partitions 0 to %d", *j.Partition, partitions-1)
			}
			r.part = *j.Partition
		}
	case o.keyDelim != nil:
		k, v, ok := bytes.Cut(line, o.keyDelim)
		if !ok {
			return r, fmt.Errorf("no key delimiter %q", o.keyDelim)
		}
		r.rec.Key, r.rec.Value = own(k), own(v)
	default:
		r.rec.Value = own(line)
	}
	return r, nil
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

func formatBytes(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d bytes", n)
}
