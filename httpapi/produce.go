package httpapi

import (
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"mime"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/shalelog/shale/ingest"
	"github.com/shalelog/shale/record"
	"github.com/shalelog/shale/tier/manifest"
)

// ProduceResult is the outcome for one partition of a produce request.
type ProduceResult struct {
	Partition   int32  `json:"partition"`
	FirstOffset int64  `json:"first_offset"`
	LastOffset  int64  `json:"last_offset"`
	Records     int    `json:"records"`
	Error       string `json:"error,omitempty"`
}

// ProduceResponse lists results in the order their partitions first appear
// in the request.
type ProduceResponse struct {
	Results []ProduceResult `json:"results"`
}

// produce appends records. The body is the binary record encoding
// (Content-Type application/vnd.shale.records) or JSON (JSONRecords). With
// ?partition=P every record goes to P; otherwise a record with a key goes to
// the partition of its key's hash (Kafka's murmur2, as Kafka clients do),
// and records without a key to one random partition per request.
func (s *Server) produce(w http.ResponseWriter, r *http.Request) {
	topic := r.PathValue("topic")
	ctx, cancel := s.bounded(r)
	t, err := s.node.Log.Topic(ctx, topic)
	cancel()
	if err != nil {
		if !errors.Is(err, manifest.ErrUnknownTopic) {
			err = fmt.Errorf("%w: read commit log: %w", errUnavailable, err)
		}
		s.fail(w, r, err)
		return
	}
	fixed := int32(-1)
	if v := r.URL.Query().Get("partition"); v != "" {
		p, err := strconv.ParseInt(v, 10, 32)
		if err != nil || p < 0 {
			s.fail(w, r, badRequest("partition %q is not a partition number", v))
			return
		}
		fixed = int32(p)
	}
	// Reserve the body's size before reading it, so that many concurrent
	// producers cannot make the node buffer more than MaxInflight.
	want := s.limits.MaxBody
	if r.ContentLength >= 0 {
		want = min(r.ContentLength, s.limits.MaxBody)
	}
	actx, cancel := s.bounded(r)
	err = s.inflight.Acquire(actx, want)
	cancel()
	if err != nil {
		s.fail(w, r, fmt.Errorf("%w: waiting for buffer space: %v", ingest.ErrBackpressure, err))
		return
	}
	defer s.inflight.Release(want)
	// A client that trickles its body must not hold buffer space forever.
	_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(s.node.Opts.StoreTimeout))
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.limits.MaxBody))
	if err != nil {
		var mbe *http.MaxBytesError
		if !errors.As(err, &mbe) {
			err = badRequest("read body: %v", err)
		}
		s.fail(w, r, err)
		return
	}
	var recs []record.Record
	var parts []int32 // per record, -1 when not given
	if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt == "application/json" {
		recs, parts, err = decodeJSONRecords(body)
	} else {
		recs, err = record.DecodeAll(body)
	}
	if err != nil {
		s.fail(w, r, badRequest("decode records: %v", err))
		return
	}
	if len(recs) == 0 {
		s.fail(w, r, badRequest("no records in request"))
		return
	}
	sticky := int32(rand.IntN(int(t.Partitions)))
	var order []int32
	groups := map[int32][]record.Record{}
	for i, rec := range recs {
		p := fixed
		if p < 0 && parts != nil && parts[i] >= 0 {
			p = parts[i]
		}
		if p < 0 {
			p = sticky
			if rec.Key != nil {
				p = record.KeyPartition(rec.Key, t.Partitions)
			}
		}
		rec.Offset = 0
		if _, ok := groups[p]; !ok {
			order = append(order, p)
		}
		groups[p] = append(groups[p], rec)
	}
	// Partitions are appended concurrently: they land in the same roll, so
	// the request waits for one commit, not one per partition.
	res := make([]ProduceResult, len(order))
	errs := make([]error, len(order))
	var wg sync.WaitGroup
	for i, p := range order {
		wg.Go(func() {
			g := groups[p]
			base, err := s.node.Ingest.Append(r.Context(), topic, p, g)
			res[i] = ProduceResult{Partition: p, FirstOffset: base, LastOffset: base + int64(len(g)) - 1, Records: len(g)}
			if err != nil {
				errs[i] = err
				res[i] = ProduceResult{Partition: p, FirstOffset: -1, LastOffset: -1, Records: len(g), Error: err.Error()}
			}
		})
	}
	wg.Wait()
	if len(order) == 1 && errs[0] != nil {
		s.fail(w, r, errs[0])
		return
	}
	status := http.StatusOK
	for _, x := range res {
		if x.Error != "" {
			status = http.StatusMultiStatus
		}
	}
	writeJSON(w, status, ProduceResponse{Results: res})
}
