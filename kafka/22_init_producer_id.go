package kafka

import (
	"context"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// InitProducerId: v0-5, idempotent producers only. The id comes from the
// node's block of ids reserved in the commit log (manifest.Log.ProducerID:
// one commit per thousand ids, never reused across nodes or restarts) and
// the epoch is 0, as Kafka gives a producer without a transactional id. A
// producer that asks again (after UNKNOWN_PRODUCER_ID, say) gets a new id.
// Transactions are not served: a transactional id is refused.

func init() { regKey(22, 0, 5, handleInitProducerID) }

func handleInitProducerID(s *Server, _ *conn, kreq kmsg.Request) (func() kmsg.Response, error) {
	req := kreq.(*kmsg.InitProducerIDRequest)
	resp := req.ResponseKind().(*kmsg.InitProducerIDResponse)
	resp.ProducerID, resp.ProducerEpoch = -1, -1
	if req.TransactionalID != nil {
		resp.ErrorCode = kerr.TransactionalIDAuthorizationFailed.Code
		return now(resp), nil
	}
	ctx, cancel := context.WithTimeout(s.ctx, s.node.Opts.StoreTimeout)
	defer cancel()
	id, err := s.node.Log.ProducerID(ctx)
	if err != nil {
		s.logger.Warn("kafka: allocate producer id", "err", err)
		resp.ErrorCode = kerr.CoordinatorNotAvailable.Code
		return now(resp), nil
	}
	resp.ProducerID, resp.ProducerEpoch = id, 0
	return now(resp), nil
}
