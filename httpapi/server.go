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
	"os"
	"time"

	"golang.org/x/sync/semaphore"

	"github.com/shalelog/shale"
	"github.com/shalelog/shale/group"
	"github.com/shalelog/shale/ingest"
	"github.com/shalelog/shale/reader"
	"github.com/shalelog/shale/record"
	"github.com/shalelog/shale/tier"
	"github.com/shalelog/shale/tier/manifest"
)

// RecordsType is the media type of the binary record encoding.
const RecordsType = "application/vnd.shale.records"

// MaxWait bounds a read's long-poll.
const MaxWait = 30 * time.Second

// ReadyTimeout bounds the store check of /readyz (or the store timeout,
// if that is shorter): a probe must answer before its prober gives up.
const ReadyTimeout = 2 * time.Second

// Server serves one node's API.
type Server struct {
	node   *shale.Node
	logger *slog.Logger
	limits Limits

	inflight *semaphore.Weighted
	http     *http.Server

	groups  *group.Manager // nil: no group endpoints (503)
	members *shale.Members
}

// Limits bound what one request may take from a node. Every produce
// request is refused (413) before it is decoded if it is over one of them.
type Limits struct {
	MaxBody    int64 // largest request body
	MaxRecords int   // records in one produce request
	MaxHeaders int   // record headers, summed over one produce request
	// MaxPartitions bounds the partitions one produce request touches, and
	// MaxAppends the appends (one per partition) it has in flight at once.
	MaxPartitions int
	MaxAppends    int
	// MaxInflight bounds the memory of produce requests being decoded or
	// waiting for their commit, counted as a conservative estimate of
	// their decoded size (see charge); more wait (back-pressure).
	MaxInflight int64
	// BodyTimeout bounds the wait for a produce body's first byte, and
	// then, apart from the wait for buffer space, the reading of the rest:
	// a slow or idle client cannot hold buffer space longer.
	BodyTimeout time.Duration
}

// DefaultLimits are the HTTP front end's defaults.
func DefaultLimits() Limits {
	return Limits{
		MaxBody:       16 << 20,
		MaxRecords:    100_000,
		MaxHeaders:    500_000,
		MaxPartitions: 1000,
		MaxAppends:    64,
		MaxInflight:   128 << 20,
		BodyTimeout:   30 * time.Second,
	}
}

// New returns the API of node n. The store work of every request is
// bounded by n's StoreTimeout.
func New(n *shale.Node, limits Limits) *Server {
	s := &Server{node: n, logger: n.Opts.Logger, limits: limits}
	if s.logger == nil {
		s.logger = slog.Default()
	}
	// The largest request must fit, or it would wait forever.
	s.inflight = semaphore.NewWeighted(max(limits.MaxInflight, s.upfrontCharge(limits.MaxBody, true)))
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
	mux.HandleFunc("GET /livez", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok\n") })
	mux.HandleFunc("GET /readyz", s.ready)
	mux.HandleFunc("GET /v1/stats", s.stats)
	mux.HandleFunc("GET /v1/topics", s.listTopics)
	mux.HandleFunc("POST /v1/topics", s.createTopic)
	mux.HandleFunc("GET /v1/topics/{topic}", s.describeTopic)
	mux.HandleFunc("DELETE /v1/topics/{topic}", s.deleteTopic)
	mux.HandleFunc("POST /v1/topics/{topic}/records", s.produce)
	mux.HandleFunc("GET /v1/topics/{topic}/partitions/{partition}/records", s.read)
	mux.HandleFunc("GET /v1/topics/{topic}/partitions/{partition}/offset", s.offsetForTime)
	mux.HandleFunc("GET /v1/groups", s.needGroups(s.listGroups))
	mux.HandleFunc("GET /v1/groups/{group}", s.needGroups(s.describeGroup))
	mux.HandleFunc("DELETE /v1/groups/{group}", s.needGroups(s.deleteGroup))
	mux.HandleFunc("PUT /v1/groups/{group}/offsets", s.needGroups(s.setGroupOffsets))
	mux.HandleFunc("POST /v1/groups/{group}/offsets", s.needGroups(s.setGroupOffsets))
	// Anything else gets a JSON error too, so that a client can tell a
	// shale server with no such endpoint from some other server.
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusNotFound, Error{Error: fmt.Sprintf("no endpoint %s %s: the API is described in docs/http.md", r.Method, r.URL.Path)})
	})
	return mux
}

// ready answers 200 when the store answers and this node has caught up
// with the commit log, within ReadyTimeout; else 503 with the reason.
func (s *Server) ready(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), min(ReadyTimeout, s.node.Opts.StoreTimeout))
	defer cancel()
	if err := s.node.Log.Sync(ctx); err != nil {
		writeJSON(w, http.StatusServiceUnavailable, Error{Error: fmt.Sprintf("not ready: cannot catch up with the commit log: %v", err)})
		return
	}
	io.WriteString(w, "ok\n")
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

// status maps an error to a status a client can act on.
func status(err error) int {
	var mbe *http.MaxBytesError
	switch {
	case errors.Is(err, errBadRequest), errors.Is(err, manifest.ErrInvalidTopic), errors.Is(err, record.ErrMalformed),
		errors.Is(err, record.ErrInvalid), errors.Is(err, reader.ErrInvalid), errors.Is(err, manifest.ErrOutOfRange):
		return http.StatusBadRequest
	case errors.Is(err, os.ErrDeadlineExceeded):
		return http.StatusRequestTimeout // the body did not arrive in time
	case errors.Is(err, errBodyRead):
		return http.StatusBadRequest
	case errors.Is(err, errMediaType):
		return http.StatusUnsupportedMediaType
	case errors.Is(err, manifest.ErrUnknownTopic), errors.Is(err, manifest.ErrUnknownPartition):
		return http.StatusNotFound
	case errors.Is(err, errNoGroups):
		return http.StatusServiceUnavailable
	case errors.Is(err, errBadOffset):
		return http.StatusBadRequest
	case errors.Is(err, errNoGroup):
		return http.StatusNotFound
	case errors.Is(err, manifest.ErrTopicExists), errors.Is(err, errTopicChanged), errors.Is(err, errNotEmpty):
		return http.StatusConflict
	case errors.Is(err, ingest.ErrTooLarge), errors.Is(err, errTooLarge), errors.As(err, &mbe):
		return http.StatusRequestEntityTooLarge
	case errors.Is(err, reader.ErrOffsetOutOfRange):
		return http.StatusRequestedRangeNotSatisfiable
	case errors.Is(err, ingest.ErrBackpressure), errors.Is(err, ingest.ErrStore), errors.Is(err, ingest.ErrClosed), errors.Is(err, manifest.ErrClosed),
		errors.Is(err, errUnavailable), errors.Is(err, context.DeadlineExceeded):
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}

// fail answers with err and the status it maps to.
func (s *Server) fail(w http.ResponseWriter, r *http.Request, err error) {
	code := status(err)
	if errors.Is(err, context.Canceled) && r.Context().Err() != nil {
		return // the client went away; nobody reads the answer
	}
	if code == http.StatusInternalServerError {
		s.logger.Error("request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	}
	writeJSON(w, code, Error{Error: err.Error()})
}

var (
	errBadRequest   = errors.New("bad request")
	errMediaType    = errors.New("unsupported content type")
	errTooLarge     = errors.New("request too large")
	errUnavailable  = errors.New("store unavailable")
	errTopicChanged = errors.New("topic was deleted and re-created")
	errBodyRead     = errors.New("request body")
)

// bounded is the request's context, bounded by the store timeout.
func (s *Server) bounded(r *http.Request) (context.Context, context.CancelFunc) {
	return context.WithTimeout(r.Context(), s.node.Opts.StoreTimeout)
}

// sync brings the node's view of the log up to date, so that an answer
// reflects every commit made, by any node, before the request arrived.
func (s *Server) sync(r *http.Request) error {
	ctx, cancel := s.bounded(r)
	defer cancel()
	if err := s.node.Log.Sync(ctx); err != nil {
		return fmt.Errorf("%w: %w", errUnavailable, err)
	}
	return nil
}

// storeErr marks an error of store work that has no status of its own as
// an outage (503, retry later). Corruption stays a 500: retrying does not
// help, and the message names the object.
func storeErr(err error) error {
	var ce *tier.CorruptError
	if err == nil || status(err) != http.StatusInternalServerError || errors.As(err, &ce) {
		return err
	}
	return fmt.Errorf("%w: %w", errUnavailable, err)
}

func badRequest(format string, args ...any) error {
	return fmt.Errorf("%w: %s", errBadRequest, fmt.Sprintf(format, args...))
}

func mediaType(format string, args ...any) error {
	return fmt.Errorf("%w: %s", errMediaType, fmt.Sprintf(format, args...))
}

func tooLarge(format string, args ...any) error {
	return fmt.Errorf("%w: %s", errTooLarge, fmt.Sprintf(format, args...))
}
