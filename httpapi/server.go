// Package httpapi is shale's HTTP front end (JSON for control, the binary
// record encoding of docs/format/records.md for data) and its Go client.
// The endpoints are listed in docs/http.md.
package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"time"

	"golang.org/x/sync/semaphore"

	"github.com/shalelog/shale"
	"github.com/shalelog/shale/ingest"
	"github.com/shalelog/shale/reader"
	"github.com/shalelog/shale/record"
	"github.com/shalelog/shale/tier/manifest"
)

// RecordsType is the media type of the binary record encoding.
const RecordsType = "application/vnd.shale.records"

// MaxWait bounds a read's long-poll.
const MaxWait = 30 * time.Second

// Server serves one node's API.
type Server struct {
	node   *shale.Node
	logger *slog.Logger
	limits Limits

	inflight *semaphore.Weighted
	http     *http.Server
}

// Limits bound what one request may take from a node.
type Limits struct {
	MaxBody int64 // largest request body
	// MaxInflight bounds the bytes of produce requests being read or
	// waiting for their commit; more wait (back-pressure).
	MaxInflight int64
}

// DefaultLimits are the HTTP front end's defaults.
func DefaultLimits() Limits { return Limits{MaxBody: 16 << 20, MaxInflight: 256 << 20} }

// New returns the API of node n. The store work of one control request,
// the wait for buffer space and the reading of a produce body are bounded
// by n's StoreTimeout.
func New(n *shale.Node, limits Limits) *Server {
	s := &Server{node: n, logger: n.Opts.Logger, limits: limits}
	if s.logger == nil {
		s.logger = slog.Default()
	}
	s.inflight = semaphore.NewWeighted(max(limits.MaxInflight, limits.MaxBody))
	return s
}

// Listen binds addr (":0" picks a free port) and serves the API in the
// background. It returns the bound address.
func (s *Server) Listen(addr string) (string, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return "", fmt.Errorf("listen on %s: %w", addr, err)
	}
	s.http = &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 10 * time.Second}
	go s.http.Serve(ln)
	return ln.Addr().String(), nil
}

// Close stops taking requests. Produces in flight finish (their commits
// take at most the store timeout); long-polls still waiting after a grace
// period are cut. It does not close the node.
func (s *Server) Close() error {
	if s.http == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.http.Shutdown(ctx); err != nil {
		return s.http.Close()
	}
	return nil
}

// Handler returns the API's routes.
func (s *Server) Handler() http.Handler {
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
	case errors.Is(err, errBadRequest), errors.Is(err, manifest.ErrInvalidTopic), errors.Is(err, record.ErrMalformed),
		errors.Is(err, record.ErrInvalid), errors.Is(err, reader.ErrInvalid):
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
		s.logger.Error("request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	}
	writeJSON(w, status, Error{Error: err.Error()})
}

var (
	errBadRequest  = errors.New("bad request")
	errUnavailable = errors.New("store unavailable")
)

// bounded is the request's context, bounded by the store timeout.
func (s *Server) bounded(r *http.Request) (context.Context, context.CancelFunc) {
	return context.WithTimeout(r.Context(), s.node.Opts.StoreTimeout)
}

// sync brings the node's view of the log up to date.
func (s *Server) sync(r *http.Request) error {
	ctx, cancel := s.bounded(r)
	defer cancel()
	if err := s.node.Log.Sync(ctx); err != nil {
		return fmt.Errorf("%w: read commit log: %w", errUnavailable, err)
	}
	return nil
}

func badRequest(format string, args ...any) error {
	return fmt.Errorf("%w: %s", errBadRequest, fmt.Sprintf(format, args...))
}
