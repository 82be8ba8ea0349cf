package group

import (
	"bytes"
	"context"
	"sort"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// This file is the classic group protocol's state machine: JoinGroup,
// SyncGroup, Heartbeat, LeaveGroup and the rebalance between them, after
// Kafka's GroupCoordinator and franz-go's kfake/groups.go.

// join serves JoinGroup, following the classic protocol as Kafka and
// kfake's groups.go do.
func (mg *Manager) join(ctx context.Context, req *kmsg.JoinGroupRequest) (kmsg.Response, error) {
	resp := req.ResponseKind().(*kmsg.JoinGroupResponse)
	resp.Generation = -1
	st := time.Duration(req.SessionTimeoutMillis) * time.Millisecond
	if st < mg.opts.MinSessionTimeout || st > mg.opts.MaxSessionTimeout {
		resp.ErrorCode = kerr.InvalidSessionTimeout.Code
		return resp, nil
	}
	if req.Version == 0 || req.RebalanceTimeoutMillis <= 0 {
		// v0 has no rebalance timeout; Kafka uses the session timeout.
		req.RebalanceTimeoutMillis = req.SessionTimeoutMillis
	}
	g, err := mg.getGroup(ctx, req.Group)
	if err != nil {
		resp.ErrorCode = errCode(err)
		return resp, nil
	}
	w := newWaiter(req)
	r := g.handleJoin(clientOf(ctx), req, resp, w)
	g.mu.Unlock()
	if r != nil {
		return r, nil
	}
	return w.wait(ctx)
}

// handleJoin returns the response, or nil if w will receive it.
func (g *group) handleJoin(c Client, req *kmsg.JoinGroupRequest, resp *kmsg.JoinGroupResponse, w *waiter) kmsg.Response {
	if !g.protocolsMatch(req.ProtocolType, req.Protocols) {
		resp.ErrorCode = kerr.InconsistentGroupProtocol.Code
		return resp
	}
	if req.MemberID == "" {
		if req.InstanceID != nil {
			if old, ok := g.static[*req.InstanceID]; ok {
				return g.replaceStaticMember(old, c, req, resp, w)
			}
		}
		m := &member{id: newMemberID(idPrefix(c, req.InstanceID)), instance: req.InstanceID, client: c.ID, host: c.Host, join: req}
		resp.MemberID = m.id
		if req.InstanceID != nil {
			g.static[*req.InstanceID] = m.id
		}
		// KIP-394: a dynamic member of v4+ first gets its id and comes
		// back with it, so a client that dies between the two never
		// holds up a rebalance.
		if req.Version >= 4 && req.InstanceID == nil {
			g.addPending(m)
			resp.ErrorCode = kerr.MemberIDRequired.Code
			return resp
		}
		g.addMemberAndRebalance(m, w, req)
		return nil
	}
	if req.InstanceID != nil {
		if err := g.validateInstanceID(req.InstanceID, req.MemberID); err != nil {
			resp.ErrorCode = err.Code
			return resp
		}
	}
	if m, ok := g.pending[req.MemberID]; ok {
		g.addMemberAndRebalance(m, w, req)
		return nil
	}
	m, ok := g.members[req.MemberID]
	if !ok {
		resp.ErrorCode = kerr.UnknownMemberID.Code
		return resp
	}
	switch g.state {
	case groupPreparingRebalance:
		g.updateMemberAndRebalance(m, w, req)
	case groupCompletingRebalance:
		if m.sameJoin(req) {
			g.fillJoinResp(m.id, resp)
			return resp
		}
		g.updateMemberAndRebalance(m, w, req)
	case groupStable:
		if g.leader != req.MemberID && m.sameJoin(req) {
			g.fillJoinResp(m.id, resp)
			return resp
		}
		g.updateMemberAndRebalance(m, w, req)
	default:
		resp.ErrorCode = kerr.UnknownMemberID.Code
		return resp
	}
	return nil
}

func idPrefix(c Client, instance *string) string {
	if instance != nil {
		return *instance
	}
	return c.ID
}

// replaceStaticMember serves a static member (KIP-345) rejoining without
// its member id, as after a restart: it takes over the old member's
// assignment, and if nothing changed in a stable group, no rebalance runs.
func (g *group) replaceStaticMember(oldID string, c Client, req *kmsg.JoinGroupRequest, resp *kmsg.JoinGroupResponse, w *waiter) kmsg.Response {
	old, ok := g.members[oldID]
	id := newMemberID(idPrefix(c, req.InstanceID))
	if !ok {
		delete(g.static, *req.InstanceID)
		if p, ok := g.pending[oldID]; ok {
			g.stopPending(p)
		}
		m := &member{id: id, instance: req.InstanceID, client: c.ID, host: c.Host, join: req}
		g.static[*req.InstanceID] = id
		resp.MemberID = id
		g.addMemberAndRebalance(m, w, req)
		return nil
	}
	m := &member{id: id, instance: req.InstanceID, client: c.ID, host: c.Host, join: req, assignment: old.assignment}
	if old.waiting != nil {
		g.reply(old.waiting, errResponse(old.waiting.req, kerr.FencedInstanceID.Code), nil)
	}
	g.removeMember(old)
	g.static[*req.InstanceID] = id
	g.members[id] = m
	for _, p := range req.Protocols {
		g.protocols[p.Name]++
	}
	if g.state == groupStable && old.sameJoin(req) {
		if g.leader == oldID {
			g.leader = id
		}
		g.updateHeartbeat(m)
		g.fillJoinResp(id, resp)
		if resp.LeaderID == id {
			// KIP-814: the leader keeps the current assignment.
			resp.SkipAssignment = true
		}
		return resp
	}
	g.nJoining++
	m.waiting = w
	g.rebalance()
	return nil
}

func (mg *Manager) sync(ctx context.Context, req *kmsg.SyncGroupRequest) (kmsg.Response, error) {
	resp := req.ResponseKind().(*kmsg.SyncGroupResponse)
	g, err := mg.getGroup(ctx, req.Group)
	if err != nil {
		resp.ErrorCode = errCode(err)
		return resp, nil
	}
	w := newWaiter(req)
	r := g.handleSync(req, resp, w)
	g.mu.Unlock()
	if r != nil {
		return r, nil
	}
	return w.wait(ctx)
}

func (g *group) handleSync(req *kmsg.SyncGroupRequest, resp *kmsg.SyncGroupResponse, w *waiter) kmsg.Response {
	if err := g.validateInstanceID(req.InstanceID, req.MemberID); err != nil {
		resp.ErrorCode = err.Code
		return resp
	}
	m, ok := g.members[req.MemberID]
	if !ok {
		resp.ErrorCode = kerr.UnknownMemberID.Code
		return resp
	}
	if req.Generation != g.generation {
		resp.ErrorCode = kerr.IllegalGeneration.Code
		return resp
	}
	if req.ProtocolType != nil && *req.ProtocolType != g.protocolType || req.Protocol != nil && *req.Protocol != g.protocol {
		resp.ErrorCode = kerr.InconsistentGroupProtocol.Code
		return resp
	}
	switch g.state {
	case groupPreparingRebalance:
		resp.ErrorCode = kerr.RebalanceInProgress.Code
	case groupCompletingRebalance:
		delete(g.pendingSync, req.MemberID)
		m.waiting = w
		if req.MemberID == g.leader {
			g.completeLeaderSync(req)
		}
		return nil
	case groupStable:
		resp.ProtocolType = kmsg.StringPtr(g.protocolType)
		resp.Protocol = kmsg.StringPtr(g.protocol)
		resp.MemberAssignment = m.assignment
	default:
		resp.ErrorCode = kerr.UnknownMemberID.Code
	}
	return resp
}

func (mg *Manager) heartbeat(ctx context.Context, req *kmsg.HeartbeatRequest) kmsg.Response {
	resp := req.ResponseKind().(*kmsg.HeartbeatResponse)
	g, err := mg.getGroup(ctx, req.Group)
	if err != nil {
		resp.ErrorCode = errCode(err)
		return resp
	}
	defer g.mu.Unlock()
	if err := g.validateInstanceID(req.InstanceID, req.MemberID); err != nil {
		resp.ErrorCode = err.Code
		return resp
	}
	m, ok := g.members[req.MemberID]
	if !ok {
		resp.ErrorCode = kerr.UnknownMemberID.Code
		return resp
	}
	if req.Generation != g.generation {
		resp.ErrorCode = kerr.IllegalGeneration.Code
		return resp
	}
	switch g.state {
	case groupPreparingRebalance:
		resp.ErrorCode = kerr.RebalanceInProgress.Code
		g.updateHeartbeat(m)
	case groupCompletingRebalance, groupStable:
		g.updateHeartbeat(m)
	default:
		resp.ErrorCode = kerr.UnknownMemberID.Code
	}
	return resp
}

func (mg *Manager) leave(ctx context.Context, req *kmsg.LeaveGroupRequest) kmsg.Response {
	resp := req.ResponseKind().(*kmsg.LeaveGroupResponse)
	g, err := mg.getGroup(ctx, req.Group)
	if err != nil {
		resp.ErrorCode = errCode(err)
		return resp
	}
	defer g.mu.Unlock()
	members := req.Members
	if req.Version < 3 {
		members = []kmsg.LeaveGroupRequestMember{{MemberID: req.MemberID}}
	}
	for _, rm := range members {
		r := kmsg.NewLeaveGroupResponseMember()
		r.MemberID, r.InstanceID = rm.MemberID, rm.InstanceID
		if rm.InstanceID != nil {
			id, ok := g.static[*rm.InstanceID]
			switch {
			case !ok:
				r.ErrorCode = kerr.UnknownMemberID.Code
			case rm.MemberID != "" && rm.MemberID != id:
				r.ErrorCode = kerr.FencedInstanceID.Code
			}
			rm.MemberID, r.MemberID = id, id
		}
		if r.ErrorCode == 0 {
			if m, ok := g.members[rm.MemberID]; ok {
				g.updateMemberAndRebalance(m, nil, nil)
			} else if p, ok := g.pending[rm.MemberID]; ok {
				g.stopPending(p)
			} else {
				r.ErrorCode = kerr.UnknownMemberID.Code
			}
		}
		resp.Members = append(resp.Members, r)
	}
	if req.Version < 3 {
		resp.ErrorCode = resp.Members[0].ErrorCode
		resp.Members = nil
	}
	return resp
}

// rebalance moves the group to PreparingRebalance. Members waiting in
// SyncGroup are told to rejoin; once every member has rejoined, or the
// longest rebalance timeout passed, the rebalance completes.
func (g *group) rebalance() {
	if g.state == groupCompletingRebalance {
		for _, m := range g.members {
			m.assignment = nil
			if m.waiting == nil {
				continue
			}
			if _, ok := m.waiting.req.(*kmsg.SyncGroupRequest); ok {
				g.reply(m.waiting, errResponse(m.waiting.req, kerr.RebalanceInProgress.Code), m)
			}
		}
	}
	g.state = groupPreparingRebalance
	g.clearPendingSync()
	if g.nJoining >= len(g.members) {
		g.completeRebalance()
		return
	}
	if g.tRebalance != nil {
		g.tRebalance.Stop()
	}
	gen := g.generation
	g.tRebalance = g.after(g.maxRebalanceTimeout(), func() {
		// A timer of a rebalance that already completed must not cut
		// the next one short.
		if g.generation == gen {
			g.completeRebalance()
		}
	})
}

// completeRebalance starts the next generation with the members that
// rejoined, chooses the protocol, persists the generation (so no other node
// can run it), and answers the joins.
func (g *group) completeRebalance() {
	if g.state != groupPreparingRebalance {
		return
	}
	if g.tRebalance != nil {
		g.tRebalance.Stop()
		g.tRebalance = nil
	}
	g.nJoining = 0
	foundLeader := false
	for _, m := range g.members {
		if m.waiting == nil {
			g.removeMember(m)
			continue
		}
		if m.id == g.leader {
			foundLeader = true
		}
	}
	g.generation++
	if g.generation < 0 {
		g.generation = 1
	}
	if len(g.members) == 0 {
		g.state = groupEmpty
		g.leader, g.protocol = "", ""
	} else {
		g.state = groupCompletingRebalance
		g.protocol = g.chooseProtocol()
		if !foundLeader {
			ids := sortedKeys(g.members)
			g.leader = ids[0]
		}
	}
	ctx, cancel := g.storeCtx()
	err := g.write(ctx, func(s *state) {
		s.Generation = g.generation
		s.ProtocolType, s.Protocol, s.Leader = g.protocolType, g.protocol, g.leader
		s.Members = s.Members[:0]
		for _, id := range sortedKeys(g.members) {
			m := g.members[id]
			sm := storedMember{ID: m.id, Client: m.client, Host: m.host}
			if m.instance != nil {
				sm.Instance = *m.instance
			}
			s.Members = append(s.Members, sm)
		}
	})
	cancel()
	if err != nil {
		// The generation is not in the bucket, so no member may run it.
		g.m.opts.Logger.Warn("persist group generation", "group", g.name, "generation", g.generation, "err", err)
		g.drop(errCode(err))
		return
	}
	if g.state == groupEmpty {
		return
	}
	g.pendingSync = make(map[string]struct{}, len(g.members))
	for _, m := range g.members {
		g.pendingSync[m.id] = struct{}{}
		resp := m.waiting.req.ResponseKind().(*kmsg.JoinGroupResponse)
		g.fillJoinResp(m.id, resp)
		g.reply(m.waiting, resp, m)
	}
	gen := g.generation
	g.tPendingSync = g.after(g.maxRebalanceTimeout(), func() {
		if g.generation != gen || len(g.pendingSync) == 0 {
			return
		}
		for id := range g.pendingSync {
			if m := g.members[id]; m != nil {
				g.removeMember(m)
			}
		}
		g.pendingSync = nil
		g.rebalance()
	})
}

// chooseProtocol is Kafka's vote: among the protocols every member
// supports, each member votes for the first it lists; most votes wins, ties
// to the name that sorts first.
func (g *group) chooseProtocol() string {
	votes := map[string]int{}
	for _, m := range g.members {
		for _, p := range m.join.Protocols {
			if g.protocols[p.Name] == len(g.members) {
				votes[p.Name]++
				break
			}
		}
	}
	best, bestVotes := "", 0
	for _, p := range sortedKeys(votes) {
		if votes[p] > bestVotes {
			best, bestVotes = p, votes[p]
		}
	}
	return best
}

func (g *group) completeLeaderSync(req *kmsg.SyncGroupRequest) {
	for _, m := range g.members {
		m.assignment = nil
	}
	for _, a := range req.GroupAssignment {
		if m, ok := g.members[a.MemberID]; ok {
			m.assignment = a.MemberAssignment
		}
	}
	for _, m := range g.members {
		if len(m.assignment) == 0 && g.protocolType == "consumer" {
			// Followers must always get a decodable assignment.
			m.assignment = emptyConsumerAssignment()
		}
		if m.waiting == nil {
			continue
		}
		resp := m.waiting.req.ResponseKind().(*kmsg.SyncGroupResponse)
		resp.ProtocolType = kmsg.StringPtr(g.protocolType)
		resp.Protocol = kmsg.StringPtr(g.protocol)
		resp.MemberAssignment = m.assignment
		g.reply(m.waiting, resp, m)
	}
	g.state = groupStable
	g.clearPendingSync()
}

func emptyConsumerAssignment() []byte {
	a := kmsg.NewConsumerMemberAssignment()
	return a.AppendTo(nil)
}

func (g *group) clearPendingSync() {
	g.pendingSync = nil
	if g.tPendingSync != nil {
		g.tPendingSync.Stop()
		g.tPendingSync = nil
	}
}

func (g *group) updateHeartbeat(m *member) {
	if m.t != nil {
		m.t.Stop()
	}
	m.t = g.after(time.Duration(m.join.SessionTimeoutMillis)*time.Millisecond, func() {
		// A timer that fired cannot be retracted; the member may be
		// gone or replaced since.
		if g.members[m.id] == m {
			g.m.opts.Logger.Info("group member session expired", "group", g.name, "member", m.id)
			g.updateMemberAndRebalance(m, nil, nil)
		}
	})
}

func (g *group) addPending(m *member) {
	g.pending[m.id] = m
	m.t = g.after(time.Duration(m.join.SessionTimeoutMillis)*time.Millisecond, func() {
		if g.pending[m.id] == m {
			delete(g.pending, m.id)
		}
	})
}

func (g *group) stopPending(m *member) {
	delete(g.pending, m.id)
	if m.t != nil {
		m.t.Stop()
	}
}

func (g *group) maxRebalanceTimeout() time.Duration {
	var max int32
	for _, m := range g.members {
		max = maxOf(max, m.join.RebalanceTimeoutMillis)
	}
	return time.Duration(max) * time.Millisecond
}

func maxOf(a, b int32) int32 {
	if a > b {
		return a
	}
	return b
}

// removeMember removes m without starting a rebalance.
func (g *group) removeMember(m *member) {
	for _, p := range m.join.Protocols {
		g.protocols[p.Name]--
	}
	delete(g.members, m.id)
	if m.instance != nil && g.static[*m.instance] == m.id {
		delete(g.static, *m.instance)
	}
	if m.t != nil {
		m.t.Stop()
	}
	if m.waiting != nil {
		g.nJoining--
	}
}

func (g *group) validateInstanceID(instance *string, memberID string) *kerr.Error {
	if instance == nil {
		return nil
	}
	id, ok := g.static[*instance]
	if !ok {
		return kerr.UnknownMemberID
	}
	if id != memberID {
		return kerr.FencedInstanceID
	}
	return nil
}

// updateMemberAndRebalance updates m from a new join, or removes it when
// join is nil, and rebalances.
func (g *group) updateMemberAndRebalance(m *member, w *waiter, join *kmsg.JoinGroupRequest) {
	if join != nil {
		for _, p := range m.join.Protocols {
			g.protocols[p.Name]--
		}
		m.join = join
		for _, p := range m.join.Protocols {
			g.protocols[p.Name]++
		}
		if m.waiting == nil && w != nil {
			g.nJoining++
		}
		m.waiting = w
	} else {
		g.removeMember(m)
	}
	g.rebalance()
}

func (g *group) addMemberAndRebalance(m *member, w *waiter, join *kmsg.JoinGroupRequest) {
	g.stopPending(m)
	m.join = join
	for _, p := range join.Protocols {
		g.protocols[p.Name]++
	}
	g.members[m.id] = m
	g.nJoining++
	m.waiting = w
	g.rebalance()
}

func (g *group) protocolsMatch(protocolType string, protocols []kmsg.JoinGroupRequestProtocol) bool {
	if protocolType == "" || len(protocols) == 0 {
		return false
	}
	if len(g.members) == 0 && len(g.pending) == 0 {
		// An empty group takes the protocol type of whoever joins.
		g.protocolType = protocolType
		return true
	}
	if g.protocolType == "" {
		g.protocolType = protocolType
	}
	if protocolType != g.protocolType {
		return false
	}
	if len(g.members) == 0 {
		return true
	}
	for _, p := range protocols {
		if g.protocols[p.Name] == len(g.members) {
			return true
		}
	}
	return false
}

func (m *member) sameJoin(req *kmsg.JoinGroupRequest) bool {
	if len(m.join.Protocols) != len(req.Protocols) {
		return false
	}
	for i := range m.join.Protocols {
		if m.join.Protocols[i].Name != req.Protocols[i].Name || !bytes.Equal(m.join.Protocols[i].Metadata, req.Protocols[i].Metadata) {
			return false
		}
	}
	return true
}

func (g *group) fillJoinResp(id string, resp *kmsg.JoinGroupResponse) {
	resp.Generation = g.generation
	resp.ProtocolType = kmsg.StringPtr(g.protocolType)
	resp.Protocol = kmsg.StringPtr(g.protocol)
	resp.LeaderID = g.leader
	resp.MemberID = id
	if g.leader == id {
		ids := sortedKeys(g.members)
		sort.Strings(ids)
		for _, mid := range ids {
			m := g.members[mid]
			for _, p := range m.join.Protocols {
				if p.Name == g.protocol {
					resp.Members = append(resp.Members, kmsg.JoinGroupResponseMember{MemberID: m.id, InstanceID: m.instance, ProtocolMetadata: p.Metadata})
					break
				}
			}
		}
	}
}
