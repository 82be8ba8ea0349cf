package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"sort"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/shalelog/shale"
	"github.com/shalelog/shale/group"
	"github.com/shalelog/shale/tier/manifest"
)

// Consumer groups over HTTP: the groups Kafka clients use (package group,
// shared with the Kafka front end), listed, described with their lag, and
// their committed offsets set. See "Groups over HTTP and the CLI" in
// docs/design.md.

// SetGroups gives the server the node's group manager and membership, shared
// with the Kafka front end. Without it the group endpoints answer 503. Call
// it before Listen.
func (s *Server) SetGroups(g *group.Manager, m *shale.Members) {
	s.groups, s.members = g, m
}

// GroupSummary is one group in GET /v1/groups.
type GroupSummary struct {
	Group        string `json:"group"`
	State        string `json:"state"` // Empty, PreparingRebalance, CompletingRebalance, Stable
	ProtocolType string `json:"protocol_type"`
	Members      int    `json:"members"`
}

// GroupMember is a member of a group's current generation.
type GroupMember struct {
	ID         string `json:"id"`
	InstanceID string `json:"instance_id,omitempty"`
	ClientID   string `json:"client_id"`
	Host       string `json:"host"`
	// Assignment is known only on the node that coordinates the group.
	Assignment map[string][]int32 `json:"assignment,omitempty"`
}

// GroupOffset is a group's position in one partition. End and Lag are -1
// when the topic or partition no longer exists.
type GroupOffset struct {
	Topic      string `json:"topic"`
	Partition  int32  `json:"partition"`
	Committed  int64  `json:"committed"`
	End        int64  `json:"end"`
	Lag        int64  `json:"lag"`
	Metadata   string `json:"metadata,omitempty"`
	CommitTime int64  `json:"commit_time"` // ms since the epoch
}

// GroupDescription is the answer to GET /v1/groups/{group}.
type GroupDescription struct {
	Group        string        `json:"group"`
	State        string        `json:"state"`
	ProtocolType string        `json:"protocol_type"`
	Protocol     string        `json:"protocol"`
	Leader       string        `json:"leader"`
	Generation   int32         `json:"generation"`
	Coordinator  string        `json:"coordinator"`
	Members      []GroupMember `json:"members"`
	Offsets      []GroupOffset `json:"offsets"`
}

// PartitionOffset is one offset to commit.
type PartitionOffset struct {
	Topic     string `json:"topic"`
	Partition int32  `json:"partition"`
	Offset    int64  `json:"offset"`
}

// OffsetsRequest is the body of PUT /v1/groups/{group}/offsets.
type OffsetsRequest struct {
	Offsets []PartitionOffset `json:"offsets"`
}

var (
	errNoGroups  = errors.New("consumer groups are not served by this node (it runs without --kafka-listen)")
	errNotEmpty  = errors.New("the group has live members: stop its consumers first (Kafka refuses this too)")
	errNoGroup   = errors.New("unknown group")
	errNotCoord  = errors.New("the group's coordinator changed: retry")
	errBadOffset = errors.New("bad offset")
)

// groupErr maps package group's errors to this package's, for status.
func groupErr(err error) error {
	switch {
	case errors.Is(err, group.ErrGroupNotEmpty):
		return fmt.Errorf("%w: %w", errNotEmpty, err)
	case errors.Is(err, group.ErrUnknownGroup):
		return fmt.Errorf("%w: %w", errNoGroup, err)
	case errors.Is(err, group.ErrNotCoordinator):
		return fmt.Errorf("%w: %w: %w", errUnavailable, errNotCoord, err)
	}
	return storeErr(err)
}

// needGroups answers errNoGroups for a node without the group manager
// (no Kafka listener, so no membership), and runs h otherwise.
func (s *Server) needGroups(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if s.groups == nil {
			s.fail(w, r, errNoGroups)
			return
		}
		h(w, r)
	}
}

func (s *Server) listGroups(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := s.bounded(r)
	defer cancel()
	gs, err := s.groups.List(ctx)
	if err != nil {
		s.fail(w, r, groupErr(err))
		return
	}
	out := make([]GroupSummary, 0, len(gs))
	for _, g := range gs {
		out = append(out, GroupSummary{Group: g.Group, State: g.State, ProtocolType: g.ProtocolType, Members: g.Members})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Group < out[j].Group })
	writeJSON(w, http.StatusOK, map[string]any{"groups": out})
}

func (s *Server) describeGroup(w http.ResponseWriter, r *http.Request) {
	// The end offsets must include every commit made before the request.
	if err := s.sync(r); err != nil {
		s.fail(w, r, err)
		return
	}
	ctx, cancel := s.bounded(r)
	defer cancel()
	d, err := s.groups.Describe(ctx, r.PathValue("group"))
	if err != nil {
		s.fail(w, r, groupErr(err))
		return
	}
	out := GroupDescription{
		Group: d.Group, State: d.State, ProtocolType: d.ProtocolType, Protocol: d.Protocol, Leader: d.Leader,
		Generation: d.Generation, Coordinator: d.Coordinator, Members: []GroupMember{}, Offsets: []GroupOffset{},
	}
	for _, m := range d.Members {
		out.Members = append(out.Members, GroupMember{ID: m.ID, InstanceID: m.InstanceID, ClientID: m.ClientID, Host: m.Host, Assignment: m.Assignment})
	}
	for t, ps := range d.Offsets {
		_, parts, terr := s.node.Log.Describe(t)
		for p, o := range ps {
			g := GroupOffset{Topic: t, Partition: p, Committed: o.Offset, End: -1, Lag: -1, Metadata: o.Metadata, CommitTime: o.Time.UnixMilli()}
			if terr == nil && int(p) < len(parts) && p >= 0 {
				g.End = parts[p].End
				g.Lag = max(0, g.End-o.Offset)
			}
			out.Offsets = append(out.Offsets, g)
		}
	}
	sort.Slice(out.Offsets, func(i, j int) bool {
		a, b := out.Offsets[i], out.Offsets[j]
		return a.Topic < b.Topic || a.Topic == b.Topic && a.Partition < b.Partition
	})
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) setGroupOffsets(w http.ResponseWriter, r *http.Request) {
	if err := jsonBody(r); err != nil {
		s.fail(w, r, err)
		return
	}
	var req OffsetsRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 16<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		s.fail(w, r, badRequest("decode offsets: %v; send {\"offsets\":[{\"topic\":\"T\",\"partition\":P,\"offset\":N}]}", err))
		return
	}
	if len(req.Offsets) == 0 {
		s.fail(w, r, badRequest("no offsets given"))
		return
	}
	if err := s.sync(r); err != nil {
		s.fail(w, r, err)
		return
	}
	// An offset must name an existing partition and lie within 0 and its
	// end: a consumer starting beyond the end would wait for records
	// that a reset did not mean to skip.
	offs := map[string]map[int32]int64{}
	for _, o := range req.Offsets {
		_, parts, err := s.node.Log.Describe(o.Topic)
		if err != nil {
			s.fail(w, r, err)
			return
		}
		if o.Partition < 0 || int(o.Partition) >= len(parts) {
			s.fail(w, r, fmt.Errorf("%w: topic %s has partitions 0 to %d, not %d", manifest.ErrUnknownPartition, o.Topic, len(parts)-1, o.Partition))
			return
		}
		if end := parts[o.Partition].End; o.Offset < 0 || o.Offset > end {
			s.fail(w, r, fmt.Errorf("%w: %s/%d: offset %d is outside 0 to %d (the end)", errBadOffset, o.Topic, o.Partition, o.Offset, end))
			return
		}
		if offs[o.Topic] == nil {
			offs[o.Topic] = map[int32]int64{}
		}
		offs[o.Topic][o.Partition] = o.Offset
	}
	ctx, cancel := s.bounded(r)
	defer cancel()
	name := r.PathValue("group")
	coord, err := s.groups.Coordinator(ctx, name)
	if err != nil {
		s.fail(w, r, groupErr(err))
		return
	}
	if coord == s.members.Self().Name {
		err = groupErr(s.groups.SetOffsets(ctx, name, offs))
	} else {
		// The coordinator holds the group in memory: the offsets are set
		// there (a Kafka "simple" commit, accepted only while the group
		// is empty), so that it answers with them at once.
		err = s.forwardCommit(ctx, name, offs)
	}
	if err != nil {
		s.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// forwardCommit commits offs as an admin (generation -1, no member id)
// through the group's coordinator.
func (s *Server) forwardCommit(ctx context.Context, name string, offs map[string]map[int32]int64) error {
	cl, err := s.peerClient(ctx)
	if err != nil {
		return fmt.Errorf("%w: forward to the coordinator: %w", errUnavailable, err)
	}
	defer cl.Close()
	req := kmsg.NewPtrOffsetCommitRequest()
	req.Group, req.Generation, req.MemberID = name, -1, ""
	for t, ps := range offs {
		rt := kmsg.NewOffsetCommitRequestTopic()
		rt.Topic = t
		for p, o := range ps {
			rp := kmsg.NewOffsetCommitRequestTopicPartition()
			rp.Partition, rp.Offset, rp.LeaderEpoch = p, o, -1
			rt.Partitions = append(rt.Partitions, rp)
		}
		req.Topics = append(req.Topics, rt)
	}
	resp, err := req.RequestWith(ctx, cl)
	if err != nil {
		return fmt.Errorf("%w: forward to the coordinator: %w", errUnavailable, err)
	}
	for _, rt := range resp.Topics {
		for _, rp := range rt.Partitions {
			switch rp.ErrorCode {
			case 0:
			case kerr.UnknownMemberID.Code, kerr.IllegalGeneration.Code, kerr.RebalanceInProgress.Code:
				return errNotEmpty
			default:
				return fmt.Errorf("%w: %s/%d: %w", errUnavailable, rt.Topic, rp.Partition, kerr.ErrorForCode(rp.ErrorCode))
			}
		}
	}
	return nil
}

// deleteGroup deletes a group through the Kafka protocol's DeleteGroups,
// which only the group's coordinator serves: on another node the request
// is forwarded to the coordinator's Kafka listener.
func (s *Server) deleteGroup(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := s.bounded(r)
	defer cancel()
	name := r.PathValue("group")
	req := kmsg.NewPtrDeleteGroupsRequest()
	req.Version = 2
	req.Groups = []string{name}
	resp, err := s.groups.Handle(ctx, req)
	if err != nil {
		s.fail(w, r, groupErr(err))
		return
	}
	code := resp.(*kmsg.DeleteGroupsResponse).Groups[0].ErrorCode
	if code == kerr.NotCoordinator.Code {
		code, err = s.forwardDelete(ctx, name)
		if err != nil {
			s.fail(w, r, fmt.Errorf("%w: forward to the coordinator: %w", errUnavailable, err))
			return
		}
	}
	switch code {
	case 0:
		w.WriteHeader(http.StatusNoContent)
	case kerr.NonEmptyGroup.Code:
		s.fail(w, r, errNotEmpty)
	case kerr.GroupIDNotFound.Code:
		s.fail(w, r, errNoGroup)
	default:
		s.fail(w, r, fmt.Errorf("%w: %w", errUnavailable, kerr.ErrorForCode(code)))
	}
}

// forwardDelete sends DeleteGroups to the group's coordinator; franz-go
// finds the coordinator itself, starting from any live node.
func (s *Server) forwardDelete(ctx context.Context, name string) (int16, error) {
	cl, err := s.peerClient(ctx)
	if err != nil {
		return 0, err
	}
	defer cl.Close()
	req := kmsg.NewPtrDeleteGroupsRequest()
	req.Groups = []string{name}
	resp, err := req.RequestWith(ctx, cl)
	if err != nil {
		return 0, err
	}
	if len(resp.Groups) != 1 {
		return 0, fmt.Errorf("DeleteGroups answered %d groups", len(resp.Groups))
	}
	return resp.Groups[0].ErrorCode, nil
}

// peerClient is a Kafka client of the other live nodes, for requests only
// a group's coordinator serves; franz-go finds the coordinator itself.
func (s *Server) peerClient(ctx context.Context) (*kgo.Client, error) {
	live, err := s.members.Live(ctx)
	if err != nil {
		return nil, err
	}
	var seeds []string
	for _, m := range live {
		if m.Name != s.members.Self().Name {
			seeds = append(seeds, m.Addr)
		}
	}
	if len(seeds) == 0 {
		return nil, errors.New("no other live node")
	}
	return kgo.NewClient(kgo.SeedBrokers(seeds...), kgo.RequestRetries(3), kgo.RetryTimeout(s.node.Opts.StoreTimeout))
}

// Groups lists the consumer groups.
func (c *Client) Groups(ctx context.Context) ([]GroupSummary, error) {
	var out struct {
		Groups []GroupSummary `json:"groups"`
	}
	err := c.call(ctx, "GET", "/v1/groups", nil, &out)
	return out.Groups, err
}

// DescribeGroup describes a group: members, committed offsets and lag.
func (c *Client) DescribeGroup(ctx context.Context, name string) (GroupDescription, error) {
	var out GroupDescription
	err := c.call(ctx, "GET", "/v1/groups/"+url.PathEscape(name), nil, &out)
	return out, err
}

// SetGroupOffsets commits offsets for a group; the server refuses (409)
// while the group has live members.
func (c *Client) SetGroupOffsets(ctx context.Context, name string, offs []PartitionOffset) error {
	return c.call(ctx, "PUT", "/v1/groups/"+url.PathEscape(name)+"/offsets", OffsetsRequest{Offsets: offs}, nil)
}

// DeleteGroup deletes a group with no live members.
func (c *Client) DeleteGroup(ctx context.Context, name string) error {
	return c.call(ctx, "DELETE", "/v1/groups/"+url.PathEscape(name), nil, nil)
}
