package manifest

// FormatVersion is the newest version of commit records and checkpoints
// this code reads. It writes version 1 unless a record or checkpoint holds
// idempotent producer state (version 2) or a record uses a topic admin
// operation (add_partitions, set_topic_config, trim: version 3), so nodes
// of an older build keep following the log until the newer feature is
// used, and then stop at the first record they cannot judge instead of
// judging it differently (docs/format/manifest.md, "Versioning").
const FormatVersion = 3

// pageVersion and pointerVersion are the versions of index pages and the
// checkpoint pointer, whose layouts have not changed since version 1.
const (
	pageVersion    = 1
	pointerVersion = 1
)

// commitVersion is the version a record of ops is written with: 3 if it
// uses a topic admin operation, else 2 if it uses producer operations or
// fields, else 1.
func commitVersion(ops []Op) int {
	v := 1
	for _, op := range ops {
		if op.AddPartitions != nil || op.SetTopicConfig != nil || op.Trim != nil {
			return 3
		}
		if op.ProducerIDs != nil || op.ProducerLimits != nil {
			v = 2
		}
		if op.Append != nil {
			for _, p := range op.Append.Parts {
				if len(p.Producers) > 0 {
					v = 2
				}
			}
		}
	}
	return v
}

// downgrade drops what a record of version c.Version cannot hold: a node
// of a build that reads only that version ignores these fields, so this
// one must too (an element left with no operation makes the record
// invalid there and here alike).
func (c *Commit) downgrade() {
	for i := range c.Ops {
		op := &c.Ops[i]
		if c.Version < 3 {
			op.AddPartitions, op.SetTopicConfig, op.Trim = nil, nil, nil
		}
		if c.Version >= 2 {
			continue
		}
		op.ProducerIDs, op.ProducerLimits = nil, nil
		if op.Append != nil {
			for j := range op.Append.Parts {
				op.Append.Parts[j].Producers = nil
			}
		}
	}
}

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
	// AddPartitions grows a topic (version 3).
	AddPartitions *AddPartitionsOp `json:"add_partitions,omitempty"`
	// SetTopicConfig replaces a topic's retention (version 3).
	SetTopicConfig *TopicConfigOp `json:"set_topic_config,omitempty"`
	// Trim advances a partition's start offset (version 3).
	Trim *TrimOp `json:"trim,omitempty"`
}

// AddPartitionsOp grows a topic incarnation to Partitions partitions; the
// new ones start empty at offset 0.
type AddPartitionsOp struct {
	Name       string `json:"name"`
	ID         string `json:"id"`
	Partitions int32  `json:"partitions"` // the new total, more than the current count
}

// TopicConfigOp sets a topic incarnation's retention.
type TopicConfigOp struct {
	Name      string    `json:"name"`
	ID        string    `json:"id"`
	Retention Retention `json:"retention"`
}

// TrimOp advances a partition's start offset (Kafka's low watermark):
// offsets below Start are no longer served. Nothing is deleted: the
// compactor reclaims the bytes later.
type TrimOp struct {
	Topic     string `json:"topic"`
	TopicID   string `json:"topic_id"`
	Partition int32  `json:"partition"`
	Start     int64  `json:"start"`
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
