package httpapi

import (
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"mime"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"
	"unsafe"

	"golang.org/x/sync/semaphore"

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
// in the request. Error is set when every partition failed.
type ProduceResponse struct {
	Error   string          `json:"error,omitempty"`
	Results []ProduceResult `json:"results"`
}

// produce appends records. The body is the binary record encoding
// (Content-Type application/vnd.shale.records) or JSON (JSONRecords). With
// ?partition=P every record goes to P; otherwise a record with a key goes to
// the partition of its key's hash (Kafka's murmur2, as Kafka clients do),
// and records without a key to one random partition per request.
//
// Memory: the body is read only once its first byte has arrived, after a
// charge to the in-flight budget that bounds what it can decode to (see
// charge); the records alias the body, and are grouped by partition in
// place.
func (s *Server) produce(w http.ResponseWriter, r *http.Request) {
	topic := r.PathValue("topic")
	ctx, cancel := s.bounded(r)
	t, err := s.node.Log.Topic(ctx, topic)
	cancel()
	if err != nil {
		s.fail(w, r, storeErr(err))
		return
	}
	fixed := int32(-1)
	if v := r.URL.Query().Get("partition"); v != "" {
		p, err := partitionNumber(v, t)
		if err != nil {
			s.fail(w, r, err)
			return
		}
		fixed = p
	}
	ct := r.Header.Get("Content-Type")
	mt, _, _ := mime.ParseMediaType(ct)
	if mt != RecordsType && mt != "application/json" {
		s.fail(w, r, mediaType(`Content-Type %q: send %s (the binary record encoding) or application/json ({"records":[{"key":"k","value":"v"}]})`, ct, RecordsType))
		return
	}
	isJSON := mt == "application/json"
	body, res, err := s.readBody(w, r, isJSON)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	defer res.release()
	recs, err := s.decode(body, isJSON, res, t)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	order, groups, err := s.group(recs, fixed, t)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	// Partitions are appended concurrently: they land in the same roll, so
	// the request waits for one commit, not one per partition. At most
	// MaxAppends at once, so that one request cannot occupy the writer.
	// The writer fails a roll's producers itself once the store has failed
	// for StoreTimeout, with an error that names the store's; this
	// deadline, a second later, is only the backstop.
	actx, cancel := context.WithTimeout(r.Context(), s.node.Opts.StoreTimeout+time.Second)
	defer cancel()
	results := make([]ProduceResult, len(order))
	errs := make([]error, len(order))
	slots := make(chan struct{}, max(s.limits.MaxAppends, 1))
	var wg sync.WaitGroup
	for i, p := range order {
		slots <- struct{}{}
		wg.Go(func() {
			defer func() { <-slots }()
			g := groups[i]
			base, err := s.node.Ingest.Append(actx, topic, p, g)
			results[i] = ProduceResult{Partition: p, FirstOffset: base, LastOffset: base + int64(len(g)) - 1, Records: len(g)}
			if err != nil {
				errs[i] = storeErr(err)
				results[i] = ProduceResult{Partition: p, FirstOffset: -1, LastOffset: -1, Records: len(g), Error: errs[i].Error()}
			}
		})
	}
	wg.Wait()
	// Every partition failed: the failures' status (the most severe), so
	// that a client checking for 2xx sees the failure. 207 only for a mix.
	code, failed := http.StatusOK, 0
	for _, err := range errs {
		if err != nil {
			failed++
			code = max(code, status(err))
		}
	}
	switch {
	case failed == 0:
		writeJSON(w, http.StatusOK, ProduceResponse{Results: results})
	case failed < len(errs):
		writeJSON(w, http.StatusMultiStatus, ProduceResponse{Results: results})
	default:
		if errors.Is(errs[0], context.Canceled) && r.Context().Err() != nil {
			return
		}
		msg := errs[0].Error()
		if len(errs) > 1 {
			msg = fmt.Sprintf("all %d partitions failed; partition %d: %v", len(errs), order[0], errs[0])
		}
		if code == http.StatusInternalServerError {
			s.logger.Error("produce failed", "topic", topic, "err", msg)
		}
		writeJSON(w, code, ProduceResponse{Error: msg, Results: results})
	}
}

// partitionNumber parses a partition of topic t: a malformed or negative
// one is a bad request, one past the topic's last an unknown partition;
// both errors name the valid range.
func partitionNumber(v string, t manifest.Topic) (int32, error) {
	p, err := strconv.ParseInt(v, 10, 64)
	switch {
	case err != nil || p < 0:
		return 0, badRequest("partition %q is not a partition number: topic %q has partitions 0-%d", v, t.Name, t.Partitions-1)
	case p >= int64(t.Partitions):
		return 0, fmt.Errorf("%w %d: topic %q has partitions 0-%d", manifest.ErrUnknownPartition, p, t.Name, t.Partitions-1)
	}
	return int32(p), nil
}

// What a decoded record and header cost beyond their bytes: the structs,
// plus what the hot segment frame adds per record (record.Record.Size).
const (
	recordCost = int64(unsafe.Sizeof(record.Record{})) + 40
	headerCost = int64(unsafe.Sizeof(record.Header{})) + 24
)

// charge is a conservative estimate of the memory a produce body of size
// bytes holding n records and h headers takes until its commit: the body,
// the frame its records are encoded into, decoded bytes that cannot alias
// the body (header keys, which are strings: keys bytes of them; for JSON,
// every string, unescaped, and header keys, counted as two more bodies),
// and the structs.
func charge(size int64, n, h int, keys int64, isJSON bool) int64 {
	bytes := 2*size + keys
	if isJSON {
		bytes = 4 * size
	}
	return bytes + int64(n)*recordCost + int64(h)*headerCost
}

// upfrontCharge bounds charge for a body of size bytes before it is
// scanned: the most records and headers such a body can hold within the
// limits (a binary record takes at least 5 bytes, a header 2; in JSON both
// at least 2: "{}").
func (s *Server) upfrontCharge(size int64, isJSON bool) int64 {
	minRecord := int64(5)
	if isJSON {
		minRecord = 2
	}
	n := min(size/minRecord+1, int64(s.limits.MaxRecords))
	h := min(size/2+1, int64(s.limits.MaxHeaders))
	return charge(size, int(n), int(h), size, isJSON)
}

// reservation is a request's share of the in-flight budget.
type reservation struct {
	sem *semaphore.Weighted
	n   int64
}

// shrink returns what the request turned out not to need.
func (r *reservation) shrink(to int64) {
	if to < r.n {
		r.sem.Release(r.n - to)
		r.n = to
	}
}

func (r *reservation) release() { r.shrink(0) }

// readBody reads a produce body, charged to the in-flight budget. The
// charge is taken when the first byte arrives, not when the headers do: a
// client that declares a body and sends nothing holds no budget, and is cut
// off after BodyTimeout. The rest must then arrive within BodyTimeout of
// the charge, so a slow client holds it no longer than that.
func (s *Server) readBody(w http.ResponseWriter, r *http.Request, isJSON bool) ([]byte, *reservation, error) {
	res := &reservation{sem: s.inflight}
	size := r.ContentLength // -1 if unknown (chunked)
	if size > s.limits.MaxBody {
		return nil, res, tooLarge("body of %d bytes: the limit is %d; send fewer records per request", size, s.limits.MaxBody)
	}
	if size == 0 {
		return nil, res, nil
	}
	rc := http.NewResponseController(w)
	_ = rc.SetReadDeadline(time.Now().Add(s.limits.BodyTimeout))
	var first [1]byte
	if _, err := io.ReadFull(r.Body, first[:]); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, res, nil
		}
		return nil, res, readError(err)
	}
	want := s.upfrontCharge(max(size, 0), isJSON)
	if size < 0 {
		want = s.upfrontCharge(s.limits.MaxBody, isJSON)
	}
	ctx, cancel := s.bounded(r)
	err := s.inflight.Acquire(ctx, want)
	cancel()
	if err != nil {
		return nil, res, fmt.Errorf("%w: waiting for buffer space: %v", ingest.ErrBackpressure, err)
	}
	res.n = want
	_ = rc.SetReadDeadline(time.Now().Add(s.limits.BodyTimeout))
	var body []byte
	if size > 0 {
		body = make([]byte, size)
		body[0] = first[0]
		if _, err := io.ReadFull(r.Body, body[1:]); err != nil {
			return nil, res, readError(err)
		}
	} else {
		rest, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.limits.MaxBody-1))
		if err != nil {
			return nil, res, readError(err)
		}
		body = append([]byte{first[0]}, rest...)
	}
	res.shrink(s.upfrontCharge(int64(len(body)), isJSON))
	return body, res, nil
}

func readError(err error) error {
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &mbe):
		return tooLarge("body over the limit of %d bytes; send fewer records per request", mbe.Limit+1)
	case errors.Is(err, io.ErrUnexpectedEOF):
		return badRequest("read body: it ended before its Content-Length")
	}
	return fmt.Errorf("%w: read body: %w", errBodyRead, err)
}

// decode checks a body's record and header counts against the limits
// without decoding it, shrinks the request's charge to what they imply,
// and decodes the records. Each record's Offset holds the partition the
// body gave it (JSON), or -1.
func (s *Server) decode(body []byte, isJSON bool, res *reservation, t manifest.Topic) ([]record.Record, error) {
	if len(body) == 0 {
		return nil, badRequest("no records in request")
	}
	var n, h int
	var keys int64
	var err error
	if isJSON {
		n, h = scanJSON(body)
	} else if n, h, keys, err = scanRecords(body, s.limits.MaxRecords); err != nil {
		return nil, badRequest("decode records: %v", err)
	}
	if n > s.limits.MaxRecords {
		return nil, tooLarge("more than %d records in one request; send at most %d", s.limits.MaxRecords, s.limits.MaxRecords)
	}
	if !isJSON && h > s.limits.MaxHeaders {
		return nil, tooLarge("%d headers in one request; send at most %d", h, s.limits.MaxHeaders)
	}
	res.shrink(charge(int64(len(body)), n, min(h, s.limits.MaxHeaders), keys, isJSON))
	var recs []record.Record
	if isJSON {
		recs, err = decodeJSONRecords(body, n, s.limits.MaxHeaders, t)
	} else {
		recs, err = decodeRecords(body, n)
	}
	if err != nil {
		return nil, err
	}
	if len(recs) == 0 {
		return nil, badRequest("no records in request")
	}
	return recs, nil
}

// decodeRecords decodes n binary records; they alias body.
func decodeRecords(body []byte, n int) ([]record.Record, error) {
	recs := make([]record.Record, 0, n)
	for off := 0; off < len(body); {
		r, k, err := record.Decode(body[off:])
		if err != nil {
			return nil, badRequest("decode records: record %d at byte %d: %v", len(recs), off, err)
		}
		r.Offset = -1 // ignored on produce
		recs = append(recs, r)
		off += k
	}
	return recs, nil
}

// scanRecords counts the records, headers and header key bytes of the
// binary encoding in b without decoding it, stopping after maxRecords+1
// records.
func scanRecords(b []byte, maxRecords int) (n, h int, keys int64, err error) {
	off := 0
	fail := func(what string) error {
		return fmt.Errorf("record %d: %w: %s at byte %d", n, record.ErrMalformed, what, off)
	}
	varint := func() bool {
		_, k := binary.Varint(b[off:])
		off += max(k, 0)
		return k > 0
	}
	uvarint := func() (uint64, bool) {
		v, k := binary.Uvarint(b[off:])
		off += max(k, 0)
		return v, k > 0
	}
	last := 0 // length of the last field skipped
	skip := func(nullable bool) bool {
		l, ok := uvarint()
		if !ok {
			return false
		}
		last = 0
		if nullable {
			if l == 0 {
				return true
			}
			l--
		}
		if l > uint64(len(b)-off) {
			return false
		}
		off += int(l)
		last = int(l)
		return true
	}
	for off < len(b) && n <= maxRecords {
		if !varint() || !varint() || !skip(true) || !skip(true) {
			return n, h, keys, fail("bad record")
		}
		c, ok := uvarint()
		if !ok || c > record.MaxHeaders {
			return n, h, keys, fail("bad header count")
		}
		for range c {
			if !skip(false) {
				return n, h, keys, fail("bad header")
			}
			keys += int64(last)
			if !skip(true) {
				return n, h, keys, fail("bad header")
			}
		}
		n++
		h += int(c)
	}
	return n, h, keys, nil
}

// group assigns each record its partition and groups them by partition,
// in place: a stable sort keeps each partition's records in request order.
// It returns the partitions in order of first appearance and their records.
func (s *Server) group(recs []record.Record, fixed int32, t manifest.Topic) ([]int32, [][]record.Record, error) {
	sticky := int32(rand.IntN(int(t.Partitions)))
	rank := map[int32]int64{}
	var order []int32
	for i := range recs {
		rec := &recs[i]
		p := fixed
		if p < 0 && rec.Offset >= 0 {
			p = int32(rec.Offset)
		}
		if p < 0 {
			p = sticky
			if rec.Key != nil {
				p = record.KeyPartition(rec.Key, t.Partitions)
			}
		}
		k, ok := rank[p]
		if !ok {
			if len(order) == s.limits.MaxPartitions {
				return nil, nil, tooLarge("records for more than %d partitions in one request; send at most %d", s.limits.MaxPartitions, s.limits.MaxPartitions)
			}
			k = int64(len(order))
			rank[p] = k
			order = append(order, p)
		}
		rec.Offset = k // the sort key; reset below
	}
	byRank := func(a, b record.Record) int { return cmp.Compare(a.Offset, b.Offset) }
	if !slices.IsSortedFunc(recs, byRank) {
		slices.SortStableFunc(recs, byRank)
	}
	groups := make([][]record.Record, len(order))
	start := 0
	for i := range recs {
		if i+1 == len(recs) || recs[i+1].Offset != recs[i].Offset {
			groups[recs[i].Offset] = recs[start : i+1 : i+1]
			start = i + 1
		}
	}
	for i := range recs {
		recs[i].Offset = 0
	}
	return order, groups, nil
}
