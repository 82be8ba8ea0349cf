package kafka

import (
	"context"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// ListOffsets: v1-6. Timestamp -2 is the start offset, -1 the end offset
// (the high watermark; there are no transactions, so also the last stable
// offset), any other the first offset whose record's timestamp is at or
// after it (reader.Merge.OffsetForTime), with that record's timestamp, or
// offset -1 when there is none. v7's max-timestamp lookup (-3) is not
// served: finding it would read the whole partition.

func init() { regKey(2, 1, 6, handleListOffsets) }

func handleListOffsets(s *Server, _ *conn, kreq kmsg.Request) (func() kmsg.Response, error) {
	req := kreq.(*kmsg.ListOffsetsRequest)
	resp := req.ResponseKind().(*kmsg.ListOffsetsResponse)
	// Catch up with other nodes' commits first (one GET at the head), so
	// the end offset is the bucket's, not what this node last saw.
	ctx, cancel := context.WithTimeout(s.ctx, s.node.Opts.StoreTimeout)
	if err := s.node.Log.Sync(ctx); err != nil {
		s.logger.Warn("kafka list offsets: catch up with the commit log", "err", err)
	}
	cancel()
	for _, rt := range req.Topics {
		st := kmsg.NewListOffsetsResponseTopic()
		st.Topic = rt.Topic
		for _, rp := range rt.Partitions {
			sp := kmsg.NewListOffsetsResponseTopicPartition()
			sp.Partition = rp.Partition
			sp.Timestamp, sp.Offset, sp.LeaderEpoch = -1, -1, -1
			off, ts, err := s.listOffset(rt.Topic, rp.Partition, rp.Timestamp)
			if err != nil {
				sp.ErrorCode = code(err)
			} else {
				sp.Offset, sp.Timestamp = off, ts
			}
			st.Partitions = append(st.Partitions, sp)
		}
		resp.Topics = append(resp.Topics, st)
	}
	return now(resp), nil
}

func (s *Server) listOffset(topic string, partition int32, ts int64) (offset, recTs int64, err error) {
	start, end, err := s.bounds(topic, partition)
	if err != nil {
		return 0, 0, err
	}
	switch ts {
	case -2:
		return start, -1, nil
	case -1:
		return end, -1, nil
	}
	ctx, cancel := context.WithTimeout(s.ctx, s.node.Opts.StoreTimeout)
	defer cancel()
	off, err := s.node.Reader.OffsetForTime(ctx, topic, partition, ts)
	if err != nil {
		return 0, 0, err
	}
	res, err := s.node.Reader.Read(ctx, topic, partition, off, 1, 1, 0)
	if err != nil {
		return 0, 0, err
	}
	if len(res.Records) == 0 {
		return -1, -1, nil // no record at or after ts
	}
	return res.Records[0].Offset, res.Records[0].Timestamp, nil
}
