package main

// Every use of httpapi.Client by the client commands is in this file, so a
// change of the client's API (timeouts, topic ids on reads) changes only
// this file.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"strings"
	"syscall"
	"time"

	"github.com/shalelog/shale/httpapi"
	"github.com/shalelog/shale/record"
	"github.com/shalelog/shale/tier/manifest"
)

// api is a shale server as the client commands see it. Each call is
// bounded by timeout; a read's long-poll wait is added to it.
type api struct {
	c       *httpapi.Client
	timeout time.Duration
}

func newAPI(base string, timeout time.Duration) *api {
	c := httpapi.NewClient(base)
	c.HTTP = &http.Client{Transport: shaleOnly{base: c.Base, rt: http.DefaultTransport}}
	return &api{c: c, timeout: timeout}
}

func (a *api) bound(ctx context.Context, extra time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, a.timeout+extra)
}

// explain adds what a deadline means to err.
func (a *api) explain(ctx context.Context, err error) error {
	var ns notShale
	if errors.As(err, &ns) {
		return ns
	}
	if err != nil && errors.Is(err, context.DeadlineExceeded) && ctx.Err() != nil {
		return fmt.Errorf("no answer within --timeout %v: %w", a.timeout, err)
	}
	return err
}

func (a *api) createTopic(ctx context.Context, req httpapi.TopicRequest) (manifest.Topic, error) {
	ctx, cancel := a.bound(ctx, 0)
	defer cancel()
	t, err := a.c.CreateTopic(ctx, req)
	return t, a.explain(ctx, err)
}

func (a *api) topics(ctx context.Context) ([]manifest.Topic, error) {
	ctx, cancel := a.bound(ctx, 0)
	defer cancel()
	ts, err := a.c.Topics(ctx)
	return ts, a.explain(ctx, err)
}

func (a *api) describe(ctx context.Context, topic string) (httpapi.TopicDescription, error) {
	ctx, cancel := a.bound(ctx, 0)
	defer cancel()
	d, err := a.c.Describe(ctx, topic)
	return d, a.explain(ctx, err)
}

func (a *api) deleteTopic(ctx context.Context, topic string) error {
	ctx, cancel := a.bound(ctx, 0)
	defer cancel()
	return a.explain(ctx, a.c.DeleteTopic(ctx, topic))
}

// produce appends recs to one partition.
func (a *api) produce(ctx context.Context, topic string, partition int32, recs []record.Record) (httpapi.ProduceResult, error) {
	ctx, cancel := a.bound(ctx, 0)
	defer cancel()
	res, err := a.c.Produce(ctx, topic, partition, recs)
	if err != nil {
		return httpapi.ProduceResult{}, a.explain(ctx, err)
	}
	if len(res) != 1 || res[0].Partition != partition || res[0].Records != len(recs) {
		return httpapi.ProduceResult{}, fmt.Errorf("unexpected produce answer %+v for %d records to partition %d", res, len(recs), partition)
	}
	return res[0], nil
}

// read reads from offset of one partition, waiting up to wait at its end,
// and returns the records and the partition's start and end.
func (a *api) read(ctx context.Context, topic string, p int32, offset int64, wait time.Duration) ([]record.Record, int64, int64, error) {
	ctx, cancel := a.bound(ctx, wait)
	defer cancel()
	recs, start, end, err := a.c.Read(ctx, httpapi.ReadRequest{Topic: topic, Partition: p, Offset: offset, Max: 5000, MaxBytes: 4 << 20, Wait: wait})
	return recs, start, end, a.explain(ctx, err)
}

func (a *api) offsetForTime(ctx context.Context, topic string, p int32, t time.Time) (int64, error) {
	ctx, cancel := a.bound(ctx, 0)
	defer cancel()
	off, err := a.c.OffsetForTime(ctx, topic, p, t)
	return off, a.explain(ctx, err)
}

// statusOf is the HTTP status of an error answer, or 0.
func statusOf(err error) int {
	var se *httpapi.StatusError
	if errors.As(err, &se) {
		return se.Status
	}
	return 0
}

// transient reports whether err is worth retrying for a reader: the server
// is unreachable, restarting, or answered 503.
func transient(err error) bool {
	var nf notShale
	if errors.As(err, &nf) {
		return false
	}
	var ne net.Error
	return statusOf(err) == http.StatusServiceUnavailable || errors.Is(err, syscall.ECONNREFUSED) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.As(err, &ne) && ne.Timeout()
}

// notShale is the error for an answer that did not come from a shale
// server: a person who pointed --server at another web server sees that,
// not the other server's HTML page.
type notShale struct {
	base, detail string
}

func (e notShale) Error() string {
	return fmt.Sprintf("%s is not a shale server (%s); check --server", e.base, e.detail)
}

// shaleOnly refuses answers a shale server never gives: every body shale
// sends is JSON, the binary record encoding or a one-line text/plain.
type shaleOnly struct {
	base string
	rt   http.RoundTripper
}

func (s shaleOnly) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := s.rt.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	ct := resp.Header.Get("Content-Type")
	mt, _, _ := mime.ParseMediaType(ct)
	switch mt {
	case "application/json", httpapi.RecordsType, "":
		return resp, nil
	case "text/plain":
		// Go's own 404 and 405 answers, and /healthz.
		if resp.StatusCode < 300 || strings.HasPrefix(resp.Header.Get("X-Content-Type-Options"), "nosniff") {
			return resp, nil
		}
	}
	resp.Body.Close()
	return nil, notShale{base: s.base, detail: fmt.Sprintf("%s %s answered HTTP %d with %s", req.Method, req.URL.Path, resp.StatusCode, ct)}
}
