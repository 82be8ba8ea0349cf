package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/shalelog/shale/record"
	"github.com/shalelog/shale/tier/manifest"
)

// DefaultTimeout bounds a client call that is not a long-poll (a
// long-poll gets its wait on top). A server answers within its store
// timeout (default 30s), 503 if the store is failing.
const DefaultTimeout = 60 * time.Second

// ErrNotShale is wrapped by the error for an answer that did not come from
// a shale server (such as an HTML page from a proxy or another service).
var ErrNotShale = errors.New("not a shale server")

// Client calls a shale server's HTTP API.
type Client struct {
	Base string // such as http://127.0.0.1:9080
	HTTP *http.Client
	// Timeout bounds each call (plus the wait of a long-poll); 0 means no
	// bound beyond the caller's context.
	Timeout time.Duration
}

// Option configures a Client.
type Option func(*Client)

// WithTimeout bounds each call; 0 means no bound beyond the caller's
// context. The default is DefaultTimeout.
func WithTimeout(d time.Duration) Option { return func(c *Client) { c.Timeout = d } }

// NewClient returns a client for the server at base.
func NewClient(base string, opts ...Option) *Client {
	if !strings.Contains(base, "://") {
		base = "http://" + base
	}
	c := &Client{Base: strings.TrimRight(base, "/"), HTTP: &http.Client{}, Timeout: DefaultTimeout}
	for _, o := range opts {
		o(c)
	}
	return c
}

// StatusError is an error answer from the server.
type StatusError struct {
	Status  int
	Message string
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("%s (HTTP %d)", e.Message, e.Status)
}

// do sends one request. want is the media type of a successful answer's
// body ("" if it has none); an answer of another type did not come from a
// shale server. extra lengthens the call's timeout (a long-poll's wait).
func (c *Client) do(ctx context.Context, method, path, ctype string, body []byte, want string, extra time.Duration) (*http.Response, []byte, error) {
	if c.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.Timeout+extra)
		defer cancel()
	}
	req, err := http.NewRequestWithContext(ctx, method, c.Base+path, bytes.NewReader(body))
	if err != nil {
		return nil, nil, err
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) && c.Timeout > 0 {
			return nil, nil, fmt.Errorf("%s %s: no answer from shale server at %s within %s: %w", method, path, c.Base, c.Timeout+extra, err)
		}
		return nil, nil, fmt.Errorf("cannot reach shale server at %s: %w", c.Base, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, nil, fmt.Errorf("%s %s: read response: %w", method, path, err)
	}
	ct := resp.Header.Get("Content-Type")
	mt, _, _ := mime.ParseMediaType(ct)
	notShale := func() error {
		got := mt
		if got == "" {
			got = "no content type"
		}
		return fmt.Errorf("server at %s is %w: got %s %d to %s %s", c.Base, ErrNotShale, got, resp.StatusCode, method, path)
	}
	if resp.StatusCode >= 300 {
		var e Error
		if mt != "application/json" || json.Unmarshal(data, &e) != nil || e.Error == "" {
			return resp, nil, notShale()
		}
		return resp, nil, &StatusError{Status: resp.StatusCode, Message: e.Error}
	}
	if want != "" && mt != want {
		return resp, nil, notShale()
	}
	return resp, data, nil
}

// call sends a JSON request (body, if not nil) and decodes a JSON answer
// into out, if not nil.
func (c *Client) call(ctx context.Context, method, path string, body, out any) error {
	var data []byte
	var ctype string
	if body != nil {
		var err error
		if data, err = json.Marshal(body); err != nil {
			return err
		}
		ctype = "application/json"
	}
	want := ""
	if out != nil {
		want = "application/json"
	}
	_, data, err := c.do(ctx, method, path, ctype, data, want, 0)
	if err != nil || out == nil {
		return err
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("%s %s: decode response: %w", method, path, err)
	}
	return nil
}

// CreateTopic creates a topic.
func (c *Client) CreateTopic(ctx context.Context, req TopicRequest) (manifest.Topic, error) {
	var t manifest.Topic
	err := c.call(ctx, "POST", "/v1/topics", req, &t)
	return t, err
}

// Topics lists topics.
func (c *Client) Topics(ctx context.Context) ([]manifest.Topic, error) {
	var out struct {
		Topics []manifest.Topic `json:"topics"`
	}
	err := c.call(ctx, "GET", "/v1/topics", nil, &out)
	return out.Topics, err
}

// Describe describes a topic.
func (c *Client) Describe(ctx context.Context, topic string) (TopicDescription, error) {
	var out TopicDescription
	err := c.call(ctx, "GET", "/v1/topics/"+url.PathEscape(topic), nil, &out)
	return out, err
}

// DeleteTopic deletes a topic.
func (c *Client) DeleteTopic(ctx context.Context, topic string) error {
	return c.call(ctx, "DELETE", "/v1/topics/"+url.PathEscape(topic), nil, nil)
}

// Produce appends records; partition < 0 lets the server choose by key.
// With results for several partitions, some may have failed: the error
// then names the first, and the results say which committed.
func (c *Client) Produce(ctx context.Context, topic string, partition int32, recs []record.Record) ([]ProduceResult, error) {
	var body []byte
	for i := range recs {
		body = record.Append(body, &recs[i])
	}
	path := "/v1/topics/" + url.PathEscape(topic) + "/records"
	if partition >= 0 {
		path += "?partition=" + strconv.Itoa(int(partition))
	}
	_, data, err := c.do(ctx, "POST", path, RecordsType, body, "application/json", 0)
	if err != nil {
		return nil, err
	}
	var out ProduceResponse
	if err := json.Unmarshal(data, &out); err != nil {
		return nil, fmt.Errorf("POST %s: decode response: %w", path, err)
	}
	for _, r := range out.Results {
		if r.Error != "" {
			return out.Results, fmt.Errorf("partition %d: %s", r.Partition, r.Error)
		}
	}
	return out.Results, nil
}

// ReadRequest is one partition read.
type ReadRequest struct {
	Topic     string
	Partition int32
	Offset    int64
	Time      *time.Time // if set, read from the first offset at or after it
	Max       int
	MaxBytes  int
	Wait      time.Duration
	// TopicID, if set, is the incarnation of the topic the offset belongs
	// to (ReadResult.TopicID of an earlier read): if the topic has been
	// deleted and re-created since, the read fails with 409 instead of
	// reading the new topic from the old offset.
	TopicID string
}

// ReadResult is one read's records and what the server said of the
// partition.
type ReadResult struct {
	Records []record.Record
	Start   int64  // the partition's first retained offset
	End     int64  // the partition's end offset when read
	TopicID string // the topic's incarnation: pass it in the next ReadRequest
}

// Read reads records of one partition.
func (c *Client) Read(ctx context.Context, rr ReadRequest) (ReadResult, error) {
	q := url.Values{}
	q.Set("offset", strconv.FormatInt(rr.Offset, 10))
	if rr.Time != nil {
		q.Set("time", rr.Time.Format(time.RFC3339Nano))
	}
	if rr.Max > 0 {
		q.Set("max", strconv.Itoa(rr.Max))
	}
	if rr.MaxBytes > 0 {
		q.Set("max_bytes", strconv.Itoa(rr.MaxBytes))
	}
	if rr.Wait > 0 {
		q.Set("wait", rr.Wait.String())
	}
	if rr.TopicID != "" {
		q.Set("topic_id", rr.TopicID)
	}
	path := fmt.Sprintf("/v1/topics/%s/partitions/%d/records?%s", url.PathEscape(rr.Topic), rr.Partition, q.Encode())
	resp, data, err := c.do(ctx, "GET", path, "", nil, RecordsType, rr.Wait)
	if err != nil {
		return ReadResult{}, err
	}
	res := ReadResult{TopicID: resp.Header.Get(TopicIDHeader)}
	var err1, err2 error
	res.Start, err1 = strconv.ParseInt(resp.Header.Get("Shale-Start-Offset"), 10, 64)
	res.End, err2 = strconv.ParseInt(resp.Header.Get("Shale-End-Offset"), 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return ReadResult{}, fmt.Errorf("read %s/%d: bad offset headers: %w", rr.Topic, rr.Partition, err)
	}
	if res.Records, err = record.DecodeAll(data); err != nil {
		return ReadResult{}, fmt.Errorf("read %s/%d: %w", rr.Topic, rr.Partition, err)
	}
	return res, nil
}

// OffsetForTime returns the first offset at or after t.
func (c *Client) OffsetForTime(ctx context.Context, topic string, partition int32, t time.Time) (int64, error) {
	var out struct {
		Offset int64 `json:"offset"`
	}
	path := fmt.Sprintf("/v1/topics/%s/partitions/%d/offset?time=%d", url.PathEscape(topic), partition, t.UnixMilli())
	err := c.call(ctx, "GET", path, nil, &out)
	return out.Offset, err
}
