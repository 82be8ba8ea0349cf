package httpapi

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/shalelog/shale"
	"github.com/shalelog/shale/record"
	"github.com/shalelog/shale/tier/minio"
	"github.com/shalelog/shale/tier/tiertest"
)

func request(t *testing.T, method, url, ctype, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	resp, err := (&http.Client{Timeout: 20 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestInputIsChecked: unknown fields, wrong content types and every
// numeric parameter out of its range are refused with a message that says
// what to send or names the valid range.
func TestInputIsChecked(t *testing.T) {
	ctx := context.Background()
	s, _ := fsStore(t)
	_, c := startNode(t, s, nil)
	if _, err := c.CreateTopic(ctx, TopicRequest{Name: "in", Partitions: 2}); err != nil {
		t.Fatal(err)
	}
	const js = "application/json"
	manyHeaders := `{"records":[{"value":"v","headers":[` + strings.Repeat(`{"key":"h"},`, record.MaxHeaders) + `{"key":"h"}]}]}`
	for _, tc := range []struct {
		name, method, path, ctype, body string
		status                          int
		says                            string
	}{
		{"unknown record field", "POST", "/v1/topics/in/records", js, `{"records":[{"val":"v"}]}`, 400, `unknown field \"val\"`},
		{"unknown body field", "POST", "/v1/topics/in/records", js, `{"recs":[{"value":"v"}]}`, 400, `unknown field \"recs\"`},
		{"unknown header field", "POST", "/v1/topics/in/records", js, `{"records":[{"value":"v","headers":[{"k":"v"}]}]}`, 400, `unknown field \"k\"`},
		{"text produce", "POST", "/v1/topics/in/records", "text/plain", `hello`, 415, "send application/vnd.shale.records"},
		{"form produce", "POST", "/v1/topics/in/records", "application/x-www-form-urlencoded", `{"records":[]}`, 415, "application/json"},
		{"no content type", "POST", "/v1/topics/in/records", "", `x`, 415, "send application/vnd.shale.records"},
		{"form create", "POST", "/v1/topics", "application/x-www-form-urlencoded", `{"name":"x","partitions":1}`, 415, "send application/json"},
		{"negative json partition", "POST", "/v1/topics/in/records", js, `{"records":[{"value":"v","partition":-3}]}`, 400, "partitions 0-1"},
		{"json partition past the end", "POST", "/v1/topics/in/records", js, `{"records":[{"value":"v","partition":2}]}`, 404, "partitions 0-1"},
		{"huge json partition", "POST", "/v1/topics/in/records", js, `{"records":[{"value":"v","partition":4294967297}]}`, 404, "partitions 0-1"},
		{"negative query partition", "POST", "/v1/topics/in/records?partition=-1", RecordsType, "\x00\x00\x00\x00\x00", 400, "partitions 0-1"},
		{"too many headers", "POST", "/v1/topics/in/records", js, manyHeaders, 400, "at most 4096"},
		{"huge partition count", "POST", "/v1/topics", js, `{"name":"x","partitions":4294967297}`, 400, "1-100000"},
		{"fractional partition count", "POST", "/v1/topics", js, `{"name":"x","partitions":1.5}`, 400, "1-100000"},
		{"no partition count", "POST", "/v1/topics", js, `{"name":"x"}`, 400, "partition count"},
		{"negative retention", "POST", "/v1/topics", js, `{"name":"x","partitions":1,"retention_ms":-5}`, 400, "-1 (unlimited)"},
		{"negative retention bytes", "POST", "/v1/topics", js, `{"name":"x","partitions":1,"retention_bytes":-2}`, 400, "-1 (unlimited)"},
		{"read partition past int32", "GET", "/v1/topics/in/partitions/4294967297/records", "", "", 404, "partitions 0-1"},
		{"read negative partition", "GET", "/v1/topics/in/partitions/-1/records", "", "", 400, "partitions 0-1"},
		{"read max zero", "GET", "/v1/topics/in/partitions/0/records?max=0", "", "", 400, "1-100000"},
		{"read max too large", "GET", "/v1/topics/in/partitions/0/records?max=100001", "", "", 400, "1-100000"},
		{"read max_bytes too large", "GET", "/v1/topics/in/partitions/0/records?max_bytes=67108865", "", "", 400, "1-67108864"},
		{"read wait too long", "GET", "/v1/topics/in/partitions/0/records?wait=1h", "", "", 400, "between 0s and 30s"},
		{"read bad format", "GET", "/v1/topics/in/partitions/0/records?format=xml", "", "", 400, "json or binary"},
		{"offset without time", "GET", "/v1/topics/in/partitions/0/offset", "", "", 400, "time missing"},
		{"unknown endpoint", "GET", "/v1/nothing", "", "", 404, "no endpoint GET /v1/nothing"},
		{"healthz is gone", "GET", "/healthz", "", "", 404, "no endpoint"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, body := request(t, tc.method, c.Base+tc.path, tc.ctype, tc.body)
			if status != tc.status || !strings.Contains(body, tc.says) || !strings.Contains(body, `"error"`) {
				t.Fatalf("status %d body %.300s; want %d mentioning %q", status, body, tc.status, tc.says)
			}
		})
	}
	d, err := c.Describe(ctx, "in")
	if err != nil || d.Parts[0].End != 0 || d.Parts[1].End != 0 {
		t.Fatalf("after refused requests: %+v %v", d.Parts, err)
	}
}

// TestJSONValuesKeepTheirText: a JSON object, array, number or boolean
// given as key, value or header value is stored as its JSON text; strings
// with escapes are unescaped; null is null.
func TestJSONValuesKeepTheirText(t *testing.T) {
	ctx := context.Background()
	s, _ := fsStore(t)
	_, c := startNode(t, s, nil)
	if _, err := c.CreateTopic(ctx, TopicRequest{Name: "j", Partitions: 1}); err != nil {
		t.Fatal(err)
	}
	body := `{"records":[
		{"key":{"k":1},"value":{"a":[1,2]},"headers":[{"key":"h","value":[1,"x"]}]},
		{"value":12.5},
		{"value":true,"key":null},
		{"value":"tab\there \"q\" \u00e9"},
		{"value":"plain","offset":7,"partition":0,"timestamp":1700000000000}]}`
	if status, msg := request(t, "POST", c.Base+"/v1/topics/j/records", "application/json", body); status != 200 {
		t.Fatalf("produce: %d %s", status, msg)
	}
	got, _ := readAll(t, c, "j", 0)
	want := []record.Record{
		{Key: []byte(`{"k":1}`), Value: []byte(`{"a":[1,2]}`), Headers: []record.Header{{Key: "h", Value: []byte(`[1,"x"]`)}}},
		{Value: []byte(`12.5`)},
		{Value: []byte(`true`)},
		{Value: []byte("tab\there \"q\" é")},
		{Value: []byte("plain"), Timestamp: 1700000000000},
	}
	if len(got) != len(want) {
		t.Fatalf("got %d records, want %d", len(got), len(want))
	}
	for i := range want {
		g := got[i]
		if !bytes.Equal(g.Key, want[i].Key) || (g.Key == nil) != (want[i].Key == nil) || !bytes.Equal(g.Value, want[i].Value) ||
			fmt.Sprint(g.Headers) != fmt.Sprint(want[i].Headers) || (want[i].Timestamp != 0 && g.Timestamp != want[i].Timestamp) {
			t.Fatalf("record %d: got key %q value %q headers %v ts %d; want key %q value %q headers %v",
				i, g.Key, g.Value, g.Headers, g.Timestamp, want[i].Key, want[i].Value, want[i].Headers)
		}
	}
}

// TestReadCarriesTopicIncarnation: a consumer that echoes the topic id it
// read gets a clear error once the topic is deleted and re-created, on the
// node that did it and on another one, instead of the new topic's records
// at its old offset.
func TestReadCarriesTopicIncarnation(t *testing.T) {
	ctx := context.Background()
	s, _ := fsStore(t)
	_, a := startNode(t, s, nil)
	_, b := startNode(t, s, nil)
	if _, err := a.CreateTopic(ctx, TopicRequest{Name: "inc", Partitions: 1}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Produce(ctx, "inc", 0, sampleRecords(3)); err != nil {
		t.Fatal(err)
	}
	first, err := b.Read(ctx, ReadRequest{Topic: "inc", Partition: 0, Max: 10})
	if err != nil || len(first.Records) != 3 || first.TopicID == "" {
		t.Fatalf("first read: %+v %v", first, err)
	}
	if err := a.DeleteTopic(ctx, "inc"); err != nil {
		t.Fatal(err)
	}
	topic, err := a.CreateTopic(ctx, TopicRequest{Name: "inc", Partitions: 1})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Produce(ctx, "inc", 0, sampleRecords(5)); err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string]*Client{"same node": a, "other node": b} {
		t.Run(name, func(t *testing.T) {
			_, err := c.Read(ctx, ReadRequest{Topic: "inc", Partition: 0, Offset: 3, TopicID: first.TopicID})
			var se *StatusError
			if !errors.As(err, &se) || se.Status != 409 || !strings.Contains(se.Message, "deleted and re-created") || !strings.Contains(se.Message, "your offset belongs to the old topic") {
				t.Fatalf("read with the old topic id: %v; want 409 saying the topic was re-created", err)
			}
			// The header form is honoured too, and the JSON body carries the id.
			req, _ := http.NewRequest("GET", c.Base+"/v1/topics/inc/partitions/0/records?format=json", nil)
			req.Header.Set(TopicIDHeader, first.TopicID)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != 409 {
				t.Fatalf("read with the old id in %s: status %d", TopicIDHeader, resp.StatusCode)
			}
			status, body := request(t, "GET", c.Base+"/v1/topics/inc/partitions/0/records?format=json&topic_id="+topic.ID, "", "")
			if status != 200 || !strings.Contains(body, `"topic_id":"`+topic.ID+`"`) {
				t.Fatalf("read with the new id: %d %s", status, body)
			}
			res, err := c.Read(ctx, ReadRequest{Topic: "inc", Partition: 0, TopicID: topic.ID, Max: 10})
			if err != nil || res.TopicID != topic.ID || len(res.Records) != 5 {
				t.Fatalf("read of the new topic: %+v %v", res, err)
			}
		})
	}
	if err := a.DeleteTopic(ctx, "inc"); err != nil {
		t.Fatal(err)
	}
	_, err = b.Read(ctx, ReadRequest{Topic: "inc", Partition: 0, Offset: 5, TopicID: topic.ID})
	var se *StatusError
	if !errors.As(err, &se) || se.Status != 404 || !strings.Contains(se.Message, "deleted") {
		t.Fatalf("read of a deleted topic with its id: %v; want 404 saying it was deleted", err)
	}
}

// TestControlDecidesOnCaughtUpState: on an idle node, describe and delete
// of a topic another node created, and re-creation of a topic another node
// deleted, see the other node's commits.
func TestControlDecidesOnCaughtUpState(t *testing.T) {
	ctx := context.Background()
	s, _ := fsStore(t)
	_, a := startNode(t, s, nil)
	_, b := startNode(t, s, nil)
	// b has looked once, so that it has a (soon stale) view.
	if _, err := b.Topics(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := a.CreateTopic(ctx, TopicRequest{Name: "x", Partitions: 3}); err != nil {
		t.Fatal(err)
	}
	d, err := b.Describe(ctx, "x")
	if err != nil || d.Partitions != 3 {
		t.Fatalf("describe on the other node: %+v %v", d, err)
	}
	if _, err := a.CreateTopic(ctx, TopicRequest{Name: "y", Partitions: 1}); err != nil {
		t.Fatal(err)
	}
	if err := b.DeleteTopic(ctx, "y"); err != nil {
		t.Fatalf("delete on the other node: %v", err)
	}
	if err := a.DeleteTopic(ctx, "x"); err != nil {
		t.Fatal(err)
	}
	if _, err := b.CreateTopic(ctx, TopicRequest{Name: "x", Partitions: 1}); err != nil {
		t.Fatalf("re-create on the other node: %v", err)
	}
}

// TestHealth: /livez always answers; /readyz answers 503 with the reason
// within ReadyTimeout when the store does not answer, and 200 when it does.
func TestHealth(t *testing.T) {
	fs, _ := fsStore(t)
	hs := newHangStore(fs)
	_, c := startNode(t, hs, nil)
	t.Cleanup(func() { hs.setDown(false) })
	probe := &http.Client{Timeout: ReadyTimeout + 3*time.Second}
	check := func(path string, want int, says string) {
		t.Helper()
		resp, err := probe.Get(c.Base + path)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != want || !strings.Contains(string(body), says) {
			t.Fatalf("%s: %d %s; want %d saying %q", path, resp.StatusCode, body, want, says)
		}
	}
	check("/livez", 200, "ok")
	check("/readyz", 200, "ok")
	hs.setDown(true)
	check("/livez", 200, "ok")
	check("/readyz", 503, "commit log")
	hs.setDown(false)
	check("/readyz", 200, "ok")
}

// TestStoreOutageIsA503Everywhere: with the store hanging, or MinIO
// stopped, every API call answers 503 within the store timeout plus a
// second (the client's timeout here), and /livez stays ok.
func TestStoreOutageIsA503Everywhere(t *testing.T) {
	// The bound is the store timeout and a second; half a second more is
	// for a loaded test machine's scheduling.
	const storeTimeout = time.Second
	const within = storeTimeout + time.Second + 500*time.Millisecond
	set := func(o *shale.Options) { o.StoreTimeout = storeTimeout }
	t.Run("hanging store", func(t *testing.T) {
		fs, _ := fsStore(t)
		hs := newHangStore(fs)
		_, c := startNode(t, hs, set)
		t.Cleanup(func() { hs.setDown(false) })
		testOutage(t, c, within, func() { hs.setDown(true) }, func() { hs.setDown(false) })
	})
	t.Run("minio stopped", func(t *testing.T) {
		m := tiertest.StartPrivateMinIO(t)
		ep := m.Endpoint()
		ms, err := minio.Open(context.Background(), fmt.Sprintf("minio://%s:%s@%s/%s/outage", ep.AccessKey, ep.SecretKey, ep.Addr, ep.Bucket))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ms.Close() })
		_, c := startNode(t, ms, set)
		testOutage(t, c, within, func() { m.Stop(t) }, func() { m.Start(t) })
	})
}

func testOutage(t *testing.T, c *Client, within time.Duration, stop, restart func()) {
	ctx := context.Background()
	if _, err := c.CreateTopic(ctx, TopicRequest{Name: "o", Partitions: 1}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Produce(ctx, "o", 0, sampleRecords(2)); err != nil {
		t.Fatal(err)
	}
	stop()
	calls := []struct{ method, path, ctype, body string }{
		{"GET", "/v1/topics", "", ""},
		{"GET", "/v1/topics/o", "", ""},
		{"POST", "/v1/topics", "application/json", `{"name":"o2","partitions":1}`},
		{"DELETE", "/v1/topics/o", "", ""},
		{"POST", "/v1/topics/o/records", "application/json", `{"records":[{"value":"v"}]}`},
		{"GET", "/v1/topics/o/partitions/0/records?offset=2", "", ""},
		{"GET", "/v1/topics/o/partitions/0/offset?time=0", "", ""},
		{"GET", "/readyz", "", ""},
	}
	for _, call := range calls {
		t.Run(call.method+" "+call.path, func(t *testing.T) {
			req, _ := http.NewRequest(call.method, c.Base+call.path, strings.NewReader(call.body))
			if call.ctype != "" {
				req.Header.Set("Content-Type", call.ctype)
			}
			start := time.Now()
			resp, err := (&http.Client{Timeout: within}).Do(req)
			if err != nil {
				t.Fatalf("no answer within the store timeout and a second: %v", err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 503 {
				t.Fatalf("status %d %s after %s; want 503", resp.StatusCode, body, time.Since(start))
			}
		})
	}
	status, _ := request(t, "GET", c.Base+"/livez", "", "")
	if status != 200 {
		t.Fatalf("/livez during the outage: %d", status)
	}
	restart()
	// Back to normal once the store is.
	if _, err := c.Produce(ctx, "o", 0, sampleRecords(1)); err != nil {
		t.Fatalf("produce after the outage: %v", err)
	}
}

// TestClientReportsForeignServersAndTimeouts: an HTML page or a plain-text
// error is reported as coming from something that is not a shale server,
// and a server that does not answer fails the call at the client's
// timeout.
func TestClientReportsForeignServersAndTimeouts(t *testing.T) {
	ctx := context.Background()
	html := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.WriteHeader(404)
		io.WriteString(w, "<html><body><h1>Not Found</h1></body></html>")
	}))
	defer html.Close()
	_, err := NewClient(html.URL).Topics(ctx)
	if !errors.Is(err, ErrNotShale) || !strings.Contains(err.Error(), "is not a shale server: got text/html 404") || strings.Contains(err.Error(), "<html>") {
		t.Fatalf("HTML 404: %v", err)
	}
	okText := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "hello") }))
	defer okText.Close()
	if _, err := NewClient(okText.URL).Read(ctx, ReadRequest{Topic: "t"}); !errors.Is(err, ErrNotShale) {
		t.Fatalf("text 200 to a read: %v", err)
	}
	release := make(chan struct{})
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-release }))
	defer slow.Close()
	defer close(release)
	done := make(chan error, 1)
	go func() { _, err := NewClient(slow.URL, WithTimeout(100*time.Millisecond)).Topics(ctx); done <- err }()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "no answer from shale server") {
			t.Fatalf("silent server: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the client's timeout did not end the call")
	}
}
