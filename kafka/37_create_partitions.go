package kafka

import (
	"context"
	"errors"
	"fmt"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/shalelog/shale/tier/manifest"
)

// CreatePartitions: v0-3. Grows a topic to Count partitions
// (manifest.Log.AddPartitions: one add_partitions commit, so every node
// agrees); the new partitions start empty at offset 0 and existing offsets
// stay. A count not above the current one is INVALID_PARTITIONS, one past
// the cluster's partition limit POLICY_VIOLATION. Assignments are accepted
// and ignored: the bucket is the replica, and leadership is spread over
// the live nodes (Metadata). ValidateOnly checks without committing.

func init() { regKey(37, 0, 3, handleCreatePartitions) }

func handleCreatePartitions(s *Server, _ *conn, kreq kmsg.Request) (func() kmsg.Response, error) {
	req := kreq.(*kmsg.CreatePartitionsRequest)
	resp := req.ResponseKind().(*kmsg.CreatePartitionsResponse)
	seen := map[string]int{}
	for _, rt := range req.Topics {
		seen[rt.Topic]++
	}
	for _, rt := range req.Topics {
		st := kmsg.NewCreatePartitionsResponseTopic()
		st.Topic = rt.Topic
		if seen[rt.Topic] > 1 {
			st.ErrorCode = kerr.InvalidRequest.Code
			st.ErrorMessage = errMsg(fmt.Errorf("topic %q named twice in one request", rt.Topic))
			resp.Topics = append(resp.Topics, st)
			continue
		}
		ctx, cancel := context.WithTimeout(s.ctx, s.node.Opts.StoreTimeout)
		_, err := s.node.Log.AddPartitions(ctx, rt.Topic, rt.Count, req.ValidateOnly)
		cancel()
		if err != nil {
			st.ErrorCode, st.ErrorMessage = code(err), errMsg(err)
			if errors.Is(err, manifest.ErrInvalidTopic) && !errors.Is(err, manifest.ErrPartitionLimit) {
				st.ErrorCode = kerr.InvalidPartitions.Code
			}
		}
		resp.Topics = append(resp.Topics, st)
	}
	return now(resp), nil
}
