package kafka

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"hash/fnv"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/shalelog/shale"
	"github.com/shalelog/shale/tier/manifest"
)

// Metadata: v0-12.
//
// Brokers are the live members (shale.Members). Every node serves every
// partition; the leader Metadata names for each is picked among the live
// nodes by rendezvous hashing of (topic id, partition, node name), so all
// nodes agree given the same live set, load spreads, and only the
// partitions of a node that comes or goes move. Leader epochs are -1
// (unknown), so clients do not validate them. Topics are never created
// by Metadata (auto creation is off).

func init() { regKey(3, 0, 12, handleMetadata) }

// clusterID is the cluster id every node reports: the bucket has no id of
// its own, and clients only compare it across brokers.
const clusterID = "shale"

func handleMetadata(s *Server, _ *conn, kreq kmsg.Request) (func() kmsg.Response, error) {
	req := kreq.(*kmsg.MetadataRequest)
	resp := req.ResponseKind().(*kmsg.MetadataResponse)
	ctx, cancel := context.WithTimeout(s.ctx, s.node.Opts.StoreTimeout)
	defer cancel()
	live := s.live(ctx)
	for _, m := range live {
		b := kmsg.NewMetadataResponseBroker()
		b.NodeID = m.ID
		b.Host, b.Port, _ = splitHostPort(m.Addr)
		resp.Brokers = append(resp.Brokers, b)
	}
	id := clusterID
	resp.ClusterID = &id
	resp.ControllerID = live[0].ID

	var topics []manifest.Topic
	var missing []string
	if req.Topics == nil || (req.Version == 0 && len(req.Topics) == 0) {
		if err := s.node.Log.Sync(ctx); err != nil {
			s.logger.Warn("kafka metadata: catch up with the commit log", "err", err)
		}
		topics = s.node.Log.Topics()
	} else {
		for _, rt := range req.Topics {
			if rt.Topic == nil {
				missing = append(missing, "")
				continue
			}
			t, err := s.node.Log.Topic(ctx, *rt.Topic)
			if err != nil {
				missing = append(missing, *rt.Topic)
				continue
			}
			topics = append(topics, t)
		}
	}
	for _, name := range missing {
		rt := kmsg.NewMetadataResponseTopic()
		rt.Topic = &name
		rt.ErrorCode = kerr.UnknownTopicOrPartition.Code
		if manifest.ValidateTopic(name, 1) != nil {
			rt.ErrorCode = kerr.InvalidTopicException.Code
		}
		resp.Topics = append(resp.Topics, rt)
	}
	for _, t := range topics {
		rt := kmsg.NewMetadataResponseTopic()
		rt.Topic = &t.Name
		rt.TopicID = topicID(t.ID)
		for p := int32(0); p < t.Partitions; p++ {
			rp := kmsg.NewMetadataResponseTopicPartition()
			rp.Partition = p
			rp.Leader = leader(live, t.ID, p)
			rp.LeaderEpoch = -1
			rp.Replicas = []int32{rp.Leader}
			rp.ISR = []int32{rp.Leader}
			rt.Partitions = append(rt.Partitions, rp)
		}
		resp.Topics = append(resp.Topics, rt)
	}
	return now(resp), nil
}

// topicID is a topic's Kafka id: shale's topic id is 16 random bytes in
// hex, so it is that UUID.
func topicID(id string) [16]byte {
	var out [16]byte
	if b, err := hex.DecodeString(id); err == nil && len(b) == 16 {
		copy(out[:], b)
	} else {
		h := fnv.New128a()
		h.Write([]byte(id))
		copy(out[:], h.Sum(nil))
	}
	return out
}

// leader picks a partition's leader among live by rendezvous hashing.
func leader(live []shale.Member, topicID string, p int32) int32 {
	var best uint64
	id := live[0].ID
	for _, m := range live {
		h := fnv.New64a()
		h.Write([]byte(topicID))
		var b [4]byte
		binary.BigEndian.PutUint32(b[:], uint32(p))
		h.Write(b[:])
		h.Write([]byte(m.Name))
		if w := h.Sum64(); w > best || (w == best && m.ID < id) {
			best, id = w, m.ID
		}
	}
	return id
}
