package kafka

import (
	"context"
	"sync"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/shalelog/shale/ingest"
	"github.com/shalelog/shale/record"
)

// Produce: v3-9 (magic 2 record batches).
//
// acks 0, 1 and -1 all mean "committed in the bucket": every append waits
// for its commit; acks=0 only sends no answer. Order: Kafka keeps the
// batches one connection sends to a partition in order, and an idempotent
// producer's pipelined batches must arrive in sequence. The ordered part of
// the handler, which the connection runs in request order, enters each
// partition's records into the hot segment (ingest.Writer.Enqueue, which
// keeps entry order through the commit); the returned function waits for
// the commits. So a produce waiting ~300 ms for its commit holds up
// neither the requests behind it nor the next batch of the same partition.
//
// A batch with a producer id (InitProducerId, 22_init_producer_id.go) is
// an idempotent producer's: ingest commits it at most once per sequence
// across every node, and a retry gets its original offsets.

func init() { regKey(0, 3, 9, handleProduce) }

func handleProduce(s *Server, cc *conn, kreq kmsg.Request) (func() kmsg.Response, error) {
	req := kreq.(*kmsg.ProduceRequest)
	resp := req.ResponseKind().(*kmsg.ProduceResponse)
	resp.Topics = make([]kmsg.ProduceResponseTopic, len(req.Topics))
	for i, rt := range req.Topics {
		st := &resp.Topics[i]
		*st = kmsg.NewProduceResponseTopic()
		st.Topic = rt.Topic
		st.Partitions = make([]kmsg.ProduceResponseTopicPartition, len(rt.Partitions))
		for j, rp := range rt.Partitions {
			sp := &st.Partitions[j]
			*sp = kmsg.NewProduceResponseTopicPartition()
			sp.Partition = rp.Partition
			sp.BaseOffset = -1
			sp.LogAppendTime = -1
			sp.LogStartOffset = -1
		}
	}
	var wg sync.WaitGroup
	for i, rt := range req.Topics {
		for j, rp := range rt.Partitions {
			sp := &resp.Topics[i].Partitions[j]
			recs, pb, err := decodeBatchesLimit(rp.Records, max(maxDecompressed, 2*s.node.Opts.MaxBatchBytes))
			if err != nil {
				sp.ErrorCode, sp.ErrorMessage = code(err), errMsg(err)
				continue
			}
			ack, err := s.enqueue(rt.Topic, rp.Partition, recs, pb)
			if err != nil {
				sp.ErrorCode, sp.ErrorMessage = code(err), errMsg(err)
				continue
			}
			wg.Go(func() {
				// Not the server's context: a record handed to ingest is
				// committed even if the server is closing, and its producer
				// should hear so while the connection lasts. Ingest answers
				// every append within its store timeout.
				base, err := ack.Wait(context.WithoutCancel(s.ctx))
				if err != nil {
					sp.ErrorCode, sp.ErrorMessage = code(err), errMsg(err)
					return
				}
				sp.BaseOffset = base
			})
		}
	}
	return func() kmsg.Response {
		wg.Wait()
		if req.Acks == 0 {
			return nil
		}
		return resp
	}, nil
}

// enqueue enters recs into the hot segment, waiting at most the store
// timeout for room (then ErrBackpressure). pb.ID < 0 is a producer without
// idempotence.
func (s *Server) enqueue(topic string, partition int32, recs []record.Record, pb producerBatch) (*ingest.Ack, error) {
	ctx, cancel := context.WithTimeout(s.ctx, s.node.Opts.StoreTimeout)
	defer cancel()
	var prod *ingest.Producer
	if pb.ID >= 0 {
		prod = &ingest.Producer{ID: pb.ID, Epoch: pb.Epoch, Seq: pb.Sequence}
	}
	return s.node.Ingest.Enqueue(ctx, topic, partition, recs, prod)
}
