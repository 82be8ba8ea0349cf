package kafka

import (
	"context"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/shalelog/shale"
	"github.com/shalelog/shale/group"
)

// Consumer groups: FindCoordinator, JoinGroup, SyncGroup, Heartbeat,
// LeaveGroup, OffsetCommit, OffsetFetch, ListGroups, DescribeGroups,
// DeleteGroups and OffsetDelete are served by package group, which keeps
// each group's state in one fenced object in the bucket and picks its
// coordinator among the live members (docs/design.md, "Consumer groups").
// JoinGroup and SyncGroup block until their rebalance completes, so every
// group request runs in the handler's waiting part: the connection goes on
// reading, and answers stay in request order.

func init() {
	for key, max := range group.MaxVersions() {
		regKey(key, 0, min(max, kmsg.RequestForKey(key).MaxVersion()), handleGroup)
	}
}

func handleGroup(s *Server, cc *conn, req kmsg.Request) (func() kmsg.Response, error) {
	ctx := group.WithClient(s.ctx, group.Client{ID: cc.clientID, Host: cc.addr})
	return func() kmsg.Response {
		resp, err := s.groups.Handle(ctx, req)
		if err != nil {
			// A closing server (or a request Handle does not serve):
			// close the connection, as Kafka does, so the client goes
			// to another node.
			s.logger.Warn("kafka: group request", "key", kmsg.NameForKey(req.Key()), "client", cc.addr, "err", err)
			cc.c.Close()
			return nil
		}
		return resp
	}, nil
}

// NewGroups returns the group manager of node over its membership m, for
// the Kafka front end and the others (HTTP) to share. The caller closes it.
func NewGroups(node *shale.Node, m *shale.Members) *group.Manager {
	gopts := group.DefaultOptions()
	gopts.Members = groupMembers{m}
	if node.Opts.Logger != nil {
		gopts.Logger = node.Opts.Logger
	}
	gopts.StoreTimeout = node.Opts.StoreTimeout
	return group.New(node.Store, gopts)
}

// groupMembers adapts the node membership to what package group needs:
// node names, and the broker id and address FindCoordinator answers with.
type groupMembers struct{ m *shale.Members }

func (g groupMembers) Self() string { return g.m.Self().Name }

func (g groupMembers) Live(ctx context.Context) ([]string, error) {
	ms, err := g.m.Live(ctx)
	names := make([]string, len(ms))
	for i, m := range ms {
		names[i] = m.Name
	}
	return names, err
}

func (g groupMembers) Addr(node string) (int32, string, int32, bool) {
	ms, _ := g.m.Live(context.Background()) // cached for half an interval
	for _, m := range ms {
		if m.Name == node {
			host, port, err := splitHostPort(m.Addr)
			if err != nil {
				return 0, "", 0, false
			}
			return m.ID, host, port, true
		}
	}
	return 0, "", 0, false
}
