package group

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/shalelog/shale/tier"
)

// stateVersion is the version of the group state object (docs/format/groups.md).
// A decoder reads this version only; a new version is added beside it, never
// in its place, so that a node of the previous release can still refuse it
// by name instead of misreading it.
const stateVersion = 1

// maxMetadata is Kafka's offset.metadata.max.bytes default: a commit's
// metadata is refused above it (OFFSET_METADATA_TOO_LARGE).
const maxMetadata = 4096

// state is the one object a group keeps in the bucket, at
// groups/<escaped name>/state. It is replaced only with PutIfMatch (or
// created with PutIfAbsent), so every change is ordered after the one it
// read: the coordinator's claim, each generation and each batch of committed
// offsets form one chain, and a writer that read an older link loses.
type state struct {
	Version int    `json:"v"`
	Group   string `json:"group"`
	// Node and Epoch are the coordinator's claim. A node taking a group over
	// writes its own name and the previous epoch plus one; a write by the
	// previous holder then fails its ETag check and, on reading the object
	// back, it finds another claim and stops serving the group.
	Node       string `json:"node"`
	Epoch      int64  `json:"epoch"`
	Generation int32  `json:"generation"`
	// ProtocolType, Protocol, Leader and Members describe the generation as
	// it completed; they are for Describe and the refusal of SetOffsets on
	// other nodes. A new coordinator does not resume them: members rejoin.
	ProtocolType string         `json:"protocolType,omitempty"`
	Protocol     string         `json:"protocol,omitempty"`
	Leader       string         `json:"leader,omitempty"`
	Members      []storedMember `json:"members,omitempty"`
	// Offsets are the committed offsets by topic and partition.
	Offsets map[string]map[int32]storedOffset `json:"offsets,omitempty"`
	// Updated is when the object was written, in Unix milliseconds.
	Updated int64 `json:"updated"`
}

type storedMember struct {
	ID       string `json:"id"`
	Instance string `json:"instance,omitempty"`
	Client   string `json:"client,omitempty"`
	Host     string `json:"host,omitempty"`
}

type storedOffset struct {
	Offset      int64  `json:"o"`
	LeaderEpoch int32  `json:"e"`
	Metadata    string `json:"m,omitempty"`
	Time        int64  `json:"t"` // commit time, Unix milliseconds
}

func (s *state) clone() state {
	c := *s
	c.Members = append([]storedMember(nil), s.Members...)
	c.Offsets = make(map[string]map[int32]storedOffset, len(s.Offsets))
	for t, ps := range s.Offsets {
		m := make(map[int32]storedOffset, len(ps))
		for p, o := range ps {
			m[p] = o
		}
		c.Offsets[t] = m
	}
	return c
}

func (s *state) setOffset(topic string, partition int32, o storedOffset) {
	if s.Offsets == nil {
		s.Offsets = map[string]map[int32]storedOffset{}
	}
	ps := s.Offsets[topic]
	if ps == nil {
		ps = map[int32]storedOffset{}
		s.Offsets[topic] = ps
	}
	ps[partition] = o
}

func (s *state) deleteOffset(topic string, partition int32) {
	delete(s.Offsets[topic], partition)
	if len(s.Offsets[topic]) == 0 {
		delete(s.Offsets, topic)
	}
}

func encodeState(s *state) []byte {
	s.Version = stateVersion
	b, err := json.Marshal(s)
	if err != nil {
		// Every field is a plain string, number or map of them.
		panic(fmt.Sprintf("encode group state: %v", err))
	}
	return b
}

// decodeState is the pure decoder of a state object read from key. Bytes
// from the bucket are outside input: anything that is not a version-1 state
// of the group the key names is a *tier.CorruptError.
func decodeState(key, group string, b []byte) (state, error) {
	var s state
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	bad := func(err error) (state, error) {
		return state{}, &tier.CorruptError{What: "group state", Key: key, Offset: d.InputOffset(), Err: err}
	}
	if err := d.Decode(&s); err != nil {
		return bad(err)
	}
	if d.More() {
		return bad(errors.New("data after the object"))
	}
	switch {
	case s.Version != stateVersion:
		return bad(fmt.Errorf("version %d, want %d", s.Version, stateVersion))
	case s.Group != group:
		return bad(fmt.Errorf("group %q in the object of group %q", s.Group, group))
	case s.Epoch < 1:
		return bad(fmt.Errorf("claim epoch %d", s.Epoch))
	case s.Node == "":
		return bad(errors.New("claim without a node"))
	case s.Generation < 0:
		return bad(fmt.Errorf("generation %d", s.Generation))
	}
	for t, ps := range s.Offsets {
		for p, o := range ps {
			if p < 0 || o.Offset < -1 || len(o.Metadata) > maxMetadata {
				return bad(fmt.Errorf("offset %d of %s/%d", o.Offset, t, p))
			}
		}
	}
	return s, nil
}

// escape maps a group name to one path segment of a key: bytes outside
// [A-Za-z0-9_-] become %XX (including '.', '/' and '%'), so that no name
// can form "." or ".." or reach another group's key, and unescape inverts
// it exactly.
func escape(name string) string {
	var b strings.Builder
	for i := 0; i < len(name); i++ {
		c := name[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' {
			b.WriteByte(c)
			continue
		}
		fmt.Fprintf(&b, "%%%02X", c)
	}
	return b.String()
}

func unescape(s string) (string, bool) {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '%' {
			b.WriteByte(s[i])
			continue
		}
		if i+2 >= len(s) {
			return "", false
		}
		c, err := strconv.ParseUint(s[i+1:i+3], 16, 8)
		if err != nil {
			return "", false
		}
		b.WriteByte(byte(c))
		i += 2
	}
	return b.String(), true
}
