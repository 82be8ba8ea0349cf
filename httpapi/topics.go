package httpapi

import (
	"encoding/json"
	"fmt"
	"math"
	"mime"
	"net/http"
	"strconv"

	"github.com/shalelog/shale/tier/manifest"
)

func (s *Server) stats(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{"cache": s.node.Cache.Stats(), "commit_seq": s.node.Log.Seq()})
}

// TopicRequest creates a topic. Retention -1 means unlimited; zero means
// the default (unlimited).
type TopicRequest struct {
	Name           string `json:"name"`
	Partitions     int32  `json:"partitions"`
	RetentionMs    int64  `json:"retention_ms"`
	RetentionBytes int64  `json:"retention_bytes"`
}

// topicRequest is TopicRequest as decoded: numbers wide enough that an
// out-of-range count is reported as such rather than as a JSON type error
// (or, in a client, truncated to int32).
type topicRequest struct {
	Name           string       `json:"name"`
	Partitions     *json.Number `json:"partitions"`
	RetentionMs    *json.Number `json:"retention_ms"`
	RetentionBytes *json.Number `json:"retention_bytes"`
}

// jsonBody checks that a request body is declared as JSON; curl -d, for
// one, sends a form type unless told otherwise.
func jsonBody(r *http.Request) error {
	ct := r.Header.Get("Content-Type")
	if mt, _, _ := mime.ParseMediaType(ct); ct != "" && mt != "application/json" {
		return mediaType("Content-Type %q: send application/json", ct)
	}
	return nil
}

// integer checks that a JSON number is an integer in [lo, hi].
func integer(name string, v *json.Number, def, lo, hi int64, rangeText string) (int64, error) {
	if v == nil {
		return def, nil
	}
	n, err := strconv.ParseInt(v.String(), 10, 64)
	if err != nil || n < lo || n > hi {
		return 0, badRequest("%s %s is outside %s", name, v, rangeText)
	}
	return n, nil
}

func (s *Server) createTopic(w http.ResponseWriter, r *http.Request) {
	if err := jsonBody(r); err != nil {
		s.fail(w, r, err)
		return
	}
	var req topicRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		s.fail(w, r, badRequest("decode topic request: %v; send {\"name\":\"T\",\"partitions\":N,\"retention_ms\":MS,\"retention_bytes\":B}", err))
		return
	}
	parts, err := integer("partitions", req.Partitions, 0, 1, manifest.MaxPartitions, fmt.Sprintf("the valid range 1-%d", manifest.MaxPartitions))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if req.Partitions == nil {
		s.fail(w, r, badRequest("partitions missing: give a partition count between 1 and %d", manifest.MaxPartitions))
		return
	}
	const retRange = "the valid values -1 (unlimited), 0 (the default: unlimited) and 1-9223372036854775807"
	ret := manifest.Retention{}
	if ret.Ms, err = integer("retention_ms", req.RetentionMs, 0, -1, math.MaxInt64, retRange); err != nil {
		s.fail(w, r, err)
		return
	}
	if ret.Bytes, err = integer("retention_bytes", req.RetentionBytes, 0, -1, math.MaxInt64, retRange); err != nil {
		s.fail(w, r, err)
		return
	}
	if ret.Ms == 0 {
		ret.Ms = -1
	}
	if ret.Bytes == 0 {
		ret.Bytes = -1
	}
	// Decide on a state that has caught up: a topic another node deleted
	// must not read as existing here.
	if err := s.sync(r); err != nil {
		s.fail(w, r, err)
		return
	}
	ctx, cancel := s.bounded(r)
	defer cancel()
	t, err := s.node.Log.CreateTopic(ctx, req.Name, int32(parts), ret)
	if err != nil {
		s.fail(w, r, storeErr(err))
		return
	}
	writeJSON(w, http.StatusCreated, t)
}

func (s *Server) listTopics(w http.ResponseWriter, r *http.Request) {
	if err := s.sync(r); err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"topics": s.node.Log.Topics()})
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
	t, parts, err := s.node.Log.Describe(r.PathValue("topic"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, TopicDescription{Topic: t, Parts: parts})
}

func (s *Server) deleteTopic(w http.ResponseWriter, r *http.Request) {
	// A topic another node just created must not read as unknown here.
	if err := s.sync(r); err != nil {
		s.fail(w, r, err)
		return
	}
	ctx, cancel := s.bounded(r)
	defer cancel()
	if err := s.node.Log.DeleteTopic(ctx, r.PathValue("topic")); err != nil {
		s.fail(w, r, storeErr(err))
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
