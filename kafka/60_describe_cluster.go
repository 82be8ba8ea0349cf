package kafka

import (
	"context"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// DescribeCluster: v0-1. The brokers are the live members, as in Metadata.
// v1's endpoint type must be 1 (brokers): shale has no controllers.

func init() { regKey(60, 0, 1, handleDescribeCluster) }

func handleDescribeCluster(s *Server, _ *conn, kreq kmsg.Request) (func() kmsg.Response, error) {
	req := kreq.(*kmsg.DescribeClusterRequest)
	resp := req.ResponseKind().(*kmsg.DescribeClusterResponse)
	if req.Version >= 1 && req.EndpointType != 1 {
		resp.ErrorCode = kerr.UnsupportedEndpointType.Code
		return now(resp), nil
	}
	ctx, cancel := context.WithTimeout(s.ctx, s.node.Opts.StoreTimeout)
	defer cancel()
	live := s.live(ctx)
	resp.ClusterID = clusterID
	resp.ControllerID = live[0].ID
	resp.EndpointType = 1
	for _, m := range live {
		b := kmsg.NewDescribeClusterResponseBroker()
		b.NodeID = m.ID
		b.Host, b.Port, _ = splitHostPort(m.Addr)
		resp.Brokers = append(resp.Brokers, b)
	}
	return now(resp), nil
}
