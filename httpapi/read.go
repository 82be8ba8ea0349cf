package httpapi

import (
	"net/http"
	"strconv"
	"time"

	"github.com/shalelog/shale/record"
)

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
	off, err := s.node.Reader.OffsetForTime(r.Context(), topic, p, ts)
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
		if offset, err = s.node.Reader.OffsetForTime(r.Context(), topic, p, ts); err != nil {
			s.fail(w, r, err)
			return
		}
	}
	res, err := s.node.Reader.Read(r.Context(), topic, p, offset, int(min(maxRecs, 100000)), int(min(maxBytes, 64<<20)), wait)
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
		buf = record.Append(buf, &res.Records[i])
	}
	w.Header().Set("Content-Type", RecordsType)
	w.Write(buf)
}
