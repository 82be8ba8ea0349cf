package manifest

// FormatVersion is the version of commit records and checkpoints this code
// writes and the newest it reads.
const FormatVersion = 1

// Commit is one commit: a numbered, immutable set of operations applied
// atomically (docs/format/manifest.md).
type Commit struct {
	Version int    `json:"v"`
	Seq     int64  `json:"seq"`
	ID      string `json:"id"` // random; tells a writer whether an ambiguous write was its own
	Node    string `json:"node"`
	TimeMs  int64  `json:"time_ms"`
	Ops     []Op   `json:"ops"`
}

// Op is one operation; exactly one field is set.
type Op struct {
	CreateTopic *Topic    `json:"create_topic,omitempty"`
	DeleteTopic *TopicRef `json:"delete_topic,omitempty"`
	Append      *AppendOp `json:"append,omitempty"`
	// ProducerIDs reserves a block of producer ids for a node.
	ProducerIDs *ProducerIDsOp `json:"producer_ids,omitempty"`
	// ProducerLimits sets the cluster's producer state limits.
	ProducerLimits *ProducerLimits `json:"producer_limits,omitempty"`
}

// TopicRef names one incarnation of a topic.
type TopicRef struct {
	Name string `json:"name"`
	ID   string `json:"id"`
}

// AppendOp makes one object's records visible: each part gets offsets
// [Base, Base+Count) of its partition.
type AppendOp struct {
	Object string       `json:"object"`
	Size   int64        `json:"size"`
	Parts  []AppendPart `json:"parts"`
}

// AppendPart is one partition's share of an appended object.
type AppendPart struct {
	Topic     string `json:"topic"`
	TopicID   string `json:"topic_id"`
	Partition int32  `json:"partition"`
	Base      int64  `json:"base"`
	Span
	// Producers are the idempotent batches among the part's rows, in row
	// order; the state remembers them per producer.
	Producers []ProducerBatch `json:"producers,omitempty"`
}
