package httpapi

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"time"

	"github.com/shalelog/shale/record"
	"github.com/shalelog/shale/tier/manifest"
)

// TopicIDHeader carries a topic's incarnation: reads answer with it, and a
// reader passes it back (or ?topic_id=) so that its offsets are not applied
// to a topic re-created under the same name.
const TopicIDHeader = "Shale-Topic-Id"

// Bounds of a read's parameters.
const (
	MaxReadRecords = 100_000
	MaxReadBytes   = 64 << 20
)

// readTopic resolves the topic and partition of a read. If the request
// names the topic's incarnation and the topic has another one now (after
// catching up with the log, in case this node is behind), it is refused:
// the reader's offsets belong to a topic that no longer exists.
func (s *Server) readTopic(r *http.Request) (manifest.Topic, int32, string, error) {
	name := r.PathValue("topic")
	want := r.URL.Query().Get("topic_id")
	if want == "" {
		want = r.Header.Get(TopicIDHeader)
	}
	ctx, cancel := s.bounded(r)
	defer cancel()
	t, err := s.node.Log.Topic(ctx, name)
	if err == nil && want != "" && t.ID != want {
		if err = s.node.Log.Sync(ctx); err == nil {
			t, err = s.node.Log.Topic(ctx, name)
		}
	}
	if err != nil {
		return t, 0, want, storeErr(err)
	}
	if want != "" && t.ID != want {
		return t, 0, want, changed(name, want, t.ID)
	}
	p, err := partitionNumber(r.PathValue("partition"), t)
	return t, p, want, err
}

func changed(name, old, now string) error {
	if now == "" {
		return fmt.Errorf("%w %q: it was deleted (id %s); your offset belongs to the deleted topic", manifest.ErrUnknownTopic, name, old)
	}
	return fmt.Errorf("%w: topic %q was deleted and re-created (id %s, now %s); your offset belongs to the old topic: start again from the new topic's offsets",
		errTopicChanged, name, old, now)
}

// topicID is the id this node has for a topic now, or "" if it has none.
func (s *Server) topicID(name string) string {
	var id string
	s.node.Log.View(func(st *manifest.State) {
		if ts, ok := st.Topics[name]; ok {
			id = ts.ID
		}
	})
	return id
}

// parseTime accepts RFC 3339 or milliseconds since the epoch.
func parseTime(v string) (int64, error) {
	if v == "" {
		return 0, badRequest("time missing: give time=T, RFC 3339 or milliseconds since the epoch")
	}
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
	ts, err := parseTime(r.URL.Query().Get("time"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	// Answer from a state that has caught up: the offset of a time is
	// asked for to start reading, often on a node that has not looked.
	if err := s.sync(r); err != nil {
		s.fail(w, r, err)
		return
	}
	t, p, _, err := s.readTopic(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	ctx, cancel := s.bounded(r)
	defer cancel()
	off, err := s.node.Reader.OffsetForTime(ctx, t.Name, p, ts)
	if err != nil {
		s.fail(w, r, storeErr(err))
		return
	}
	if now := s.topicID(t.Name); now != t.ID {
		s.fail(w, r, changed(t.Name, t.ID, now))
		return
	}
	w.Header().Set(TopicIDHeader, t.ID)
	writeJSON(w, http.StatusOK, map[string]any{"offset": off, "topic_id": t.ID})
}

// intParam parses an integer query parameter within [lo, hi].
func intParam(r *http.Request, name string, def, lo, hi int64) (int64, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return def, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < lo || n > hi {
		if hi == math.MaxInt64 {
			return 0, badRequest("%s=%q is outside the valid range: give an integer of %d or more", name, v, lo)
		}
		return 0, badRequest("%s=%q is outside the valid range %d-%d", name, v, lo, hi)
	}
	return n, nil
}

// read returns records of one partition: ?offset=N or ?time=T (RFC 3339 or
// ms), &max=records, &max_bytes=N, &wait=duration for a long-poll at the
// end, &topic_id=ID to insist on an incarnation. The body is the binary
// record encoding unless ?format=json; the headers Shale-Start-Offset and
// Shale-End-Offset give the partition's bounds, Shale-Topic-Id the topic's
// incarnation.
func (s *Server) read(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	offset, err := intParam(r, "offset", 0, 0, math.MaxInt64)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	maxRecs, err := intParam(r, "max", 1000, 1, MaxReadRecords)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	maxBytes, err := intParam(r, "max_bytes", 1<<20, 1, MaxReadBytes)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	var wait time.Duration
	if v := q.Get("wait"); v != "" {
		if wait, err = time.ParseDuration(v); err != nil || wait < 0 || wait > MaxWait {
			s.fail(w, r, badRequest("wait=%q is not a duration between 0s and %s, such as 500ms or 5s", v, MaxWait))
			return
		}
	}
	format := q.Get("format")
	if format != "" && format != "json" && format != "binary" {
		s.fail(w, r, badRequest("format=%q: give json or binary (the default)", format))
		return
	}
	var ts *int64
	if v := q.Get("time"); v != "" {
		t, err := parseTime(v)
		if err != nil {
			s.fail(w, r, err)
			return
		}
		ts = &t
	}
	// The incarnation read is the one the topic has before and after the
	// read: a read that raced a re-creation is done again (or refused, if
	// the reader named the old incarnation).
	for attempt := 0; ; attempt++ {
		t, p, want, err := s.readTopic(r)
		if err != nil {
			s.fail(w, r, err)
			return
		}
		// The store work is bounded by the store timeout, on top of the
		// wait the reader asked for.
		ctx, cancel := context.WithTimeout(r.Context(), wait+s.node.Opts.StoreTimeout)
		from := offset
		if ts != nil {
			if from, err = s.node.Reader.OffsetForTime(ctx, t.Name, p, *ts); err != nil {
				cancel()
				s.fail(w, r, storeErr(err))
				return
			}
		}
		res, err := s.node.Reader.Read(ctx, t.Name, p, from, int(maxRecs), int(maxBytes), wait)
		cancel()
		if now := s.topicID(t.Name); now != t.ID {
			if want != "" || attempt > 0 {
				s.fail(w, r, changed(t.Name, t.ID, now))
				return
			}
			continue
		}
		if err != nil {
			s.fail(w, r, storeErr(err))
			return
		}
		w.Header().Set("Shale-Start-Offset", strconv.FormatInt(res.Start, 10))
		w.Header().Set("Shale-End-Offset", strconv.FormatInt(res.End, 10))
		w.Header().Set(TopicIDHeader, t.ID)
		if format == "json" {
			out := JSONReadResponse{TopicID: t.ID, Start: res.Start, End: res.End, Records: make([]JSONRecord, len(res.Records))}
			for i := range res.Records {
				out.Records[i] = ToJSON(p, &res.Records[i])
			}
			writeJSON(w, http.StatusOK, out)
			return
		}
		var buf []byte
		for i := range res.Records {
			buf = record.Append(buf, &res.Records[i])
		}
		w.Header().Set("Content-Type", RecordsType)
		w.Write(buf)
		return
	}
}
