package kafka

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"runtime/debug"
	"sync"

	"github.com/twmb/franz-go/pkg/kbin"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// conn is one client connection. Its reader goroutine reads, parses and
// handles requests one at a time, in order; each handled request leaves a
// slot in the queue that its completion fills, and the writer goroutine
// answers the slots in queue order, since Kafka answers a connection's
// requests in the order they came. The queue's capacity bounds the
// requests in flight (Options.MaxInflight): a produce waiting ~300 ms for
// its commit does not hold up the requests behind it, which are handled
// meanwhile and answered after it.
type conn struct {
	s    *Server
	c    net.Conn
	addr string

	clientID string // of the request being handled, for handlers' ordered part
}

// slot is one request's place in the answer order.
type slot struct {
	corr int32
	resp chan kmsg.Response // capacity 1; nil response: send nothing
}

// errClose marks a request the connection cannot answer, so it closes.
var errClose = errors.New("close connection")

func (s *Server) serveConn(c net.Conn) {
	cc := &conn{s: s, c: c, addr: c.RemoteAddr().String()}
	queue := make(chan slot, s.opts.MaxInflight)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		cc.write(queue)
	}()
	err := cc.read(queue)
	close(queue)
	if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
		s.logger.Info("kafka: closing connection", "client", cc.addr, "err", err)
	}
	wg.Wait()
	c.Close()
}

// read handles requests until the connection ends or a request cannot be
// answered. A panic in a handler closes this connection only.
func (cc *conn) read(queue chan<- slot) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("panic handling request: %v\n%s", r, debug.Stack())
			cc.s.logger.Error("kafka: handler panic", "client", cc.addr, "err", err)
		}
	}()
	br := bufio.NewReader(cc.c)
	var size [4]byte
	for {
		if _, err := io.ReadFull(br, size[:]); err != nil {
			return err
		}
		n := int32(binary.BigEndian.Uint32(size[:]))
		if n < 8 || n > cc.s.opts.MaxFrameBytes { // key, version, correlation id at least
			return fmt.Errorf("request size %d outside 8..%d", n, cc.s.opts.MaxFrameBytes)
		}
		body := make([]byte, n)
		if _, err := io.ReadFull(br, body); err != nil {
			return fmt.Errorf("read request of %d bytes: %w", n, err)
		}
		corr, done, err := cc.handle(body)
		if err != nil {
			return err
		}
		sl := slot{corr: corr, resp: make(chan kmsg.Response, 1)}
		select {
		case queue <- sl:
		case <-cc.s.ctx.Done():
			return net.ErrClosed
		}
		go cc.complete(sl, done)
	}
}

// complete runs a handler's completion into its slot. A panic closes this
// connection only.
func (cc *conn) complete(sl slot, done func() kmsg.Response) {
	var resp kmsg.Response
	defer func() {
		if r := recover(); r != nil {
			cc.s.logger.Error("kafka: handler panic", "client", cc.addr, "err", fmt.Sprint(r), "stack", string(debug.Stack()))
			cc.c.Close()
			resp = nil
		}
		sl.resp <- resp
	}()
	resp = done()
}

// handle parses one request and runs its handler's ordered part.
func (cc *conn) handle(body []byte) (int32, func() kmsg.Response, error) {
	rd := kbin.Reader{Src: body}
	key, version, corr := rd.Int16(), rd.Int16(), rd.Int32()
	if id := rd.NullableString(); id != nil {
		cc.clientID = *id // read by the ordered part of handlers only
	} else {
		cc.clientID = ""
	}
	if rd.Complete() != nil {
		return 0, nil, fmt.Errorf("truncated request header")
	}
	a, ok := apis[key]
	if key == 18 && ok && version > a.max {
		// KIP-511: an ApiVersions request newer than ours is answered
		// at v0 with UNSUPPORTED_VERSION and our range for it, without
		// parsing a body whose layout we may not know.
		return corr, now(apiVersionsTooNew(a)), nil
	}
	if !ok || version < a.min || version > a.max {
		// Kafka closes the connection on a request it cannot parse: a
		// response's layout depends on a version it does not serve.
		// Clients learn what we serve from ApiVersions first.
		return 0, nil, fmt.Errorf("%w: %s (key %d) version %d not served", errClose, kmsg.NameForKey(key), key, version)
	}
	req := kmsg.RequestForKey(key)
	req.SetVersion(version)
	if req.IsFlexible() {
		kmsg.SkipTags(&rd)
		if rd.Complete() != nil {
			return 0, nil, fmt.Errorf("truncated request header tags")
		}
	}
	if err := req.ReadFrom(rd.Src); err != nil {
		return 0, nil, fmt.Errorf("parse %s v%d: %w", kmsg.NameForKey(key), version, err)
	}
	done, err := a.h(cc.s, cc, req)
	return corr, done, err
}

// write answers the queued requests in order.
func (cc *conn) write(queue <-chan slot) {
	bw := bufio.NewWriter(cc.c)
	var buf []byte
	broken := false
	for sl := range queue {
		resp := <-sl.resp
		if resp == nil || broken {
			continue // acks=0, or the client is gone: drain the rest
		}
		buf = append(buf[:0], 0, 0, 0, 0, 0, 0, 0, 0) // size, correlation id
		if resp.IsFlexible() && resp.Key() != 18 {
			buf = append(buf, 0) // empty header tags; ApiVersions' header is always v0
		}
		buf = resp.AppendTo(buf)
		binary.BigEndian.PutUint32(buf[:4], uint32(len(buf)-4))
		binary.BigEndian.PutUint32(buf[4:8], uint32(sl.corr))
		if _, err := bw.Write(buf); err != nil {
			broken = true
			cc.c.Close()
			continue
		}
		if err := bw.Flush(); err != nil {
			broken = true
			cc.c.Close()
		}
	}
}
