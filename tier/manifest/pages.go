package manifest

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"

	lru "github.com/hashicorp/golang-lru/v2"
)

// Index pages keep a partition's old index entries out of checkpoints and
// out of memory: a checkpoint carries one PageRef per PageEntries entries,
// and a page is read only when a read reaches that far back. Pages are
// written create-if-absent and never rewritten.
const indexPrefix = "manifest/index/"

// page is the persisted form of an index page.
type page struct {
	Version int     `json:"v"`
	Entries []Entry `json:"entries"`
}

func pageKey(topicID string, partition int, base int64) string {
	return fmt.Sprintf("%s%s/%d/%020d.json", indexPrefix, topicID, partition, base)
}

func newPageCache() *lru.Cache[string, []Entry] {
	c, _ := lru.New[string, []Entry](256)
	return c
}

// loadPage returns a page's entries, from the node's page cache or the
// store. Pages are immutable, so a cached page never goes stale.
// A page that disagrees with its reference is a *tier.CorruptError, never
// used: reads would return the wrong objects' records.
func (l *Log) loadPage(ctx context.Context, ref PageRef) ([]Entry, error) {
	if es, ok := l.pages.Get(ref.Key); ok {
		return es, nil
	}
	data, _, err := l.get(ctx, ref.Key)
	if err != nil {
		return nil, fmt.Errorf("read index page %s: %w", ref.Key, err)
	}
	es, err := decodePage(ref, data)
	if err != nil {
		return nil, err
	}
	l.pages.Add(ref.Key, es)
	return es, nil
}

// decodePage decodes the page ref points at and checks it against ref.
func decodePage(ref PageRef, data []byte) ([]Entry, error) {
	var pg page
	if err := json.Unmarshal(data, &pg); err != nil {
		return nil, corrupt("index page", ref.Key, err)
	}
	if pg.Version < 1 || pg.Version > FormatVersion {
		return nil, corrupt("index page", ref.Key, fmt.Errorf("format version %d, this build reads 1 to %d", pg.Version, FormatVersion))
	}
	if err := checkPage(ref, pg.Entries); err != nil {
		return nil, corrupt("index page", ref.Key, err)
	}
	return pg.Entries, nil
}

// sealed is one page cut from a partition's tail for a checkpoint.
type sealed struct {
	topic, topicID string // the incarnation: a re-created topic is another index
	partition      int
	ref            PageRef
	entries        []Entry
}

// snapshotSealed copies the state for a checkpoint, moving every full run
// of pageEntries tail entries into new pages, so a checkpoint holds fewer
// than pageEntries entries per partition. Page boundaries fall every
// pageEntries entries from a partition's first entry, on every node, so
// two nodes sealing the same entries write the same page. It copies partition structs
// and slice headers only (and producer maps): entries are never modified once applied, and the
// live state only appends, so the copy stays valid after the lock is
// released and can be encoded without it.
func snapshotSealed(s *State, pageEntries int) (*State, []sealed) {
	cp := &State{Seq: s.Seq, Topics: make(map[string]*TopicState, len(s.Topics)), ClockMs: s.ClockMs, NextProducerID: s.NextProducerID, ProducerLimits: s.ProducerLimits}
	var pages []sealed
	for name, t := range s.Topics {
		ct := &TopicState{Topic: t.Topic, Parts: make([]*Partition, len(t.Parts))}
		for i, p := range t.Parts {
			c := *p
			c.Pages = slices.Clip(c.Pages)
			// Producer states are replaced, never changed in place, so
			// copying the map is enough.
			c.Producers = maps.Clone(c.Producers)
			for len(c.Entries) >= pageEntries {
				es := c.Entries[:pageEntries]
				// MaxTs starts at the first entry's, not 0: timestamps
				// may be negative, and a page of them must not claim 0.
				ref := PageRef{Key: pageKey(t.ID, i, es[0].Base), Base: es[0].Base, End: es[len(es)-1].End(), Entries: len(es), MaxTs: es[0].MaxTs}
				for _, e := range es {
					ref.MaxTs = max(ref.MaxTs, e.MaxTs)
				}
				pages = append(pages, sealed{topic: name, topicID: t.ID, partition: i, ref: ref, entries: es})
				c.Pages = append(c.Pages, ref)
				c.Entries = c.Entries[pageEntries:]
			}
			ct.Parts[i] = &c
		}
		cp.Topics[name] = ct
	}
	return cp, pages
}

// trimSealed drops from the live state the entries that now live in
// written pages, so a long-running node's memory does not grow with history.
func trimSealed(s *State, pages []sealed) {
	for _, pg := range pages {
		t, ok := s.Topics[pg.topic]
		if !ok || t.ID != pg.topicID || pg.partition >= len(t.Parts) {
			continue
		}
		p := t.Parts[pg.partition]
		if len(p.Entries) < pg.ref.Entries || p.Entries[0].Base != pg.ref.Base {
			continue
		}
		p.Pages = append(p.Pages, pg.ref)
		p.Entries = slices.Clone(p.Entries[pg.ref.Entries:])
	}
}
