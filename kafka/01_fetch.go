package kafka

import (
	"context"
	"errors"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/shalelog/shale/reader"
	"github.com/shalelog/shale/tier/manifest"
)

// Fetch: v4-12.
//
// Partitions are read in request order through the node's merged reader
// (hot segments, cache, objects), each up to its partition max bytes and
// all within the request's max bytes (the first non-empty partition is
// returned whole even past it, as Kafka does). Records go back as one
// uncompressed record batch per partition read, rebuilt from shale's
// records with their offsets, timestamps, keys and headers. When the
// result is below min bytes and nothing failed, the request long-polls
// the commit log (from this node or any other) up to max wait, then reads
// once more. No fetch sessions: the session id answered is 0, so clients
// send full fetches. Isolation levels are equal: there are no
// transactions, so the last stable offset is the high watermark.

func init() { regKey(1, 4, 12, handleFetch) }

// maxFetchWait bounds a fetch's long-poll whatever the client asks.
const maxFetchWait = 30 * time.Second

// maxFetchRecords bounds the records of one partition in one fetch.
const maxFetchRecords = 10000

func handleFetch(s *Server, _ *conn, kreq kmsg.Request) (func() kmsg.Response, error) {
	req := kreq.(*kmsg.FetchRequest)
	wait := min(time.Duration(max(req.MaxWaitMillis, 0))*time.Millisecond, maxFetchWait)
	deadline := time.Now().Add(wait)
	if req.SessionID != 0 {
		resp := req.ResponseKind().(*kmsg.FetchResponse)
		resp.ErrorCode = kerr.FetchSessionIDNotFound.Code
		return now(resp), nil
	}
	resp, n, failed := s.fetchOnce(req)
	if n < int(req.MinBytes) && !failed && wait > 0 {
		ctx, cancel := context.WithDeadline(s.ctx, deadline)
		got := s.node.Log.Wait(ctx, func(st *manifest.State) bool { return anyNew(st, req) })
		cancel()
		if got {
			resp, _, _ = s.fetchOnce(req)
		}
	}
	return now(resp), nil
}

// anyNew reports whether any fetched partition has records past its fetch
// offset, or changed in a way that makes the fetch answer at once.
func anyNew(st *manifest.State, req *kmsg.FetchRequest) bool {
	for _, rt := range req.Topics {
		ts, ok := st.Topics[rt.Topic]
		if !ok {
			return true
		}
		for _, rp := range rt.Partitions {
			if rp.Partition < 0 || int(rp.Partition) >= len(ts.Parts) {
				return true
			}
			if p := ts.Parts[rp.Partition]; p.End > rp.FetchOffset || p.Start > rp.FetchOffset {
				return true
			}
		}
	}
	return false
}

// fetchOnce reads every requested partition once, without waiting. It
// returns the record bytes and whether a partition failed.
func (s *Server) fetchOnce(req *kmsg.FetchRequest) (*kmsg.FetchResponse, int, bool) {
	resp := req.ResponseKind().(*kmsg.FetchResponse)
	budget := int(req.MaxBytes)
	if req.Version < 3 || budget <= 0 {
		budget = 50 << 20
	}
	total, failed := 0, false
	for _, rt := range req.Topics {
		st := kmsg.NewFetchResponseTopic()
		st.Topic = rt.Topic
		for _, rp := range rt.Partitions {
			sp := kmsg.NewFetchResponseTopicPartition()
			sp.Partition = rp.Partition
			sp.HighWatermark, sp.LastStableOffset, sp.LogStartOffset = -1, -1, -1
			sp.RecordBatches = []byte{} // not null: librdkafka rejects a null record set
			if budget-total <= 0 && total > 0 {
				// Out of bytes: answer the partition's bounds, no records.
				start, end, err := s.bounds(rt.Topic, rp.Partition)
				if err != nil {
					sp.ErrorCode, failed = code(err), true
				} else {
					sp.HighWatermark, sp.LastStableOffset, sp.LogStartOffset = end, end, start
				}
				st.Partitions = append(st.Partitions, sp)
				continue
			}
			limit := int(rp.PartitionMaxBytes)
			if limit <= 0 {
				limit = 1 << 20
			}
			limit = min(limit, max(budget-total, 1))
			ctx, cancel := context.WithTimeout(s.ctx, s.node.Opts.StoreTimeout)
			res, err := s.node.Reader.Read(ctx, rt.Topic, rp.Partition, rp.FetchOffset, maxFetchRecords, limit, 0)
			if errors.Is(err, reader.ErrOffsetOutOfRange) && s.node.Log.Sync(ctx) == nil {
				// This node may not have seen the commits that made the
				// offset valid (another node took them): a client told
				// OFFSET_OUT_OF_RANGE resets its position, so look first.
				res, err = s.node.Reader.Read(ctx, rt.Topic, rp.Partition, rp.FetchOffset, maxFetchRecords, limit, 0)
			}
			cancel()
			if err != nil {
				sp.ErrorCode, failed = code(err), true
				if start, end, berr := s.bounds(rt.Topic, rp.Partition); berr == nil {
					sp.HighWatermark, sp.LastStableOffset, sp.LogStartOffset = end, end, start
				}
				if !errors.Is(err, manifest.ErrUnknownTopic) && code(err) == kerr.UnknownServerError.Code {
					s.logger.Warn("kafka fetch", "topic", rt.Topic, "partition", rp.Partition, "err", err)
				}
				st.Partitions = append(st.Partitions, sp)
				continue
			}
			sp.HighWatermark, sp.LastStableOffset, sp.LogStartOffset = res.End, res.End, res.Start
			if len(res.Records) > 0 {
				sp.RecordBatches = appendBatch(sp.RecordBatches, res.Records)
				total += len(sp.RecordBatches)
			}
			st.Partitions = append(st.Partitions, sp)
		}
		resp.Topics = append(resp.Topics, st)
	}
	return resp, total, failed
}

// bounds returns a partition's start and end offsets as this node knows
// them, catching up with the log once for a topic it does not know.
func (s *Server) bounds(topic string, partition int32) (start, end int64, err error) {
	for synced := false; ; synced = true {
		found := false
		s.node.Log.View(func(st *manifest.State) {
			ts, ok := st.Topics[topic]
			if !ok {
				return
			}
			found = true
			if partition < 0 || int(partition) >= len(ts.Parts) {
				err = manifest.ErrUnknownPartition
				return
			}
			start, end = ts.Parts[partition].Start, ts.Parts[partition].End
		})
		if found || synced {
			if !found {
				err = manifest.ErrUnknownTopic
			}
			return start, end, err
		}
		ctx, cancel := context.WithTimeout(s.ctx, s.node.Opts.StoreTimeout)
		_, terr := s.node.Log.Topic(ctx, topic)
		cancel()
		if terr != nil {
			return 0, 0, terr
		}
	}
}
