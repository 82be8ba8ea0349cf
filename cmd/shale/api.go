package main

// Every use of httpapi.Client by the client commands is in this file, so a
// change of the client's API changes only this file.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"syscall"
	"time"

	"github.com/shalelog/shale/httpapi"
	"github.com/shalelog/shale/record"
	"github.com/shalelog/shale/tier/manifest"
)

// api is a shale server as the client commands see it. The client bounds
// each call by --timeout (a read's long-poll wait on top) and reports an
// answer no shale server gives as httpapi.ErrNotShale.
type api struct {
	c       *httpapi.Client
	timeout time.Duration
}

func newAPI(base string, timeout time.Duration) *api {
	return &api{c: httpapi.NewClient(base, httpapi.WithTimeout(timeout)), timeout: timeout}
}

// explain says which flag a timeout came from.
func (a *api) explain(err error) error {
	if err != nil && errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("%w (--timeout %v)", err, a.timeout)
	}
	return err
}

func (a *api) createTopic(ctx context.Context, req httpapi.TopicRequest) (manifest.Topic, error) {
	t, err := a.c.CreateTopic(ctx, req)
	return t, a.explain(err)
}

func (a *api) topics(ctx context.Context) ([]manifest.Topic, error) {
	ts, err := a.c.Topics(ctx)
	return ts, a.explain(err)
}

func (a *api) describe(ctx context.Context, topic string) (httpapi.TopicDescription, error) {
	d, err := a.c.Describe(ctx, topic)
	return d, a.explain(err)
}

func (a *api) deleteTopic(ctx context.Context, topic string) error {
	return a.explain(a.c.DeleteTopic(ctx, topic))
}

// produce appends recs to one partition.
func (a *api) produce(ctx context.Context, topic string, partition int32, recs []record.Record) (httpapi.ProduceResult, error) {
	res, err := a.c.Produce(ctx, topic, partition, recs)
	if err != nil {
		return httpapi.ProduceResult{}, a.explain(err)
	}
	if len(res) != 1 || res[0].Partition != partition || res[0].Records != len(recs) {
		return httpapi.ProduceResult{}, fmt.Errorf("unexpected produce answer %+v for %d records to partition %d", res, len(recs), partition)
	}
	return res[0], nil
}

// read reads from offset of one partition of the topic incarnation
// topicID, waiting up to wait at its end. A topic deleted and re-created
// since is an error (409), not the new topic's records at the old offset.
func (a *api) read(ctx context.Context, topic, topicID string, p int32, offset int64, wait time.Duration) ([]record.Record, error) {
	res, err := a.c.Read(ctx, httpapi.ReadRequest{Topic: topic, TopicID: topicID, Partition: p, Offset: offset, Max: 5000, MaxBytes: 4 << 20, Wait: wait})
	return res.Records, a.explain(err)
}

func (a *api) offsetForTime(ctx context.Context, topic string, p int32, t time.Time) (int64, error) {
	off, err := a.c.OffsetForTime(ctx, topic, p, t)
	return off, a.explain(err)
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
// is unreachable, restarting, slow, or answered 503.
func transient(err error) bool {
	if errors.Is(err, httpapi.ErrNotShale) {
		return false
	}
	var ne net.Error
	return statusOf(err) == http.StatusServiceUnavailable || errors.Is(err, syscall.ECONNREFUSED) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.As(err, &ne) && ne.Timeout()
}

func (a *api) groups(ctx context.Context) ([]httpapi.GroupSummary, error) {
	gs, err := a.c.Groups(ctx)
	return gs, a.explain(err)
}

// describeGroup describes a group; ok is false for a group the server does
// not know (no committed offsets, no members).
func (a *api) describeGroup(ctx context.Context, name string) (d httpapi.GroupDescription, ok bool, err error) {
	d, err = a.c.DescribeGroup(ctx, name)
	if statusOf(err) == http.StatusNotFound && !errors.Is(err, httpapi.ErrNotShale) {
		return d, false, nil
	}
	return d, err == nil, a.explain(err)
}

// errGroupActive is a refused offset change: Kafka consumers are members.
var errGroupActive = errors.New("the group has live members: stop its consumers (or wait for their session timeout) and retry; offsets of an active group cannot be changed, as in Kafka")

func (a *api) setGroupOffsets(ctx context.Context, name string, offs []httpapi.PartitionOffset) error {
	err := a.c.SetGroupOffsets(ctx, name, offs)
	if statusOf(err) == http.StatusConflict {
		return fmt.Errorf("group %s: %w", name, errGroupActive)
	}
	return a.explain(err)
}

func (a *api) deleteGroup(ctx context.Context, name string) error {
	err := a.c.DeleteGroup(ctx, name)
	if statusOf(err) == http.StatusConflict {
		return fmt.Errorf("group %s: %w", name, errGroupActive)
	}
	return a.explain(err)
}
