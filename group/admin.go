package group

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/shalelog/shale/tier"
)

// Offset is a committed offset: the next offset the group reads.
type Offset struct {
	Offset      int64
	LeaderEpoch int32
	Metadata    string
	Time        time.Time // when it was committed
}

// Member is a member of a group's current generation.
type Member struct {
	ID         string
	InstanceID string // static membership's group.instance.id, or ""
	ClientID   string
	Host       string
	// Assignment is the member's partitions, decoded from a "consumer"
	// protocol assignment; nil where the node does not know it (another
	// node coordinates the group, or another protocol type).
	Assignment map[string][]int32
}

// Summary is a group in List.
type Summary struct {
	Group        string
	State        string // Empty, PreparingRebalance, CompletingRebalance, Stable
	ProtocolType string
	Members      int
}

// Description is a group in detail.
type Description struct {
	Group        string
	State        string
	ProtocolType string
	Protocol     string
	Leader       string
	Generation   int32
	// Coordinator is the node holding the group's claim in the bucket.
	Coordinator string
	Members     []Member
	Offsets     map[string]map[int32]Offset
}

// isTombstone reports an object left by DeleteGroups (or one that never
// held anything): no members and no offsets. Such a group does not exist.
func isTombstone(s *state) bool { return len(s.Members) == 0 && len(s.Offsets) == 0 }

// read reads a group's object from the bucket, for a node that does not
// coordinate it.
func (mg *Manager) read(ctx context.Context, name string) (state, string, error) {
	key := mg.key(name)
	b, a, err := mg.store.Get(ctx, key, 0, -1)
	if errors.Is(err, tier.ErrNotFound) {
		return state{}, "", ErrUnknownGroup
	}
	if err != nil {
		return state{}, "", fmt.Errorf("read group %q: %w", name, err)
	}
	st, err := decodeState(key, name, b)
	return st, a.ETag, err
}

// names lists the groups that have an object in the bucket.
func (mg *Manager) names(ctx context.Context) ([]string, error) {
	var out []string
	after := ""
	for {
		as, err := mg.store.List(ctx, mg.opts.Prefix, after, 1000)
		if err != nil {
			return nil, fmt.Errorf("list groups: %w", err)
		}
		if len(as) == 0 {
			return out, nil
		}
		for _, a := range as {
			esc, ok := strings.CutSuffix(strings.TrimPrefix(a.Key, mg.opts.Prefix), "/state")
			if !ok || strings.Contains(esc, "/") {
				continue
			}
			if n, ok := unescape(esc); ok {
				out = append(out, n)
			}
		}
		after = as[len(as)-1].Key
	}
}

// local returns the group if this node holds it loaded, locked.
func (mg *Manager) local(name string) *group {
	mg.mu.Lock()
	g := mg.mu.groups[name]
	mg.mu.Unlock()
	if g == nil {
		return nil
	}
	g.mu.Lock()
	if g.dropped || !g.loaded {
		g.mu.Unlock()
		return nil
	}
	return g
}

func (g *group) summary() Summary {
	return Summary{Group: g.name, State: g.state.String(), ProtocolType: g.protocolType, Members: len(g.members)}
}

func storedSummary(st *state) Summary {
	// Another node (or none) runs the group; the bucket knows the members
	// of its last generation.
	s := Summary{Group: st.Group, State: "Empty", ProtocolType: st.ProtocolType, Members: len(st.Members)}
	if len(st.Members) > 0 {
		s.State = "Stable"
	}
	return s
}

// List returns every group in the bucket, whichever node coordinates it.
func (mg *Manager) List(ctx context.Context) ([]Summary, error) {
	names, err := mg.names(ctx)
	if err != nil {
		return nil, err
	}
	var out []Summary
	for _, n := range names {
		if g := mg.local(n); g != nil {
			s, gone := g.summary(), g.etag == "" && len(g.members) == 0 || isTombstone(&g.st) && len(g.members) == 0
			g.mu.Unlock()
			if !gone {
				out = append(out, s)
			}
			continue
		}
		st, _, err := mg.read(ctx, n)
		if errors.Is(err, ErrUnknownGroup) {
			continue
		}
		if err != nil {
			return nil, err
		}
		if !isTombstone(&st) {
			out = append(out, storedSummary(&st))
		}
	}
	return out, nil
}

func toOffsets(m map[string]map[int32]storedOffset) map[string]map[int32]Offset {
	out := make(map[string]map[int32]Offset, len(m))
	for t, ps := range m {
		out[t] = make(map[int32]Offset, len(ps))
		for p, o := range ps {
			out[t][p] = Offset{Offset: o.Offset, LeaderEpoch: o.LeaderEpoch, Metadata: o.Metadata, Time: time.UnixMilli(o.Time)}
		}
	}
	return out
}

func (g *group) describe() Description {
	d := Description{
		Group: g.name, State: g.state.String(), ProtocolType: g.protocolType, Protocol: g.protocol,
		Leader: g.leader, Generation: g.generation, Coordinator: g.m.self, Offsets: toOffsets(g.st.Offsets),
	}
	for _, id := range sortedKeys(g.members) {
		m := g.members[id]
		dm := Member{ID: m.id, ClientID: m.client, Host: m.host}
		if m.instance != nil {
			dm.InstanceID = *m.instance
		}
		if g.protocolType == "consumer" && len(m.assignment) > 0 {
			var a kmsg.ConsumerMemberAssignment
			if a.ReadFrom(m.assignment) == nil {
				dm.Assignment = map[string][]int32{}
				for _, t := range a.Topics {
					dm.Assignment[t.Topic] = append(dm.Assignment[t.Topic], t.Partitions...)
				}
			}
		}
		d.Members = append(d.Members, dm)
	}
	return d
}

func (mg *Manager) coordinates(ctx context.Context, name string) (bool, error) {
	c, err := mg.Coordinator(ctx, name)
	return c == mg.self, err
}

// Describe returns a group's generation, members and committed offsets:
// live, from memory, on the node that coordinates it; as of the last
// generation, from the bucket, on any other node.
func (mg *Manager) Describe(ctx context.Context, name string) (Description, error) {
	here, err := mg.coordinates(ctx, name)
	if err != nil {
		return Description{}, err
	}
	if here {
		g, err := mg.getGroup(ctx, name)
		if err != nil {
			return Description{}, err
		}
		defer g.mu.Unlock()
		if len(g.members) == 0 && (g.etag == "" || isTombstone(&g.st)) {
			return Description{}, ErrUnknownGroup
		}
		return g.describe(), nil
	}
	st, _, err := mg.read(ctx, name)
	if err != nil {
		return Description{}, err
	}
	if isTombstone(&st) {
		return Description{}, ErrUnknownGroup
	}
	d := Description{
		Group: name, State: storedSummary(&st).State, ProtocolType: st.ProtocolType, Protocol: st.Protocol,
		Leader: st.Leader, Generation: st.Generation, Coordinator: st.Node, Offsets: toOffsets(st.Offsets),
	}
	for _, m := range st.Members {
		d.Members = append(d.Members, Member{ID: m.ID, InstanceID: m.Instance, ClientID: m.Client, Host: m.Host})
	}
	return d, nil
}

// Committed returns a group's committed offsets by topic and partition.
func (mg *Manager) Committed(ctx context.Context, name string) (map[string]map[int32]Offset, error) {
	d, err := mg.Describe(ctx, name)
	if err != nil {
		return nil, err
	}
	return d.Offsets, nil
}

// SetOffsets replaces the committed offsets of the given partitions (other
// partitions keep theirs), creating the group if it does not exist. It is
// refused with ErrGroupNotEmpty while the group has live members. When it
// returns nil the offsets are durable, and the group's consumers start from
// them when they next join.
//
// On a node that does not coordinate the group, "live members" is the
// bucket's view: members of the last generation whose coordinator is still
// a live node. The coordinator picks the change up at its next write or
// claim check (CheckInterval).
func (mg *Manager) SetOffsets(ctx context.Context, name string, offsets map[string]map[int32]int64) error {
	now := mg.opts.Now().UnixMilli()
	apply := func(s *state) {
		for t, ps := range offsets {
			for p, o := range ps {
				s.setOffset(t, p, storedOffset{Offset: o, LeaderEpoch: -1, Time: now})
			}
		}
	}
	here, err := mg.coordinates(ctx, name)
	if err != nil {
		return err
	}
	if here {
		g, err := mg.getGroup(ctx, name)
		if err != nil {
			return err
		}
		defer g.mu.Unlock()
		if len(g.members) > 0 || len(g.pending) > 0 {
			return ErrGroupNotEmpty
		}
		err = g.write(ctx, apply)
		if errors.Is(err, ErrNotCoordinator) {
			g.drop(kerr.NotCoordinator.Code)
		}
		return err
	}
	key := mg.key(name)
	for range 8 {
		st, etag, err := mg.read(ctx, name)
		switch {
		case errors.Is(err, ErrUnknownGroup):
			st = state{Group: name, Node: mg.self, Epoch: 1}
		case err != nil:
			return err
		case len(st.Members) > 0:
			live, err := mg.opts.Members.Live(ctx)
			if err != nil {
				return fmt.Errorf("list live nodes: %w", err)
			}
			if slices.Contains(live, st.Node) {
				return ErrGroupNotEmpty
			}
		}
		apply(&st)
		st.Updated = now
		if etag == "" {
			_, err = mg.store.PutIfAbsent(ctx, key, encodeState(&st))
		} else {
			_, err = mg.store.PutIfMatch(ctx, key, encodeState(&st), etag)
		}
		if errors.Is(err, tier.ErrConflict) || errors.Is(err, tier.ErrNotFound) {
			continue
		}
		if err != nil {
			return fmt.Errorf("write group %q: %w", name, err)
		}
		return nil
	}
	return fmt.Errorf("write group %q: too many conflicts: %w", name, tier.ErrConflict)
}

func (mg *Manager) listGroups(ctx context.Context, req *kmsg.ListGroupsRequest) kmsg.Response {
	resp := req.ResponseKind().(*kmsg.ListGroupsResponse)
	// Each node lists the groups it coordinates, as each Kafka broker
	// does; clients (kadm, kcat) ask every node and merge.
	live, err := mg.opts.Members.Live(ctx)
	if err != nil {
		resp.ErrorCode = kerr.CoordinatorNotAvailable.Code
		return resp
	}
	all, err := mg.List(ctx)
	if err != nil {
		resp.ErrorCode = kerr.CoordinatorNotAvailable.Code
		return resp
	}
	for _, s := range all {
		if Pick(s.Group, live) != mg.self {
			continue
		}
		if len(req.StatesFilter) > 0 && !slices.Contains(req.StatesFilter, s.State) {
			continue
		}
		if len(req.TypesFilter) > 0 && !slices.ContainsFunc(req.TypesFilter, func(t string) bool { return strings.EqualFold(t, "classic") }) {
			continue
		}
		rg := kmsg.NewListGroupsResponseGroup()
		rg.Group, rg.ProtocolType, rg.GroupState, rg.GroupType = s.Group, s.ProtocolType, s.State, "classic"
		resp.Groups = append(resp.Groups, rg)
	}
	return resp
}

func (mg *Manager) describeGroups(ctx context.Context, req *kmsg.DescribeGroupsRequest) kmsg.Response {
	resp := req.ResponseKind().(*kmsg.DescribeGroupsResponse)
	for _, name := range req.Groups {
		rg := kmsg.NewDescribeGroupsResponseGroup()
		rg.Group = name
		g, err := mg.getGroup(ctx, name)
		if err != nil {
			rg.ErrorCode = errCode(err)
			resp.Groups = append(resp.Groups, rg)
			continue
		}
		if len(g.members) == 0 && (g.etag == "" || isTombstone(&g.st)) {
			rg.State = "Dead"
			if req.Version >= 6 {
				rg.ErrorCode = kerr.GroupIDNotFound.Code
			}
		} else {
			rg.State, rg.ProtocolType, rg.Protocol = g.state.String(), g.protocolType, g.protocol
			for _, id := range sortedKeys(g.members) {
				m := g.members[id]
				rm := kmsg.NewDescribeGroupsResponseGroupMember()
				rm.MemberID, rm.InstanceID, rm.ClientID, rm.ClientHost = m.id, m.instance, m.client, m.host
				for _, p := range m.join.Protocols {
					if p.Name == g.protocol {
						rm.ProtocolMetadata = p.Metadata
					}
				}
				rm.MemberAssignment = m.assignment
				rg.Members = append(rg.Members, rm)
			}
		}
		g.mu.Unlock()
		resp.Groups = append(resp.Groups, rg)
	}
	return resp
}

func (mg *Manager) deleteGroups(ctx context.Context, req *kmsg.DeleteGroupsRequest) kmsg.Response {
	resp := req.ResponseKind().(*kmsg.DeleteGroupsResponse)
	for _, name := range req.Groups {
		rg := kmsg.NewDeleteGroupsResponseGroup()
		rg.Group = name
		rg.ErrorCode = mg.deleteGroup(ctx, name)
		resp.Groups = append(resp.Groups, rg)
	}
	return resp
}

// deleteGroup empties the group's object rather than deleting it: the
// store has no conditional delete, and an unconditional one could remove
// a claim another node wrote meanwhile. The emptied object (a tombstone)
// keeps the claim epoch, so later claims still order after it.
func (mg *Manager) deleteGroup(ctx context.Context, name string) int16 {
	g, err := mg.getGroup(ctx, name)
	if err != nil {
		return errCode(err)
	}
	defer g.mu.Unlock()
	if len(g.members) > 0 || len(g.pending) > 0 {
		return kerr.NonEmptyGroup.Code
	}
	if g.etag == "" || isTombstone(&g.st) {
		return kerr.GroupIDNotFound.Code
	}
	err = g.write(ctx, func(s *state) {
		s.Offsets, s.Members = nil, nil
		s.ProtocolType, s.Protocol, s.Leader = "", "", ""
	})
	if errors.Is(err, ErrNotCoordinator) {
		g.drop(kerr.NotCoordinator.Code)
	}
	return errCode(err)
}
