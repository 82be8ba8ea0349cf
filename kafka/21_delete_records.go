package kafka

import (
	"context"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/shalelog/shale/tier/manifest"
)

// DeleteRecords: v0-2. Advances each partition's start offset (its low
// watermark) to the offset given, -1 meaning the high watermark
// (manifest.Log.Trim: one commit for the request's partitions).
// The start never goes back: an offset below it changes nothing and
// answers the current one. An offset past the end is OFFSET_OUT_OF_RANGE.
// From then on Fetch refuses offsets below the start with
// OFFSET_OUT_OF_RANGE and ListOffsets earliest returns it. Nothing is
// deleted yet: the records stay in their objects until the compactor
// reclaims them.

func init() { regKey(21, 0, 2, handleDeleteRecords) }

func handleDeleteRecords(s *Server, _ *conn, kreq kmsg.Request) (func() kmsg.Response, error) {
	req := kreq.(*kmsg.DeleteRecordsRequest)
	resp := req.ResponseKind().(*kmsg.DeleteRecordsResponse)
	var reqs []manifest.TrimRequest
	for _, rt := range req.Topics {
		for _, rp := range rt.Partitions {
			off := rp.Offset
			if off == -1 {
				off = manifest.TrimToEnd
			}
			reqs = append(reqs, manifest.TrimRequest{Topic: rt.Topic, Partition: rp.Partition, Offset: off})
		}
	}
	ctx, cancel := context.WithTimeout(s.ctx, s.node.Opts.StoreTimeout)
	res, err := s.node.Log.Trim(ctx, reqs)
	cancel()
	i := 0
	for _, rt := range req.Topics {
		st := kmsg.NewDeleteRecordsResponseTopic()
		st.Topic = rt.Topic
		for _, rp := range rt.Partitions {
			sp := kmsg.NewDeleteRecordsResponseTopicPartition()
			sp.Partition, sp.LowWatermark = rp.Partition, -1
			switch {
			case err != nil:
				sp.ErrorCode = code(err)
			case res[i].Err != nil:
				sp.ErrorCode = code(res[i].Err)
			default:
				sp.LowWatermark = res[i].Start
			}
			i++
			st.Partitions = append(st.Partitions, sp)
		}
		resp.Topics = append(resp.Topics, st)
	}
	return now(resp), nil
}
