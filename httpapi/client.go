package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/shalelog/shale/record"
	"github.com/shalelog/shale/tier/manifest"
)

// Client calls a shale server's HTTP API.
type Client struct {
	Base string // such as http://127.0.0.1:9080
	HTTP *http.Client
}

// NewClient returns a client for the server at base.
func NewClient(base string) *Client {
	if !strings.Contains(base, "://") {
		base = "http://" + base
	}
	return &Client{Base: strings.TrimRight(base, "/"), HTTP: &http.Client{}}
}

// StatusError is an error answer from the server.
type StatusError struct {
	Status  int
	Message string
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("%s (HTTP %d)", e.Message, e.Status)
}

func (c *Client) do(ctx context.Context, method, path string, ctype string, body []byte, out any) (*http.Response, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, method, c.Base+path, bytes.NewReader(body))
	if err != nil {
		return nil, nil, err
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return nil, nil, fmt.Errorf("cannot reach shale server at %s: %w", c.Base, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, nil, fmt.Errorf("%s %s: read response: %w", method, path, err)
	}
	if resp.StatusCode >= 300 {
		var e Error
		if json.Unmarshal(data, &e) != nil || e.Error == "" {
			e.Error = strings.TrimSpace(string(data))
		}
		return resp, nil, &StatusError{Status: resp.StatusCode, Message: e.Error}
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			return resp, nil, fmt.Errorf("%s %s: decode response: %w", method, path, err)
		}
	}
	return resp, data, nil
}

// CreateTopic creates a topic.
func (c *Client) CreateTopic(ctx context.Context, req TopicRequest) (manifest.Topic, error) {
	body, _ := json.Marshal(req)
	var t manifest.Topic
	_, _, err := c.do(ctx, "POST", "/v1/topics", "application/json", body, &t)
	return t, err
}

// Topics lists topics.
func (c *Client) Topics(ctx context.Context) ([]manifest.Topic, error) {
	var out struct {
		Topics []manifest.Topic `json:"topics"`
	}
	_, _, err := c.do(ctx, "GET", "/v1/topics", "", nil, &out)
	return out.Topics, err
}

// Describe describes a topic.
func (c *Client) Describe(ctx context.Context, topic string) (TopicDescription, error) {
	var out TopicDescription
	_, _, err := c.do(ctx, "GET", "/v1/topics/"+url.PathEscape(topic), "", nil, &out)
	return out, err
}

// DeleteTopic deletes a topic.
func (c *Client) DeleteTopic(ctx context.Context, topic string) error {
	_, _, err := c.do(ctx, "DELETE", "/v1/topics/"+url.PathEscape(topic), "", nil, nil)
	return err
}

// Produce appends records; partition < 0 lets the server choose by key.
func (c *Client) Produce(ctx context.Context, topic string, partition int32, recs []record.Record) ([]ProduceResult, error) {
	var body []byte
	for i := range recs {
		body = record.Append(body, &recs[i])
	}
	path := "/v1/topics/" + url.PathEscape(topic) + "/records"
	if partition >= 0 {
		path += "?partition=" + strconv.Itoa(int(partition))
	}
	var out ProduceResponse
	_, _, err := c.do(ctx, "POST", path, RecordsType, body, &out)
	if err != nil {
		return nil, err
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
}

// Read reads records; it returns them with the partition's start and end
// offsets.
func (c *Client) Read(ctx context.Context, rr ReadRequest) ([]record.Record, int64, int64, error) {
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
	path := fmt.Sprintf("/v1/topics/%s/partitions/%d/records?%s", url.PathEscape(rr.Topic), rr.Partition, q.Encode())
	resp, data, err := c.do(ctx, "GET", path, "", nil, nil)
	if err != nil {
		return nil, 0, 0, err
	}
	start, err1 := strconv.ParseInt(resp.Header.Get("Shale-Start-Offset"), 10, 64)
	end, err2 := strconv.ParseInt(resp.Header.Get("Shale-End-Offset"), 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return nil, 0, 0, fmt.Errorf("read %s/%d: bad offset headers: %w", rr.Topic, rr.Partition, err)
	}
	recs, err := record.DecodeAll(data)
	if err != nil {
		return nil, 0, 0, fmt.Errorf("read %s/%d: %w", rr.Topic, rr.Partition, err)
	}
	return recs, start, end, nil
}

// OffsetForTime returns the first offset at or after t.
func (c *Client) OffsetForTime(ctx context.Context, topic string, partition int32, t time.Time) (int64, error) {
	var out struct {
		Offset int64 `json:"offset"`
	}
	path := fmt.Sprintf("/v1/topics/%s/partitions/%d/offset?time=%d", url.PathEscape(topic), partition, t.UnixMilli())
	_, _, err := c.do(ctx, "GET", path, "", nil, &out)
	return out.Offset, err
}
