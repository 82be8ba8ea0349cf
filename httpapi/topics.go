package httpapi

import (
	"encoding/json"
	"net/http"

	"github.com/shalelog/shale/tier/manifest"
)

func (s *Server) stats(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{"cache": s.node.Cache.Stats(), "commit_seq": s.node.Log.Seq()})
}

// TopicRequest creates a topic. Retention values below zero mean
// unlimited; zero means the default (unlimited).
type TopicRequest struct {
	Name           string `json:"name"`
	Partitions     int32  `json:"partitions"`
	RetentionMs    int64  `json:"retention_ms"`
	RetentionBytes int64  `json:"retention_bytes"`
}

func (s *Server) createTopic(w http.ResponseWriter, r *http.Request) {
	var req TopicRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		s.fail(w, r, badRequest("decode topic request: %v", err))
		return
	}
	ret := manifest.Retention{Ms: req.RetentionMs, Bytes: req.RetentionBytes}
	if ret.Ms == 0 {
		ret.Ms = -1
	}
	if ret.Bytes == 0 {
		ret.Bytes = -1
	}
	ctx, cancel := s.bounded(r)
	defer cancel()
	t, err := s.node.Log.CreateTopic(ctx, req.Name, req.Partitions, ret)
	if err != nil {
		s.fail(w, r, err)
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
	ctx, cancel := s.bounded(r)
	defer cancel()
	if err := s.node.Log.DeleteTopic(ctx, r.PathValue("topic")); err != nil {
		s.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
