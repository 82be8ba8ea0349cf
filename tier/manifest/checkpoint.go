package manifest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/shalelog/shale/tier"
)

// checkpoint is the persisted form of a State.
type checkpoint struct {
	Version int    `json:"v"`
	State   *State `json:"state"`
}

type latestPointer struct {
	Version int   `json:"v"`
	Seq     int64 `json:"seq"`
}

// loadCheckpoint returns the state of the newest valid checkpoint. One
// that does not decode or check (or that latest names but is missing) is
// logged and passed over for the next older one, or for replaying the log
// from the start: the log is never pruned, so replay always works. A store
// failure is an error, not a reason to replay everything.
func (l *Log) loadCheckpoint(ctx context.Context) (*State, error) {
	data, _, err := l.get(ctx, latestKey)
	if errors.Is(err, tier.ErrNotFound) {
		return newState(), nil
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", latestKey, err)
	}
	below := int64(math.MaxInt64) // try only checkpoints before this one
	var p latestPointer
	if err := json.Unmarshal(data, &p); err != nil || p.Version < 1 || p.Version > FormatVersion || p.Seq < 0 {
		l.opts.Logger.Error("invalid checkpoint pointer: looking for an older checkpoint", "key", latestKey, "err", corrupt("checkpoint pointer", latestKey, fmt.Errorf("%s: %v", data, err)))
	} else {
		st, err := l.readCheckpoint(ctx, p.Seq)
		if err == nil {
			return st, nil
		}
		if !invalidOrMissing(err) {
			return nil, err
		}
		l.opts.Logger.Error("invalid checkpoint: looking for an older one", "key", checkpointKey(p.Seq), "err", err)
		below = p.Seq
	}
	seqs, err := l.listCheckpoints(ctx)
	if err != nil {
		return nil, err
	}
	for i := len(seqs) - 1; i >= 0; i-- {
		if seqs[i] >= below {
			continue
		}
		st, err := l.readCheckpoint(ctx, seqs[i])
		if err == nil {
			l.opts.Logger.Warn("loaded an older checkpoint", "key", checkpointKey(seqs[i]))
			return st, nil
		}
		if !invalidOrMissing(err) {
			return nil, err
		}
		l.opts.Logger.Error("invalid checkpoint: looking for an older one", "key", checkpointKey(seqs[i]), "err", err)
	}
	l.opts.Logger.Error("no valid checkpoint: replaying the commit log from the start")
	return newState(), nil
}

func invalidOrMissing(err error) bool {
	var ce *tier.CorruptError
	return errors.As(err, &ce) || errors.Is(err, tier.ErrNotFound)
}

func (l *Log) readCheckpoint(ctx context.Context, seq int64) (*State, error) {
	key := checkpointKey(seq)
	data, _, err := l.get(ctx, key)
	if err != nil {
		return nil, fmt.Errorf("read checkpoint %s: %w", key, err)
	}
	return decodeCheckpoint(key, seq, data)
}

// listCheckpoints returns the numbers of the checkpoints in the bucket, in
// ascending order.
func (l *Log) listCheckpoints(ctx context.Context) ([]int64, error) {
	keys, err := listKeys(ctx, l.store, checkpointDir, l.opts.StoreTimeout)
	if err != nil {
		return nil, err
	}
	var seqs []int64
	for _, k := range keys {
		if seq, ok := parseCheckpointKey(k); ok {
			seqs = append(seqs, seq)
		}
	}
	slices.Sort(seqs)
	return seqs, nil
}

func parseCheckpointKey(key string) (int64, bool) {
	var seq int64
	if _, err := fmt.Sscanf(key, checkpointDir+"%020d.json", &seq); err != nil || checkpointKey(seq) != key {
		return 0, false
	}
	return seq, true
}

// listKeys lists every key under prefix, a page per store call.
func listKeys(ctx context.Context, store tier.Store, prefix string, timeout time.Duration) ([]string, error) {
	var keys []string
	after := ""
	for {
		lctx, cancel := context.WithTimeout(ctx, timeout)
		as, err := store.List(lctx, prefix, after, 1000)
		cancel()
		if err != nil {
			return nil, fmt.Errorf("list %s: %w", prefix, err)
		}
		for _, a := range as {
			keys = append(keys, a.Key)
		}
		if len(as) < 1000 {
			return keys, nil
		}
		after = as[len(as)-1].Key
	}
}

// maybeCheckpoint writes a checkpoint of the state at seq, in the
// background, when seq is a multiple of CheckpointEvery. Only the writer of
// that commit does it; if it dies first, the next multiple will. Index
// pages are written first, the checkpoint that references them next, the
// pointer to the checkpoint last.
func (l *Log) maybeCheckpoint(seq int64) {
	if seq%l.opts.CheckpointEvery != 0 || !l.checkpointing.CompareAndSwap(false, true) {
		return // not due, or the previous one is still being written: the next multiple will do
	}
	var (
		snap  *State
		pages []sealed
	)
	l.View(func(s *State) {
		if s.Seq == seq {
			snap, pages = snapshotSealed(s, l.opts.PageEntries)
		}
	})
	if snap == nil {
		l.checkpointing.Store(false)
		return
	}
	l.cpWG.Go(func() {
		defer l.checkpointing.Store(false)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		if err := l.writeCheckpoint(ctx, snap, pages); err != nil {
			l.opts.Logger.Error("write checkpoint: nodes will replay more of the log at start until one succeeds", "seq", seq, "err", err)
			return
		}
		l.View(func(s *State) { trimSealed(s, pages) })
	})
}

// writeCheckpoint writes pages, then the checkpoint, then advances the
// pointer. Each write is retried on its own until ctx ends, so a store
// that fails some requests (not all) still gets a checkpoint.
func (l *Log) writeCheckpoint(ctx context.Context, snap *State, pages []sealed) error {
	// Pages are written create-if-absent: a page that exists was sealed
	// by an earlier checkpoint (of this node or another) and is never
	// rewritten. Its content is a function of the log, so it holds the
	// same entries.
	var g errgroup.Group
	g.SetLimit(16)
	for _, pg := range pages {
		g.Go(func() error {
			data, err := json.Marshal(page{Version: pageVersion, Entries: pg.entries})
			if err != nil {
				return err
			}
			err = retry(ctx, func() error {
				_, err := call(l, ctx, func(ctx context.Context) (tier.Attrs, error) { return l.store.PutIfAbsent(ctx, pg.ref.Key, data) })
				if errors.Is(err, tier.ErrConflict) {
					return nil
				}
				return err
			})
			if err != nil {
				return fmt.Errorf("write index page %s: %w", pg.ref.Key, err)
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	data, err := json.Marshal(checkpoint{Version: checkpointVersion(snap), State: snap})
	if err != nil {
		return err
	}
	seq := snap.Seq
	err = retry(ctx, func() error {
		_, err := call(l, ctx, func(ctx context.Context) (tier.Attrs, error) { return l.store.Put(ctx, checkpointKey(seq), data) })
		return err
	})
	if err != nil {
		return fmt.Errorf("write checkpoint %s: %w", checkpointKey(seq), err)
	}
	ptr, _ := json.Marshal(latestPointer{Version: pointerVersion, Seq: seq})
	err = retry(ctx, func() error {
		for {
			old, attrs, err := l.get(ctx, latestKey)
			if errors.Is(err, tier.ErrNotFound) {
				_, err = call(l, ctx, func(ctx context.Context) (tier.Attrs, error) { return l.store.PutIfAbsent(ctx, latestKey, ptr) })
			} else if err == nil {
				var p latestPointer
				if json.Unmarshal(old, &p) == nil && p.Seq >= seq {
					return nil // never move the pointer backwards
				}
				_, err = call(l, ctx, func(ctx context.Context) (tier.Attrs, error) {
					return l.store.PutIfMatch(ctx, latestKey, ptr, attrs.ETag)
				})
			}
			if err == nil {
				return nil
			}
			if !errors.Is(err, tier.ErrConflict) && !errors.Is(err, tier.ErrNotFound) {
				return err
			}
		}
	})
	if err != nil {
		return fmt.Errorf("advance %s: %w", latestKey, err)
	}
	return nil
}

// checkpointVersion is the version a checkpoint of s is written with: 2
// if it holds producer state, else 1.
func checkpointVersion(s *State) int {
	if s.hasProducers() {
		return 2
	}
	return 1
}
