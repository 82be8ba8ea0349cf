package group

import (
	"context"
	"errors"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

type tp struct {
	topic     string
	partition int32
}

// commitBatch is the offsets of the commits that share one PUT. done closes
// when the PUT returned; err is its outcome.
type commitBatch struct {
	offsets map[tp]storedOffset
	done    chan struct{}
	err     error
}

func (b *commitBatch) finish(err error) {
	b.err = err
	close(b.done)
}

// batchFor returns the batch the next flush writes, scheduling the flush
// CommitLinger from now if none is due.
func (g *group) batchFor() *commitBatch {
	if g.batch == nil {
		g.batch = &commitBatch{offsets: map[tp]storedOffset{}, done: make(chan struct{})}
		g.after(g.m.opts.CommitLinger, g.flush)
	}
	return g.batch
}

// flush writes the pending batch in one conditional PUT. It runs with g.mu
// held, so commits that arrive meanwhile wait for the lock and then start
// the next batch: one PUT in flight per group.
func (g *group) flush() {
	b := g.batch
	if b == nil {
		return
	}
	g.batch = nil
	ctx, cancel := g.storeCtx()
	defer cancel()
	err := g.write(ctx, func(s *state) {
		for k, o := range b.offsets {
			s.setOffset(k.topic, k.partition, o)
		}
	})
	b.finish(err)
	if errors.Is(err, ErrNotCoordinator) {
		g.drop(kerr.NotCoordinator.Code)
	}
}

func (mg *Manager) offsetCommit(ctx context.Context, req *kmsg.OffsetCommitRequest) (kmsg.Response, error) {
	resp := req.ResponseKind().(*kmsg.OffsetCommitResponse)
	fill := func(code func(topic string, partition int32) int16) {
		resp.Topics = resp.Topics[:0]
		for _, t := range req.Topics {
			rt := kmsg.NewOffsetCommitResponseTopic()
			rt.Topic = t.Topic
			for _, p := range t.Partitions {
				rp := kmsg.NewOffsetCommitResponseTopicPartition()
				rp.Partition = p.Partition
				rp.ErrorCode = code(t.Topic, p.Partition)
				rt.Partitions = append(rt.Partitions, rp)
			}
			resp.Topics = append(resp.Topics, rt)
		}
	}
	all := func(c int16) func(string, int32) int16 { return func(string, int32) int16 { return c } }

	g, err := mg.getGroup(ctx, req.Group)
	if err != nil {
		fill(all(errCode(err)))
		return resp, nil
	}
	if e := g.validateInstanceID(req.InstanceID, req.MemberID); e != nil {
		g.mu.Unlock()
		fill(all(e.Code))
		return resp, nil
	}
	var m *member
	if len(g.members) > 0 {
		var ok bool
		if m, ok = g.members[req.MemberID]; !ok {
			g.mu.Unlock()
			fill(all(kerr.UnknownMemberID.Code))
			return resp, nil
		}
		if req.Generation != g.generation {
			g.mu.Unlock()
			fill(all(kerr.IllegalGeneration.Code))
			return resp, nil
		}
	} else if req.Generation >= 0 {
		// An empty group takes only simple commits (generation -1), such
		// as an admin's; a member of a generation this node never ran (of
		// the previous coordinator) must rejoin first.
		g.mu.Unlock()
		fill(all(kerr.IllegalGeneration.Code))
		return resp, nil
	}
	if g.state == groupCompletingRebalance {
		g.updateHeartbeat(m)
		g.mu.Unlock()
		fill(all(kerr.RebalanceInProgress.Code))
		return resp, nil
	}
	now := mg.opts.Now().UnixMilli()
	codes := map[tp]int16{}
	var b *commitBatch
	for _, t := range req.Topics {
		for _, p := range t.Partitions {
			md := ""
			if p.Metadata != nil {
				md = *p.Metadata
			}
			if len(md) > maxMetadata {
				codes[tp{t.Topic, p.Partition}] = kerr.OffsetMetadataTooLarge.Code
				continue
			}
			if p.Offset < -1 || p.Partition < 0 {
				codes[tp{t.Topic, p.Partition}] = kerr.InvalidCommitOffsetSize.Code
				continue
			}
			b = g.batchFor()
			b.offsets[tp{t.Topic, p.Partition}] = storedOffset{Offset: p.Offset, LeaderEpoch: p.LeaderEpoch, Metadata: md, Time: now}
		}
	}
	if m != nil {
		g.updateHeartbeat(m)
	}
	g.mu.Unlock()
	var code int16
	if b != nil {
		select {
		case <-b.done:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		code = errCode(b.err)
	}
	fill(func(topic string, partition int32) int16 {
		if c, ok := codes[tp{topic, partition}]; ok {
			return c
		}
		return code
	})
	return resp, nil
}

// fetchedPartition is one partition of an OffsetFetch answer.
type fetchedPartition struct {
	partition int32
	o         storedOffset
}

// fetchOffsets reads a group's committed offsets for OffsetFetch: of the
// given topics and partitions, or all when topics is nil. A partition
// without a commit has offset -1.
func (mg *Manager) fetchOffsets(ctx context.Context, name string, topics map[string][]int32, all bool) (order []string, out map[string][]fetchedPartition, code int16) {
	g, err := mg.getGroup(ctx, name)
	if err != nil {
		return nil, nil, errCode(err)
	}
	defer g.mu.Unlock()
	out = map[string][]fetchedPartition{}
	if all {
		for _, t := range sortedKeys(g.st.Offsets) {
			order = append(order, t)
			for _, p := range sortedPartitions(g.st.Offsets[t]) {
				out[t] = append(out[t], fetchedPartition{p, g.st.Offsets[t][p]})
			}
		}
		return order, out, 0
	}
	for _, t := range sortedKeys(topics) {
		order = append(order, t)
		for _, p := range topics[t] {
			o, ok := g.st.Offsets[t][p]
			if !ok {
				o = storedOffset{Offset: -1, LeaderEpoch: -1}
			}
			out[t] = append(out[t], fetchedPartition{p, o})
		}
	}
	return order, out, 0
}

func (mg *Manager) offsetFetch(ctx context.Context, req *kmsg.OffsetFetchRequest) kmsg.Response {
	resp := req.ResponseKind().(*kmsg.OffsetFetchResponse)
	if req.Version >= 8 {
		for _, rg := range req.Groups {
			topics := map[string][]int32{}
			for _, t := range rg.Topics {
				topics[t.Topic] = append(topics[t.Topic], t.Partitions...)
			}
			order, out, code := mg.fetchOffsets(ctx, rg.Group, topics, rg.Topics == nil)
			sg := kmsg.NewOffsetFetchResponseGroup()
			sg.Group, sg.ErrorCode = rg.Group, code
			for _, t := range order {
				st := kmsg.NewOffsetFetchResponseGroupTopic()
				st.Topic = t
				for _, f := range out[t] {
					sp := kmsg.NewOffsetFetchResponseGroupTopicPartition()
					sp.Partition, sp.Offset, sp.LeaderEpoch = f.partition, f.o.Offset, f.o.LeaderEpoch
					sp.Metadata = kmsg.StringPtr(f.o.Metadata)
					st.Partitions = append(st.Partitions, sp)
				}
				sg.Topics = append(sg.Topics, st)
			}
			resp.Groups = append(resp.Groups, sg)
		}
		return resp
	}
	topics := map[string][]int32{}
	for _, t := range req.Topics {
		topics[t.Topic] = append(topics[t.Topic], t.Partitions...)
	}
	order, out, code := mg.fetchOffsets(ctx, req.Group, topics, req.Topics == nil)
	resp.ErrorCode = code
	if code != 0 && req.Version < 2 {
		// v0 and v1 have no group error: it goes on every partition.
		for _, t := range req.Topics {
			st := kmsg.NewOffsetFetchResponseTopic()
			st.Topic = t.Topic
			for _, p := range t.Partitions {
				sp := kmsg.NewOffsetFetchResponseTopicPartition()
				sp.Partition, sp.Offset, sp.ErrorCode = p, -1, code
				st.Partitions = append(st.Partitions, sp)
			}
			resp.Topics = append(resp.Topics, st)
		}
		return resp
	}
	for _, t := range order {
		st := kmsg.NewOffsetFetchResponseTopic()
		st.Topic = t
		for _, f := range out[t] {
			sp := kmsg.NewOffsetFetchResponseTopicPartition()
			sp.Partition, sp.Offset, sp.LeaderEpoch = f.partition, f.o.Offset, f.o.LeaderEpoch
			sp.Metadata = kmsg.StringPtr(f.o.Metadata)
			st.Partitions = append(st.Partitions, sp)
		}
		resp.Topics = append(resp.Topics, st)
	}
	return resp
}

func sortedPartitions(m map[int32]storedOffset) []int32 {
	ps := make([]int32, 0, len(m))
	for p := range m {
		ps = append(ps, p)
	}
	for i := 1; i < len(ps); i++ {
		for j := i; j > 0 && ps[j] < ps[j-1]; j-- {
			ps[j], ps[j-1] = ps[j-1], ps[j]
		}
	}
	return ps
}

// subscribed returns the topics the group's members subscribe to, from
// their consumer protocol metadata; nil for a group of another protocol
// type.
func (g *group) subscribed() map[string]bool {
	if g.protocolType != "consumer" {
		return nil
	}
	out := map[string]bool{}
	for _, m := range g.members {
		for _, p := range m.join.Protocols {
			if g.protocol != "" && p.Name != g.protocol {
				continue
			}
			var md kmsg.ConsumerMemberMetadata
			if md.ReadFrom(p.Metadata) == nil {
				for _, t := range md.Topics {
					out[t] = true
				}
			}
			break
		}
	}
	return out
}

func (mg *Manager) offsetDelete(ctx context.Context, req *kmsg.OffsetDeleteRequest) kmsg.Response {
	resp := req.ResponseKind().(*kmsg.OffsetDeleteResponse)
	g, err := mg.getGroup(ctx, req.Group)
	if err != nil {
		resp.ErrorCode = errCode(err)
		return resp
	}
	defer g.mu.Unlock()
	if g.etag == "" {
		resp.ErrorCode = kerr.GroupIDNotFound.Code
		return resp
	}
	sub := g.subscribed()
	var del []tp
	for _, t := range req.Topics {
		rt := kmsg.NewOffsetDeleteResponseTopic()
		rt.Topic = t.Topic
		for _, p := range t.Partitions {
			rp := kmsg.NewOffsetDeleteResponseTopicPartition()
			rp.Partition = p.Partition
			if sub[t.Topic] {
				rp.ErrorCode = kerr.GroupSubscribedToTopic.Code
			} else {
				del = append(del, tp{t.Topic, p.Partition})
			}
			rt.Partitions = append(rt.Partitions, rp)
		}
		resp.Topics = append(resp.Topics, rt)
	}
	if len(del) == 0 {
		return resp
	}
	wctx, cancel := context.WithTimeout(ctx, mg.opts.StoreTimeout)
	defer cancel()
	err = g.write(wctx, func(s *state) {
		for _, k := range del {
			s.deleteOffset(k.topic, k.partition)
		}
	})
	if err != nil {
		resp.ErrorCode, resp.Topics = errCode(err), nil
		if errors.Is(err, ErrNotCoordinator) {
			g.drop(kerr.NotCoordinator.Code)
		}
	}
	return resp
}
