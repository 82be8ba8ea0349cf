package kafka

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/s2"
	"github.com/klauspost/compress/zstd"
	"github.com/pierrec/lz4/v4"
)

// errDecompressedTooLarge is a batch that decompresses past the bound: a
// batch ingest would refuse anyway, or a compression bomb.
var errDecompressedTooLarge = errors.New("decompressed batch too large")

// xerialMagic starts snappy data in the Java client's xerial framing.
var xerialMagic = []byte{130, 'S', 'N', 'A', 'P', 'P', 'Y', 0}

// zstdDecoders are streaming decoders, reset per batch: streaming, unlike
// DecodeAll, stops at the bound instead of allocating what a frame claims.
var zstdDecoders = sync.Pool{New: func() any {
	d, _ := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1), zstd.WithDecoderLowmem(true), zstd.WithDecoderMaxWindow(64<<20))
	return d
}}

// decompress decodes a record batch's records with Kafka codec codec
// (1 gzip, 2 snappy, 3 lz4, 4 zstd), producing at most limit bytes: the
// bound keeps a small batch from expanding into gigabytes before ingest's
// size check sees it.
func decompress(src []byte, codec int16, limit int) ([]byte, error) {
	switch codec {
	case 0:
		return src, nil
	case 1:
		r, err := gzip.NewReader(bytes.NewReader(src))
		if err != nil {
			return nil, err
		}
		return readLimited(r, limit)
	case 2:
		if len(src) >= 16 && bytes.HasPrefix(src, xerialMagic) {
			return xerial(src[16:], limit)
		}
		return snappyBlock(nil, src, limit)
	case 3:
		return readLimited(lz4.NewReader(bytes.NewReader(src)), limit)
	case 4:
		d := zstdDecoders.Get().(*zstd.Decoder)
		defer zstdDecoders.Put(d)
		if err := d.Reset(bytes.NewReader(src)); err != nil {
			return nil, err
		}
		return readLimited(d, limit)
	}
	return nil, fmt.Errorf("compression codec %d", codec)
}

func readLimited(r io.Reader, limit int) ([]byte, error) {
	out, err := io.ReadAll(io.LimitReader(r, int64(limit)+1))
	if err != nil {
		return nil, err
	}
	if len(out) > limit {
		return nil, fmt.Errorf("%w: over %d bytes", errDecompressedTooLarge, limit)
	}
	return out, nil
}

// snappyBlock appends a raw snappy block's content to dst, checking the
// length it claims before allocating.
func snappyBlock(dst, src []byte, limit int) ([]byte, error) {
	n, err := s2.DecodedLen(src)
	if err != nil {
		return nil, err
	}
	if n > limit-len(dst) {
		return nil, fmt.Errorf("%w: over %d bytes", errDecompressedTooLarge, limit)
	}
	out, err := s2.Decode(nil, src)
	if err != nil {
		return nil, err
	}
	return append(dst, out...), nil
}

// xerial decodes the Java client's snappy framing after its 16-byte
// header: blocks of a big-endian length and a raw snappy block.
func xerial(src []byte, limit int) ([]byte, error) {
	var out []byte
	for len(src) > 0 {
		if len(src) < 4 {
			return nil, errors.New("xerial: truncated block length")
		}
		n := binary.BigEndian.Uint32(src)
		src = src[4:]
		if uint64(n) > uint64(len(src)) {
			return nil, errors.New("xerial: block past the end")
		}
		var err error
		if out, err = snappyBlock(out, src[:n], limit); err != nil {
			return nil, err
		}
		src = src[n:]
	}
	return out, nil
}
