package kafka

import (
	"errors"

	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/shalelog/shale/ingest"
	"github.com/shalelog/shale/reader"
	"github.com/shalelog/shale/record"
	"github.com/shalelog/shale/tier/manifest"
)

// errCorrupt is a record batch whose CRC or framing is wrong.
var errCorrupt = errors.New("corrupt record batch")

// errUnsupportedFormat is a record batch of magic below 2, or a control or
// transactional batch, which shale does not serve.
var errUnsupportedFormat = errors.New("unsupported record batch format")

// errInvalidConfig is a config shale does not keep, or a value it refuses.
var errInvalidConfig = errors.New("invalid config")

// errInvalidRequest is a request that contradicts itself (a resource or
// config named twice).
var errInvalidRequest = errors.New("invalid request")

// code maps a node error to the Kafka error code clients act on. Store
// trouble maps to codes clients retry: NOT_ENOUGH_REPLICAS where nothing
// was written (back-pressure), REQUEST_TIMED_OUT where the records' fate
// is unknown (a store failure during the roll), NOT_LEADER_OR_FOLLOWER for
// a node shutting down, so the client refreshes its metadata and goes to
// another node.
func code(err error) int16 {
	switch {
	case err == nil:
		return 0
	case errors.Is(err, manifest.ErrUnknownTopic), errors.Is(err, manifest.ErrUnknownPartition):
		return kerr.UnknownTopicOrPartition.Code
	case errors.Is(err, reader.ErrOffsetOutOfRange), errors.Is(err, manifest.ErrOffsetOutOfRange):
		return kerr.OffsetOutOfRange.Code
	case errors.Is(err, errCorrupt):
		return kerr.CorruptMessage.Code
	case errors.Is(err, errUnsupportedFormat):
		return kerr.UnsupportedForMessageFormat.Code
	case errors.Is(err, ingest.ErrTooLarge):
		return kerr.MessageTooLarge.Code
	case errors.Is(err, record.ErrInvalid):
		return kerr.InvalidRecord.Code
	case errors.Is(err, ingest.ErrOutOfOrderSequence):
		return kerr.OutOfOrderSequenceNumber.Code
	case errors.Is(err, ingest.ErrProducerFenced):
		return kerr.InvalidProducerEpoch.Code
	case errors.Is(err, ingest.ErrUnknownProducer):
		return kerr.UnknownProducerID.Code
	case errors.Is(err, ingest.ErrInvalidProducer):
		return kerr.InvalidRecord.Code
	case errors.Is(err, ingest.ErrBackpressure), errors.Is(err, ingest.ErrRetry):
		return kerr.NotEnoughReplicas.Code
	case errors.Is(err, ingest.ErrStore):
		return kerr.RequestTimedOut.Code
	case errors.Is(err, ingest.ErrClosed), errors.Is(err, manifest.ErrClosed):
		return kerr.NotLeaderForPartition.Code
	case errors.Is(err, manifest.ErrTopicExists):
		return kerr.TopicAlreadyExists.Code
	case errors.Is(err, manifest.ErrPartitionLimit):
		return kerr.PolicyViolation.Code
	case errors.Is(err, manifest.ErrInvalidTopic):
		return kerr.InvalidTopicException.Code
	case errors.Is(err, errInvalidConfig):
		return kerr.InvalidConfig.Code
	case errors.Is(err, errInvalidRequest):
		return kerr.InvalidRequest.Code
	}
	return kerr.UnknownServerError.Code
}

// errMsg is an error's message for responses that carry one.
func errMsg(err error) *string {
	if err == nil {
		return nil
	}
	m := err.Error()
	return &m
}
