package manifest

// FormatVersion is the newest version of commit records and checkpoints
// this code reads. It writes version 1 unless a record or checkpoint holds
// idempotent producer state (version 2), so nodes of a build that reads
// only version 1 keep following the log until producers are used, and
// then stop at the first record they cannot judge instead of judging it
// differently (docs/format/manifest.md, "Versioning").
const FormatVersion = 2

// pageVersion and pointerVersion are the versions of index pages and the
// checkpoint pointer, whose layouts have not changed since version 1.
const (
	pageVersion    = 1
	pointerVersion = 1
)

// commitVersion is the version a record of ops is written with: 2 if it
// uses producer operations or fields, else 1.
func commitVersion(ops []Op) int {
	for _, op := range ops {
		if op.ProducerIDs != nil || op.ProducerLimits != nil {
			return 2
		}
		if op.Append != nil {
			for _, p := range op.Append.Parts {
				if len(p.Producers) > 0 {
					return 2
				}
			}
		}
	}
	return 1
}

// downgrade drops what a version 1 record cannot hold: a node of a build
// that reads only version 1 ignores these fields, so this one must too
// (an element left with no operation makes the record invalid there and
// here alike).
func (c *Commit) downgrade() {
	for i := range c.Ops {
		op := &c.Ops[i]
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
