package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	mrand "math/rand/v2"
	"os"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/shalelog/shale"
	"github.com/shalelog/shale/record"
	"github.com/shalelog/shale/tier"
	"github.com/shalelog/shale/tier/manifest"
	"github.com/shalelog/shale/tier/tiertest"
)

type benchResult struct {
	ProduceMBs      float64 `json:"produce_mb_s"`
	ProduceRecs     float64 `json:"produce_records_s"`
	AckP50          float64 `json:"ack_p50_ms"`
	AckP99          float64 `json:"ack_p99_ms"`
	SatAckP50       float64 `json:"saturated_ack_p50_ms"`
	SatAckP99       float64 `json:"saturated_ack_p99_ms"`
	E2EP99          float64 `json:"e2e_p99_ms"`
	CatchupMBs      float64 `json:"catchup_mb_s"`
	RawPutMBs       float64 `json:"raw_put_mb_s"`
	RawGetMBs       float64 `json:"raw_get_mb_s"`
	PutsPerGB       float64 `json:"puts_per_gb"`
	GetsPerGBRead   float64 `json:"catchup_gets_per_gb"`
	CatchupCacheHit float64 `json:"catchup_cache_hit_ratio"`
	AvgObjectBytes  float64 `json:"avg_object_bytes"`
	RSSMB           float64 `json:"rss_mb"`
	Partitions      int     `json:"partitions"`
	Producers       int     `json:"producers"`
	ValueBytes      int     `json:"value_bytes"`
	ProducedRecords int64   `json:"produced_records"`
	HalfLoadRecs    float64 `json:"half_load_records_s"`
	Store           string  `json:"store"`
}

func runBench(ctx context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) error {
	f := newFlags("bench", "bench [--store URL] [flags]", stdout)
	f.about = "Measures the store's raw PUT/GET speed, saturated produce, half-load latency and a cold catch-up, and prints a table and a JSON line."
	f.example = "shale bench --store minio://127.0.0.1:9000/bench/run1 --partitions 64 --duration 30s"
	nf := addNodeFlags(f, "", "a new temporary directory", "a new temporary directory")
	partitions := f.Int("partitions", 8, "partitions of the benchmark topic")
	producers := f.Int("producers", 1536, "concurrent producers, each with one request in flight; to saturate, producers × batch × value-bytes must exceed (max-inflight-rolls + 1) × roll-bytes")
	batch := f.Int("batch", 128, "records per produce request")
	valueBytes := f.SizeInt("value-bytes", 1024, "bytes per record value")
	duration := f.Duration("duration", 10*time.Second, "length of the saturated produce phase")
	halfDuration := f.DurationDef("half-duration", 5*time.Second, "5s", "length of the half-load latency phase (0 to skip)")
	cpuProfile := f.String("cpuprofile", "", "write CPU profiles of the produce and catch-up phases to FILE.produce and FILE.catchup")
	if _, err := f.parse(args); err != nil {
		return err
	}
	if *nf.store == "" {
		dir, err := os.MkdirTemp("", "shale-bench-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		*nf.store = "file://" + dir
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	base, err := tier.Open(ctx, *nf.store)
	if err != nil {
		return err
	}
	defer base.Close()
	store := tiertest.NewCountingStore(base)
	res := benchResult{Partitions: *partitions, Producers: *producers, ValueBytes: *valueBytes, Store: base.String()}

	// 1. The store's own ceiling at the object size shale writes, with the
	// same number of uploads in flight.
	fmt.Fprintf(stderr, "measuring raw PUT/GET of %d-byte objects, %d at a time...\n", *nf.rollBytes, *nf.inflight)
	if res.RawPutMBs, res.RawGetMBs, err = rawStore(ctx, base, int(*nf.rollBytes), *nf.inflight, *duration/2); err != nil {
		return err
	}

	// 2. Saturated produce, with a follower measuring end-to-end latency.
	hot, err := os.MkdirTemp("", "shale-bench-hot-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(hot)
	*nf.hotDir = hot
	node, err := startBenchNode(ctx, store, nf, logger)
	if err != nil {
		return err
	}
	topic := "bench-" + randHex(4)
	if _, err := node.Log.CreateTopic(ctx, topic, int32(*partitions), manifest.Retention{Ms: -1, Bytes: -1}); err != nil {
		node.Close()
		return err
	}
	fmt.Fprintf(stderr, "producing for %v: %d producers, %d partitions, %d-byte values, batches of %d...\n", *duration, *producers, *partitions, *valueBytes, *batch)
	puts0 := store.Counts("").N(tiertest.OpWrites)
	stopProfile, err := startProfile(*cpuProfile, "produce")
	if err != nil {
		return err
	}
	sat := produce(ctx, node, topic, *partitions, *producers, *batch, *valueBytes, *duration, 0, true)
	puts := store.Counts("").N(tiertest.OpWrites) - puts0
	stopProfile()
	if sat.err != nil {
		node.Close()
		return sat.err
	}
	res.ProduceMBs = float64(sat.bytes) / 1e6 / sat.elapsed.Seconds()
	res.ProduceRecs = float64(sat.records) / sat.elapsed.Seconds()
	res.ProducedRecords = sat.records
	res.SatAckP50, res.SatAckP99 = pct(sat.acks, 50), pct(sat.acks, 99)
	res.E2EP99 = pct(sat.e2e, 99)
	res.PutsPerGB = float64(puts) / (float64(sat.bytes) / 1e9)
	if d := store.Counts("data/"); d.N(tiertest.OpPut) > 0 {
		res.AvgObjectBytes = float64(d.PutBytes) / float64(d.N(tiertest.OpPut))
	}

	// 3. Half load: the acknowledgement latency a lightly loaded node gives.
	if *halfDuration > 0 {
		rate := res.ProduceRecs / 2
		res.HalfLoadRecs = rate
		fmt.Fprintf(stderr, "half load for %v at %.0f records/s...\n", *halfDuration, rate)
		half := produce(ctx, node, topic, *partitions, *producers, *batch, *valueBytes, *halfDuration, rate, false)
		if half.err != nil {
			node.Close()
			return half.err
		}
		res.AckP50, res.AckP99 = pct(half.acks, 50), pct(half.acks, 99)
	}
	if err := node.Close(); err != nil {
		return err
	}

	// 4. Catch-up: a new node with a cold cache replays everything from the
	// store, one reader per partition.
	fmt.Fprintf(stderr, "catching up from offset 0 on a cold node...\n")
	*nf.hotDir = hot + "-2"
	defer os.RemoveAll(*nf.hotDir)
	cold, err := startBenchNode(ctx, store, nf, logger)
	if err != nil {
		return err
	}
	gets0 := store.Counts("").N(tiertest.OpGet)
	if stopProfile, err = startProfile(*cpuProfile, "catchup"); err != nil {
		return err
	}
	start := time.Now()
	var readBytes atomic.Int64
	var wg sync.WaitGroup
	// Like one consumer replaying the topic from the start: each round is
	// one fetch of up to 1 MiB from every partition not yet finished (as a
	// Kafka fetch request carries all of a consumer's partitions), served
	// by 8 concurrent reads. Partitions thus move through the objects
	// together.
	var errMu sync.Mutex
	var readErr error
	next := make([]int64, *partitions)
	live := make([]int32, *partitions)
	for p := range live {
		live[p] = int32(p)
	}
	for len(live) > 0 && readErr == nil {
		work := make(chan int32, len(live))
		for _, p := range live {
			work <- p
		}
		close(work)
		var done sync.Map
		for range min(len(live), 8) {
			wg.Go(func() {
				for p := range work {
					r, err := cold.Reader.Read(ctx, topic, p, next[p], 10000, 1<<20, 0)
					if err != nil {
						errMu.Lock()
						readErr = err
						errMu.Unlock()
						return
					}
					if len(r.Records) == 0 {
						done.Store(p, true)
						continue
					}
					var n int64
					for i := range r.Records {
						n += int64(len(r.Records[i].Value) + len(r.Records[i].Key))
					}
					readBytes.Add(n)
					next[p] = r.Records[len(r.Records)-1].Offset + 1
				}
			})
		}
		wg.Wait()
		live = slices.DeleteFunc(live, func(p int32) bool { _, ok := done.Load(p); return ok })
	}
	errs := []error{readErr}
	wg.Wait()
	elapsed := time.Since(start)
	stopProfile()
	cs := cold.Cache.Stats()
	if cs.Hits+cs.Misses > 0 {
		res.CatchupCacheHit = float64(cs.Hits) / float64(cs.Hits+cs.Misses)
	}
	cold.Close()
	for _, err := range errs {
		if err != nil {
			return fmt.Errorf("catch-up read: %w", err)
		}
	}
	res.CatchupMBs = float64(readBytes.Load()) / 1e6 / elapsed.Seconds()
	res.GetsPerGBRead = float64(store.Counts("").N(tiertest.OpGet)-gets0) / (float64(readBytes.Load()) / 1e9)
	res.RSSMB = peakRSSMB()

	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	row := func(name string, v float64, unit string, ratio string) {
		fmt.Fprintf(tw, "%s\t%.1f\t%s\t%s\t\n", name, v, unit, ratio)
	}
	fmt.Fprintf(tw, "metric\tvalue\tunit\tvs raw store\t\n")
	row("produce", res.ProduceMBs, "MB/s", fmt.Sprintf("%.2f x raw PUT", res.ProduceMBs/res.RawPutMBs))
	row("produce", res.ProduceRecs, "records/s", "")
	row("catch-up replay", res.CatchupMBs, "MB/s", fmt.Sprintf("%.2f x raw GET", res.CatchupMBs/res.RawGetMBs))
	row("raw PUT", res.RawPutMBs, "MB/s", "")
	row("raw GET", res.RawGetMBs, "MB/s", "")
	row("ack p50 (half load)", res.AckP50, "ms", "")
	row("ack p99 (half load)", res.AckP99, "ms", fmt.Sprintf("roll age + 100ms = %d", (*nf.rollAge+100*time.Millisecond).Milliseconds()))
	row("ack p99 (saturated)", res.SatAckP99, "ms", "")
	row("end-to-end p99 (saturated)", res.E2EP99, "ms", "")
	row("PUTs per GB", res.PutsPerGB, "", "")
	row("avg object", res.AvgObjectBytes/1e6, "MB", "")
	row("peak RSS", res.RSSMB, "MB", "")
	tw.Flush()
	line, _ := json.Marshal(res)
	fmt.Fprintf(stdout, "%s\n", line)
	return nil
}

// startProfile starts a CPU profile to base.phase; the returned function
// stops it. An empty base profiles nothing.
func startProfile(base, phase string) (func(), error) {
	if base == "" {
		return func() {}, nil
	}
	f, err := os.Create(base + "." + phase)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() { pprof.StopCPUProfile(); f.Close() }, nil
}

func startBenchNode(ctx context.Context, store tier.Store, nf nodeFlags, logger *slog.Logger) (*shale.Node, error) {
	opts, err := nf.options()
	if err != nil {
		return nil, err
	}
	opts.Logger = logger
	return shale.Start(ctx, store, opts)
}

// rawStore PUTs then GETs objects of size bytes, inflight at a time, for
// about d each, and returns MB/s for both.
func rawStore(ctx context.Context, s tier.Store, size, inflight int, d time.Duration) (putMBs, getMBs float64, err error) {
	body := make([]byte, size)
	rand.Read(body)
	prefix := "bench-raw-" + randHex(4) + "/"
	var keys []string
	var mu sync.Mutex
	var n atomic.Int64
	run := func(f func(i int64) error) (float64, error) {
		start := time.Now()
		var wg sync.WaitGroup
		var firstErr atomic.Value
		for range inflight {
			wg.Go(func() {
				for time.Since(start) < d {
					i := n.Add(1)
					if err := f(i); err != nil {
						firstErr.CompareAndSwap(nil, err)
						return
					}
				}
			})
		}
		wg.Wait()
		if e, _ := firstErr.Load().(error); e != nil {
			return 0, e
		}
		return time.Since(start).Seconds(), nil
	}
	secs, err := run(func(i int64) error {
		k := fmt.Sprintf("%s%08d", prefix, i)
		if _, err := s.Put(ctx, k, body); err != nil {
			return err
		}
		mu.Lock()
		keys = append(keys, k)
		mu.Unlock()
		return nil
	})
	if err != nil {
		return 0, 0, fmt.Errorf("raw PUT: %w", err)
	}
	putMBs = float64(len(keys)*size) / 1e6 / secs
	var got atomic.Int64
	n.Store(0)
	secs, err = run(func(i int64) error {
		b, _, err := s.Get(ctx, keys[int(i)%len(keys)], 0, -1)
		got.Add(int64(len(b)))
		return err
	})
	if err != nil {
		return 0, 0, fmt.Errorf("raw GET: %w", err)
	}
	getMBs = float64(got.Load()) / 1e6 / secs
	for _, k := range keys {
		s.Delete(ctx, k)
	}
	return putMBs, getMBs, nil
}

type produceStats struct {
	records, bytes int64
	elapsed        time.Duration
	acks, e2e      []float64 // milliseconds
	err            error
}

// produce runs producers for d. rate > 0 limits the total records/s. With
// follow, a reader per partition long-polls and records end-to-end latency
// (commit visible to a reader minus the record's timestamp).
func produce(ctx context.Context, node *shale.Node, topic string, partitions, producers, batch, valueBytes int, d time.Duration, rate float64, follow bool) produceStats {
	var st produceStats
	var mu sync.Mutex
	// Values are distinct slices of a random pool: incompressible, like
	// most payloads that matter, so compression cannot flatter the numbers.
	pool := make([]byte, 64<<20)
	rand.Read(pool)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	start := time.Now()
	var fwg sync.WaitGroup
	if follow {
		for p := range partitions {
			_, end, _, _ := node.Log.Locate(ctx, topic, int32(p), 0, 0)
			fwg.Go(func() {
				off := end
				for ctx.Err() == nil {
					r, err := node.Reader.Read(ctx, topic, int32(p), off, 10000, 16<<20, time.Second)
					if err != nil || len(r.Records) == 0 {
						continue
					}
					now := time.Now().UnixMilli()
					mu.Lock()
					for _, rec := range r.Records {
						st.e2e = append(st.e2e, float64(now-rec.Timestamp))
					}
					mu.Unlock()
					off = r.Records[len(r.Records)-1].Offset + 1
				}
			})
		}
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	interval := time.Duration(0)
	if rate > 0 {
		interval = time.Duration(float64(time.Second) * float64(batch) / rate * float64(producers))
	}
	for i := range producers {
		wg.Go(func() {
			tick := time.Now().Add(time.Duration(i) * interval / time.Duration(producers))
			for time.Since(start) < d && ctx.Err() == nil {
				if interval > 0 {
					time.Sleep(time.Until(tick))
					tick = tick.Add(interval)
				}
				p := int32(next.Add(1) % int64(partitions))
				now := time.Now()
				recs := make([]record.Record, batch)
				for j := range recs {
					off := mrand.IntN(len(pool) - valueBytes)
					recs[j] = record.Record{Timestamp: now.UnixMilli(), Key: []byte(strconv.Itoa(j)), Value: pool[off : off+valueBytes]}
				}
				_, err := node.Ingest.Append(ctx, topic, p, recs)
				lat := float64(time.Since(now).Microseconds()) / 1000
				mu.Lock()
				if err != nil && st.err == nil {
					st.err = err
				}
				st.records += int64(batch)
				st.bytes += int64(batch * (valueBytes + len(recs[0].Key)))
				st.acks = append(st.acks, lat)
				mu.Unlock()
				if err != nil {
					cancel()
					return
				}
			}
		})
	}
	wg.Wait()
	st.elapsed = time.Since(start)
	if follow {
		time.Sleep(500 * time.Millisecond) // let the followers see the last commits
	}
	cancel()
	fwg.Wait()
	return st
}

func pct(v []float64, p float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	return s[min(len(s)-1, int(float64(len(s))*p/100))]
}

func randHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// peakRSSMB reads the process's peak resident set size (VmHWM).
func peakRSSMB() float64 {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(line, "VmHWM:") {
			kb, _ := strconv.ParseFloat(strings.Fields(line)[1], 64)
			return kb / 1024
		}
	}
	return 0
}
