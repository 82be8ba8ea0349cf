// Package httpapi is shale's HTTP front end (JSON for control, the binary
// record encoding of docs/format/records.md for data) and its Go client.
// The endpoints are listed in docs/http.md.
package httpapi

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"mime"
	"net/http"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"

	"golang.org/x/sync/semaphore"

	"github.com/shalelog/shale/cache"
	"github.com/shalelog/shale/ingest"
	"github.com/shalelog/shale/reader"
	"github.com/shalelog/shale/tier/manifest"
	"github.com/shalelog/shale/tier/object"
)

// RecordsType is the media type of the binary record encoding.
const RecordsType = "application/vnd.shale.records"

// MaxWait bounds a read's long-poll.
const MaxWait = 30 * time.Second

// Server serves one node's API.
type Server struct {
	Log     *manifest.Log
	Ingest  *ingest.Node
	Reader  *reader.Merge
	Cache   *cache.Cache
	Logger  *slog.Logger
	MaxBody int64 // largest request body; default 16 MiB
	// StoreTimeout bounds the store work of one control request, the wait
	// for buffer space and the reading of a produce body; default 30s.
	StoreTimeout time.Duration
	// MaxInflight bounds the bytes of produce requests being read or
	// waiting for their commit; more wait (back-pressure). Default 256 MiB.
	MaxInflight int64

	inflight *semaphore.Weighted
}

// Handler returns the API's routes.
func (s *Server) Handler() http.Handler {
	if s.MaxBody <= 0 {
		s.MaxBody = 16 << 20
	}
	if s.Logger == nil {
		s.Logger = slog.Default()
	}
	if s.MaxInflight <= 0 {
		s.MaxInflight = 256 << 20
	}
	if s.StoreTimeout <= 0 {
		s.StoreTimeout = 30 * time.Second
	}
	s.inflight = semaphore.NewWeighted(max(s.MaxInflight, s.MaxBody))
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok\n") })
	mux.HandleFunc("GET /v1/stats", s.stats)
	mux.HandleFunc("GET /v1/topics", s.listTopics)
	mux.HandleFunc("POST /v1/topics", s.createTopic)
	mux.HandleFunc("GET /v1/topics/{topic}", s.describeTopic)
	mux.HandleFunc("DELETE /v1/topics/{topic}", s.deleteTopic)
	mux.HandleFunc("POST /v1/topics/{topic}/records", s.produce)
	mux.HandleFunc("GET /v1/topics/{topic}/partitions/{partition}/records", s.read)
	mux.HandleFunc("GET /v1/topics/{topic}/partitions/{partition}/offset", s.offsetForTime)
	return mux
}

// Error is the body of every error response.
type Error struct {
	Error string `json:"error"`
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

// fail maps an error to a status a client can act on.
func (s *Server) fail(w http.ResponseWriter, r *http.Request, err error) {
	status := http.StatusInternalServerError
	var mbe *http.MaxBytesError
	switch {
	case errors.Is(err, errBadRequest), errors.Is(err, manifest.ErrInvalidTopic), errors.Is(err, object.ErrMalformed):
		status = http.StatusBadRequest
	case errors.Is(err, manifest.ErrUnknownTopic), errors.Is(err, manifest.ErrUnknownPartition):
		status = http.StatusNotFound
	case errors.Is(err, manifest.ErrTopicExists):
		status = http.StatusConflict
	case errors.Is(err, ingest.ErrTooLarge), errors.As(err, &mbe):
		status = http.StatusRequestEntityTooLarge
	case errors.Is(err, reader.ErrOffsetOutOfRange):
		status = http.StatusRequestedRangeNotSatisfiable
	case errors.Is(err, ingest.ErrBackpressure), errors.Is(err, ingest.ErrStore), errors.Is(err, ingest.ErrClosed),
		errors.Is(err, errUnavailable), errors.Is(err, context.DeadlineExceeded):
		status = http.StatusServiceUnavailable
	case errors.Is(err, context.Canceled) && r.Context().Err() != nil:
		return // the client went away; nobody reads the answer
	}
	if status == http.StatusInternalServerError {
		s.Logger.Error("request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	}
	writeJSON(w, status, Error{Error: err.Error()})
}

var (
	errBadRequest  = errors.New("bad request")
	errUnavailable = errors.New("store unavailable")
)

// bounded is the request's context, bounded by the store timeout.
func (s *Server) bounded(r *http.Request) (context.Context, context.CancelFunc) {
	return context.WithTimeout(r.Context(), s.StoreTimeout)
}

// sync brings the node's view of the log up to date.
func (s *Server) sync(r *http.Request) error {
	ctx, cancel := s.bounded(r)
	defer cancel()
	if err := s.Log.Sync(ctx); err != nil {
		return fmt.Errorf("%w: read commit log: %w", errUnavailable, err)
	}
	return nil
}

func badRequest(format string, args ...any) error {
	return fmt.Errorf("%w: %s", errBadRequest, fmt.Sprintf(format, args...))
}

func (s *Server) stats(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{"cache": s.Cache.Stats(), "commit_seq": s.Log.Seq()})
}

// TopicRequest creates a topic. Retention values below zero mean
// unlimited; zero means the default (unlimited).
type TopicRequest struct {
	Name           string `json:"name"`
	Partitions     int32  `json:"partitions"`
	RetentionMs    int64  `json:"retention_ms"`
	RetentionBytes int64  `json:"retention_bytes"`
}

func (s *Server) createTopic(w http.ResponseWriter, r *http.Request) {
	var req TopicRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		s.fail(w, r, badRequest("decode topic request: %v", err))
		return
	}
	ret := manifest.Retention{Ms: req.RetentionMs, Bytes: req.RetentionBytes}
	if ret.Ms == 0 {
		ret.Ms = -1
	}
	if ret.Bytes == 0 {
		ret.Bytes = -1
	}
	ctx, cancel := s.bounded(r)
	defer cancel()
	t, err := s.Log.CreateTopic(ctx, req.Name, req.Partitions, ret)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, t)
}

func (s *Server) listTopics(w http.ResponseWriter, r *http.Request) {
	if err := s.sync(r); err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"topics": s.Log.Topics()})
}

// TopicDescription is the answer to describe.
type TopicDescription struct {
	manifest.Topic
	Parts []manifest.PartitionInfo `json:"partition_info"`
}

func (s *Server) describeTopic(w http.ResponseWriter, r *http.Request) {
	if err := s.sync(r); err != nil {
		s.fail(w, r, err)
		return
	}
	t, parts, err := s.Log.Describe(r.PathValue("topic"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, TopicDescription{Topic: t, Parts: parts})
}

func (s *Server) deleteTopic(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := s.bounded(r)
	defer cancel()
	if err := s.Log.DeleteTopic(ctx, r.PathValue("topic")); err != nil {
		s.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

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
	t, err := s.Log.Topic(ctx, topic)
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
	want := s.MaxBody
	if r.ContentLength >= 0 {
		want = min(r.ContentLength, s.MaxBody)
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
	_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(s.StoreTimeout))
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.MaxBody))
	if err != nil {
		var mbe *http.MaxBytesError
		if !errors.As(err, &mbe) {
			err = badRequest("read body: %v", err)
		}
		s.fail(w, r, err)
		return
	}
	var recs []object.Record
	var parts []int32 // per record, -1 when not given
	if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt == "application/json" {
		recs, parts, err = decodeJSONRecords(body)
	} else {
		recs, err = object.DecodeRecords(body)
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
	groups := map[int32][]object.Record{}
	for i, rec := range recs {
		p := fixed
		if p < 0 && parts != nil && parts[i] >= 0 {
			p = parts[i]
		}
		if p < 0 {
			p = sticky
			if rec.Key != nil {
				p = KeyPartition(rec.Key, t.Partitions)
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
			base, err := s.Ingest.Append(r.Context(), topic, p, g)
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

func (s *Server) partitionParam(r *http.Request) (string, int32, error) {
	p, err := strconv.ParseInt(r.PathValue("partition"), 10, 32)
	if err != nil || p < 0 {
		return "", 0, badRequest("partition %q is not a partition number", r.PathValue("partition"))
	}
	return r.PathValue("topic"), int32(p), nil
}

// parseTime accepts RFC 3339 or milliseconds since the epoch.
func parseTime(v string) (int64, error) {
	if ms, err := strconv.ParseInt(v, 10, 64); err == nil {
		return ms, nil
	}
	t, err := time.Parse(time.RFC3339Nano, v)
	if err != nil {
		return 0, badRequest("time %q is neither RFC 3339 nor milliseconds since the epoch", v)
	}
	return t.UnixMilli(), nil
}

func (s *Server) offsetForTime(w http.ResponseWriter, r *http.Request) {
	topic, p, err := s.partitionParam(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	ts, err := parseTime(r.URL.Query().Get("time"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if err := s.sync(r); err != nil {
		s.fail(w, r, err)
		return
	}
	off, err := s.Reader.OffsetForTime(r.Context(), topic, p, ts)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]int64{"offset": off})
}

// read returns records of one partition: ?offset=N or ?time=T (RFC 3339 or
// ms), &max=records, &max_bytes=N, &wait=duration for a long-poll at the end.
// The body is the binary record encoding unless ?format=json; the headers
// Shale-Start-Offset and Shale-End-Offset give the partition's bounds.
func (s *Server) read(w http.ResponseWriter, r *http.Request) {
	topic, p, err := s.partitionParam(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	q := r.URL.Query()
	intParam := func(name string, def int64) (int64, error) {
		v := q.Get(name)
		if v == "" {
			return def, nil
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			return 0, badRequest("%s=%q is not a non-negative integer", name, v)
		}
		return n, nil
	}
	offset, err := intParam("offset", 0)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	maxRecs, err := intParam("max", 1000)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	maxBytes, err := intParam("max_bytes", 1<<20)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	var wait time.Duration
	if v := q.Get("wait"); v != "" {
		if wait, err = time.ParseDuration(v); err != nil || wait < 0 {
			s.fail(w, r, badRequest("wait=%q is not a duration such as 500ms or 5s", v))
			return
		}
		wait = min(wait, MaxWait)
	}
	if v := q.Get("time"); v != "" {
		ts, err := parseTime(v)
		if err != nil {
			s.fail(w, r, err)
			return
		}
		if offset, err = s.Reader.OffsetForTime(r.Context(), topic, p, ts); err != nil {
			s.fail(w, r, err)
			return
		}
	}
	res, err := s.Reader.Read(r.Context(), topic, p, offset, int(min(maxRecs, 100000)), int(min(maxBytes, 64<<20)), wait)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	w.Header().Set("Shale-Start-Offset", strconv.FormatInt(res.Start, 10))
	w.Header().Set("Shale-End-Offset", strconv.FormatInt(res.End, 10))
	if q.Get("format") == "json" {
		out := JSONReadResponse{Start: res.Start, End: res.End, Records: make([]JSONRecord, len(res.Records))}
		for i := range res.Records {
			out.Records[i] = ToJSON(p, &res.Records[i])
		}
		writeJSON(w, http.StatusOK, out)
		return
	}
	var buf []byte
	for i := range res.Records {
		buf = object.AppendRecord(buf, &res.Records[i])
	}
	w.Header().Set("Content-Type", RecordsType)
	w.Write(buf)
}

// JSONHeader is a header in JSON form: the value as a string when it is
// valid UTF-8, else base64 in value_b64.
type JSONHeader struct {
	Key      string  `json:"key"`
	Value    *string `json:"value,omitempty"`
	ValueB64 *string `json:"value_b64,omitempty"`
}

// JSONRecord is a record in JSON form. Keys and values are strings when
// they are valid UTF-8, otherwise base64 in key_b64/value_b64; absent means
// null.
type JSONRecord struct {
	Partition *int32       `json:"partition,omitempty"`
	Offset    int64        `json:"offset"`
	Timestamp int64        `json:"timestamp"`
	Key       *string      `json:"key,omitempty"`
	KeyB64    *string      `json:"key_b64,omitempty"`
	Value     *string      `json:"value,omitempty"`
	ValueB64  *string      `json:"value_b64,omitempty"`
	Headers   []JSONHeader `json:"headers"`
}

// JSONReadResponse is a read in JSON form.
type JSONReadResponse struct {
	Start   int64        `json:"start_offset"`
	End     int64        `json:"end_offset"`
	Records []JSONRecord `json:"records"`
}

func split(b []byte) (str, b64 *string) {
	if b == nil {
		return nil, nil
	}
	if utf8.Valid(b) {
		s := string(b)
		return &s, nil
	}
	s := base64.StdEncoding.EncodeToString(b)
	return nil, &s
}

func join(str, b64 *string) ([]byte, error) {
	switch {
	case str != nil && b64 != nil:
		return nil, errors.New("both a string and a base64 form given")
	case str != nil:
		return []byte(*str), nil
	case b64 != nil:
		return base64.StdEncoding.DecodeString(*b64)
	}
	return nil, nil
}

// ToJSON converts a record of partition p to its JSON form.
func ToJSON(p int32, r *object.Record) JSONRecord {
	j := JSONRecord{Partition: &p, Offset: r.Offset, Timestamp: r.Timestamp, Headers: []JSONHeader{}}
	j.Key, j.KeyB64 = split(r.Key)
	j.Value, j.ValueB64 = split(r.Value)
	for _, h := range r.Headers {
		jh := JSONHeader{Key: h.Key}
		jh.Value, jh.ValueB64 = split(h.Value)
		j.Headers = append(j.Headers, jh)
	}
	return j
}

// FromJSON converts a JSON record back.
func FromJSON(j *JSONRecord) (object.Record, error) {
	r := object.Record{Offset: j.Offset, Timestamp: j.Timestamp}
	var err error
	if r.Key, err = join(j.Key, j.KeyB64); err != nil {
		return r, fmt.Errorf("key: %w", err)
	}
	if r.Value, err = join(j.Value, j.ValueB64); err != nil {
		return r, fmt.Errorf("value: %w", err)
	}
	for _, h := range j.Headers {
		v, err := join(h.Value, h.ValueB64)
		if err != nil {
			return r, fmt.Errorf("header %q: %w", h.Key, err)
		}
		r.Headers = append(r.Headers, object.Header{Key: h.Key, Value: v})
	}
	return r, nil
}

// JSONRecords is a JSON produce body.
type JSONRecords struct {
	Records []JSONRecord `json:"records"`
}

func decodeJSONRecords(body []byte) ([]object.Record, []int32, error) {
	var req JSONRecords
	if err := json.Unmarshal(body, &req); err != nil {
		return nil, nil, err
	}
	recs := make([]object.Record, len(req.Records))
	parts := make([]int32, len(req.Records))
	for i := range req.Records {
		var err error
		if recs[i], err = FromJSON(&req.Records[i]); err != nil {
			return nil, nil, fmt.Errorf("record %d: %w", i, err)
		}
		parts[i] = -1
		if p := req.Records[i].Partition; p != nil {
			parts[i] = *p
		}
	}
	return recs, parts, nil
}

// KeyPartition is the partition of a key: murmur2 of the key, masked
// positive, modulo the partition count — the default partitioner of the
// Java client, franz-go and librdkafka's murmur2_random, so a key lands on
// the same partition whichever client wrote it.
func KeyPartition(key []byte, partitions int32) int32 {
	return int32((murmur2(key) & 0x7fffffff) % uint32(partitions))
}

func murmur2(b []byte) uint32 {
	const (
		seed uint32 = 0x9747b28c
		m    uint32 = 0x5bd1e995
		r           = 24
	)
	h := seed ^ uint32(len(b))
	for len(b) >= 4 {
		k := uint32(b[0]) | uint32(b[1])<<8 | uint32(b[2])<<16 | uint32(b[3])<<24
		k *= m
		k ^= k >> r
		k *= m
		h *= m
		h ^= k
		b = b[4:]
	}
	switch len(b) {
	case 3:
		h ^= uint32(b[2]) << 16
		fallthrough
	case 2:
		h ^= uint32(b[1]) << 8
		fallthrough
	case 1:
		h ^= uint32(b[0])
		h *= m
	}
	h ^= h >> 13
	h *= m
	h ^= h >> 15
	return h
}
