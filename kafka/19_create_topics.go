package kafka

import (
	"context"
	"fmt"
	"strconv"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/shalelog/shale/tier/manifest"
)

// CreateTopics: v0-7. Partitions -1 means 1 (Kafka's num.partitions
// default); a replica assignment gives the count by its length. The
// replication factor is accepted and ignored: the bucket is the replica.
// Configs: retention.ms and retention.bytes (-1 unlimited), and
// cleanup.policy=delete; anything else is INVALID_CONFIG. ValidateOnly
// checks without creating.

func init() { regKey(19, 0, 7, handleCreateTopics) }

func handleCreateTopics(s *Server, _ *conn, kreq kmsg.Request) (func() kmsg.Response, error) {
	req := kreq.(*kmsg.CreateTopicsRequest)
	resp := req.ResponseKind().(*kmsg.CreateTopicsResponse)
	seen := map[string]int{}
	for _, rt := range req.Topics {
		seen[rt.Topic]++
	}
	for _, rt := range req.Topics {
		st := kmsg.NewCreateTopicsResponseTopic()
		st.Topic = rt.Topic
		parts := rt.NumPartitions
		if len(rt.ReplicaAssignment) > 0 {
			parts = int32(len(rt.ReplicaAssignment))
		} else if parts == -1 {
			parts = 1
		}
		st.NumPartitions, st.ReplicationFactor = parts, 1
		ret, err := topicConfigs(rt.Configs)
		switch {
		case seen[rt.Topic] > 1:
			st.ErrorCode = kerr.InvalidRequest.Code
			st.ErrorMessage = errMsg(fmt.Errorf("topic %q named twice in one request", rt.Topic))
		case err != nil:
			st.ErrorCode, st.ErrorMessage = kerr.InvalidConfig.Code, errMsg(err)
		case manifest.ValidateTopic(rt.Topic, 1) != nil:
			err = manifest.ValidateTopic(rt.Topic, 1)
			st.ErrorCode, st.ErrorMessage = kerr.InvalidTopicException.Code, errMsg(err)
		case manifest.ValidateTopic(rt.Topic, parts) != nil:
			err = manifest.ValidateTopic(rt.Topic, parts)
			st.ErrorCode, st.ErrorMessage = kerr.InvalidPartitions.Code, errMsg(err)
		case req.ValidateOnly:
		default:
			ctx, cancel := context.WithTimeout(s.ctx, s.node.Opts.StoreTimeout)
			t, err := s.node.Log.CreateTopic(ctx, rt.Topic, parts, ret)
			cancel()
			if err != nil {
				st.ErrorCode, st.ErrorMessage = code(err), errMsg(err)
			} else {
				st.TopicID = topicID(t.ID)
				st.Configs = createdConfigs(s, t)
			}
		}
		if st.ErrorCode != 0 {
			st.NumPartitions, st.ReplicationFactor = -1, -1
		}
		resp.Topics = append(resp.Topics, st)
	}
	return now(resp), nil
}

// topicConfigs reads the configs shale keeps for a topic.
func topicConfigs(cs []kmsg.CreateTopicsRequestTopicConfig) (manifest.Retention, error) {
	ret := manifest.Retention{Ms: -1, Bytes: -1}
	for _, c := range cs {
		v := ""
		if c.Value != nil {
			v = *c.Value
		}
		switch c.Name {
		case "retention.ms", "retention.bytes":
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil || n < -1 || n == 0 {
				return ret, fmt.Errorf("%s=%q: want -1 (unlimited) or a positive integer", c.Name, v)
			}
			if c.Name == "retention.ms" {
				ret.Ms = n
			} else {
				ret.Bytes = n
			}
		case "cleanup.policy":
			if v != "delete" {
				return ret, fmt.Errorf("cleanup.policy=%q: shale topics are delete only", v)
			}
		default:
			return ret, fmt.Errorf("config %q is not supported (retention.ms, retention.bytes, cleanup.policy are)", c.Name)
		}
	}
	return ret, nil
}

func createdConfigs(s *Server, t manifest.Topic) []kmsg.CreateTopicsResponseTopicConfig {
	var out []kmsg.CreateTopicsResponseTopicConfig
	for _, c := range describeTopic(s, t) {
		rc := kmsg.NewCreateTopicsResponseTopicConfig()
		rc.Name, rc.Value, rc.ReadOnly, rc.Source = c.name, &c.value, c.readOnly, c.source
		out = append(out, rc)
	}
	return out
}
