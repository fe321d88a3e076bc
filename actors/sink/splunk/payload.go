package splunk

import (
	"bytes"
	"io"
	"sync"
	"sync/atomic"
)

// payload is a request body. A compressed one's buffer goes back to a
// pool for the next request once nothing can read it any more: not the
// sink, which is done with it when it makes another or delivered the
// request, nor net/http, which may still be reading a request's body
// after the answer came and says it is done by closing it. It was
// allocated per request before: half a megabyte for 1 MiB of events.
type payload struct {
	buf  []byte
	refs atomic.Int32 // the sink's reference and every reader not yet closed
	// recycle takes the buffer once nothing reads it; nil leaves it to
	// the collector.
	recycle func([]byte)
}

func newPayload(buf []byte, recycle func([]byte)) *payload {
	p := &payload{buf: buf, recycle: recycle}
	p.refs.Store(1)
	return p
}

// reader is a new reader of the whole payload, for one attempt; its Close
// (net/http calls it when done with a request's body) lets go of it.
func (p *payload) reader() (io.Reader, error) {
	p.refs.Add(1)
	return &payloadReader{Reader: bytes.NewReader(p.buf), p: p}, nil
}

// release is the sink's letting go; after it, the sink must not use p.
func (p *payload) release() { p.unref() }

func (p *payload) unref() {
	if p.refs.Add(-1) == 0 && p.recycle != nil {
		buf := p.buf
		p.buf = nil
		p.recycle(buf[:0])
	}
}

// payloadReader is one attempt's reader. Len (from bytes.Reader) gives
// retryablehttp the Content-Length.
type payloadReader struct {
	*bytes.Reader
	p    *payload
	once sync.Once
}

func (r *payloadReader) Close() error {
	r.once.Do(r.p.unref)
	return nil
}
