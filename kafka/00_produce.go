package kafka

import (
	"context"
	"sync"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/shalelog/shale/record"
)

// Produce: v3-9 (magic 2 record batches).
//
// acks 0, 1 and -1 all mean "committed in the bucket": every append waits
// for its commit; acks=0 only sends no answer. Each partition's records
// are appended on their own goroutine, so one request's partitions commit
// together and the connection goes on to its next request while they
// wait. Order: Kafka keeps the batches one connection sends to a
// partition in order. ingest.Writer.Append enters a hot segment and waits
// for the commit in one call, so goroutines started in order could still
// enter the segment out of order; instead, an append waits for the
// previous append to the same partition from the same connection to
// return (conn.chains). That costs one commit round per batch per
// partition per connection, which producers hide by batching more in the
// meantime; a two-step append in ingest (enter the segment, then wait)
// would let the chain release at entry instead.
//
// InitProducerId is not served, so clients produce without idempotence
// (franz-go falls back on its own when the broker lacks it); the batch's
// producer id, epoch and base sequence are decoded and handed to append,
// the one place producer state will be checked.

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
			key := partKey{rt.Topic, rp.Partition}
			prev := cc.chains[key]
			mine := make(chan struct{})
			cc.chains[key] = mine
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer close(mine)
				if prev != nil {
					<-prev
				}
				base, err := s.append(rt.Topic, rp.Partition, recs, pb)
				if err != nil {
					sp.ErrorCode, sp.ErrorMessage = code(err), errMsg(err)
					return
				}
				sp.BaseOffset = base
			}()
		}
	}
	// Forget chains whose last append is done, so the map holds only
	// partitions with appends in flight.
	for k, ch := range cc.chains {
		select {
		case <-ch:
			delete(cc.chains, k)
		default:
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

// append commits recs to a partition. Its context is not the server's: a
// record handed to ingest is committed even if the server is closing, and
// its producer should hear so while the connection lasts.
func (s *Server) append(topic string, partition int32, recs []record.Record, _ producerBatch) (int64, error) {
	return s.node.Ingest.Append(context.WithoutCancel(s.ctx), topic, partition, recs)
}
