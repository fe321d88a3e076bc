package gcs

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"time"

	"cloud.google.com/go/storage"
	"github.com/klauspost/compress/zstd"
	"github.com/nats-io/nats.go"

	"github.com/sluicehq/sluice/actors"
	"github.com/sluicehq/sluice/internal/conf"
	"github.com/sluicehq/sluice/node/ops"
	"github.com/sluicehq/sluice/queue"
	"github.com/sluicehq/sluice/queue/batch"
	"github.com/sluicehq/sluice/rego"
)

// reader turns notifications into RAW batches.
type reader struct {
	f   *Fetcher
	gcs *storage.Client
}

// delivery is one notification as it came: from Pub/Sub, or re-driven
// from the DLQ (then prior is its DLQ entry's Meta, with its attempts).
type delivery struct {
	attrs map[string]string
	data  []byte
	id    string
	prior batch.Meta
}

// handle reads what a notification announces; nil means ack it (every
// record is in RAW or the DLQ, or there is nothing to read).
func (r *reader) handle(ctx context.Context, h *actors.Health, d delivery) error {
	f := r.f
	n, err := parseNotice(d.attrs, d.data)
	if err != nil {
		dead := queue.DeadRecord{Stage: queue.StageFetch, Name: f.cfg.Name, RecordID: "gcs/notification/" + d.id,
			Reason: "not a bucket notification: " + err.Error(), Data: d.data}
		if err := f.deps.Queue.DeadLetter(ctx, []queue.DeadRecord{dead}); err != nil {
			return fmt.Errorf("notification %s: %w", d.id, err)
		}
		f.m.notifications.WithLabelValues("invalid").Inc()
		return nil
	}
	if n.EventType != "OBJECT_FINALIZE" {
		f.m.notifications.WithLabelValues("skipped_event").Inc()
		return nil
	}
	result, err := r.readObject(ctx, n, d)
	if err != nil {
		if errors.Is(err, errDeleted) {
			f.log.Info("object deleted before it was read; skipped", "object", n.String())
			f.m.notifications.WithLabelValues("deleted").Inc()
			return nil
		}
		return fmt.Errorf("%s: %w", n, err)
	}
	f.fails.Store(0)
	h.SetHealthy()
	f.m.notifications.WithLabelValues(result).Inc()
	return nil
}

// failed logs a notification that goes back to Pub/Sub and waits before
// the nack.
func (r *reader) failed(ctx context.Context, h *actors.Health, err error) {
	if ctx.Err() == nil {
		r.f.log.Warn("object not read; the notification goes back to Pub/Sub", "err", err)
		if errors.Is(err, queue.ErrBufferFull) {
			h.SetUnhealthy("RAW is full: notifications are nacked until it drains (" + err.Error() + ")")
		}
		r.f.waitBeforeNack(ctx)
	}
}

// notification is a dead-lettered notification: what Pub/Sub delivered,
// so that a re-drive handles it as it handles a new one.
type notification struct {
	Attributes map[string]string `json:"attributes"`
	Data       json.RawMessage   `json:"data,omitempty"`
}

// RedriveSubject is where a source's dead-lettered notifications are
// re-driven: the DLQ origin of each, a request the fetcher answers once
// it has handled the notification again.
func RedriveSubject(source string) string { return ops.RedrivePrefix + "fetch." + source }

// redrive answers a re-drive request: one dead-lettered notification,
// handled as a new one. The reply carries the error when it was not (the
// record then stays in the DLQ).
func (r *reader) redrive(ctx context.Context, h *actors.Health, msg *nats.Msg) {
	var nt notification
	recs, err := batch.Decode(msg.Data)
	switch {
	case err != nil:
	case len(recs) != 1:
		err = fmt.Errorf("%d records in a re-driven notification, want 1", len(recs))
	default:
		if err = json.Unmarshal(recs[0], &nt); err != nil {
			err = fmt.Errorf("re-driven record is not a notification: %w", err)
		}
	}
	if err == nil {
		_, prior := batch.ParseMeta(msg.Header)
		err = r.handle(ctx, h, delivery{attrs: nt.Attributes, data: nt.Data, id: "redrive", prior: prior})
	}
	reply := nats.NewMsg(msg.Reply)
	if err != nil {
		r.f.log.Warn("re-driven notification not handled; it stays in the DLQ", "err", err)
		reply.Header.Set(ops.HeaderRedriveError, err.Error())
	}
	if err := msg.RespondMsg(reply); err != nil {
		r.f.log.Warn("re-drive: reply", "err", err)
	}
}

// readObject reads the object once per element of the event policy's
// answer and returns the result to count it under.
func (r *reader) readObject(ctx context.Context, n notice, d delivery) (string, error) {
	f := r.f
	event := n.eventInput()
	elements := []rego.Source{{Parser: f.cfg.Parser, Compress: f.cfg.Compress, Schema: f.cfg.Schema}}
	if f.cfg.Schema == "" {
		srcs, err := f.deps.Policies.EventSources(ctx, event)
		if err != nil {
			// A policy that fails on this object fails every time: keep the
			// notification in the DLQ, readable, instead of looping.
			return "invalid", r.deadNotice(ctx, n, d, event, "event policy: "+err.Error())
		}
		if len(srcs) == 0 {
			return "skipped_policy", nil
		}
		elements = srcs
	}
	obj := r.gcs.Bucket(n.Bucket).Object(n.Name)
	if n.Generation > 0 {
		obj = obj.Generation(n.Generation) // the version announced, not a newer one
	}
	size := n.Size
	if size < 0 {
		attrs, err := obj.Attrs(ctx)
		if errors.Is(err, storage.ErrObjectNotExist) {
			err = r.missing(ctx, n)
		}
		if why, ok := refusal(n.Bucket, err); ok {
			return "refused", r.deadNotice(ctx, n, d, event, fmt.Sprintf("object %s: %s", n, why))
		}
		if err != nil {
			return "", fmt.Errorf("%s: attributes: %w", n, err)
		}
		size = attrs.Size
	}
	if size > int64(f.cfg.MaxObjectBytes) {
		return "too_large", r.deadNotice(ctx, n, d, event, fmt.Sprintf("object %s is %s, over max_object_bytes (%s); not read", n, conf.ByteSize(size), f.cfg.MaxObjectBytes))
	}
	for i, el := range elements {
		err := r.readElement(ctx, n, d, obj, event, i, el)
		if errors.Is(err, errCut) {
			return "too_large", nil
		}
		if errors.Is(err, errRefused) {
			return "refused", nil
		}
		if errors.Is(err, errDeleted) {
			err = r.missing(ctx, n)
		}
		if why, ok := refusal(n.Bucket, err); ok {
			return "refused", r.deadNotice(ctx, n, d, event, fmt.Sprintf("object %s: %s", n, why))
		}
		if err != nil {
			return "", err
		}
	}
	return "acked", nil
}

// deadNotice puts a notification that cannot be handled now in the DLQ
// with the reason, in the form a re-drive hands back (RedriveSubject),
// with the event policy's input beside it to read.
func (r *reader) deadNotice(ctx context.Context, n notice, d delivery, event []byte, reason string) error {
	nt := notification{Attributes: d.attrs}
	if json.Valid(d.data) {
		nt.Data = d.data
	}
	body, err := json.Marshal(nt)
	if err != nil {
		return fmt.Errorf("dead-letter %s: %w", n, err)
	}
	m := d.prior // a re-driven one keeps its attempts
	m.Source, m.Kind, m.Event = r.f.cfg.Name, "gcs", string(event)
	id := r.objectID(n) + "/notification"
	if m.Attempts > 0 {
		// Not the ID of the entry being re-driven, which JetStream
		// would take for a duplicate within its window.
		id += "/redrive-" + strconv.Itoa(m.Attempts)
	}
	dead := queue.DeadRecord{Stage: queue.StageFetch, Name: r.f.cfg.Name, RecordID: id,
		Reason: reason, Origin: RedriveSubject(r.f.cfg.Name), Meta: m, Data: body}
	return r.f.deps.Queue.DeadLetter(ctx, []queue.DeadRecord{dead})
}

// objectID names an object's version as this source reads it. The source
// is part of it: two sources on one bucket (two subscriptions, each with
// its own policies and sinks) must not take each other's batches for
// duplicates in JetStream's window.
func (r *reader) objectID(n notice) string {
	return "gcs/" + r.f.cfg.Name + "/" + n.Bucket + "/" + n.Name + "#" + strconv.FormatInt(n.Generation, 10)
}

// readElement streams the object through one parser into RAW batches.
func (r *reader) readElement(ctx context.Context, n notice, d delivery, obj *storage.ObjectHandle, event []byte, element int, el rego.Source) error {
	f := r.f
	rd, err := obj.NewReader(ctx)
	if errors.Is(err, storage.ErrObjectNotExist) {
		return errDeleted
	}
	if err != nil {
		return fmt.Errorf("%s: open: %w", n, err)
	}
	defer rd.Close()
	src := &errReader{r: &countingReader{r: rd, n: f.m.objectBytes}}
	body, closeBody, err := decompress(src, el.Compress)
	if err != nil && src.err != nil {
		return fmt.Errorf("%s: read: %w", n, src.err)
	}
	out := &chunker{r: r, ctx: ctx, n: n, event: event, element: element, schema: el.Schema, fetched: time.Now(),
		maxPayload: int(f.deps.Queue.Options().MaxPayload)}
	if err != nil {
		err = out.bad("byte 0", nil, err.Error())
	} else {
		limited := &limitReader{r: body, left: int64(f.cfg.MaxDecompressedBytes)}
		err = parseWith(el.Parser, limited, parseOptions{maxRecord: int(f.cfg.MaxRecordBytes), csvDuplicates: f.cfg.CSVDuplicateHeaders}, out)
		closeBody()
	}
	if err != nil {
		if src.err != nil || ctx.Err() != nil {
			return fmt.Errorf("%s: read: %w", n, err)
		}
		if out.failed != nil {
			return err // RAW or the DLQ refused
		}
		var ro *objectRefused
		if errors.As(err, &ro) {
			if err := out.finish(); err != nil {
				return err
			}
			if err := r.deadNotice(ctx, n, d, event, fmt.Sprintf("object %s: %s", n, ro.reason)); err != nil {
				return err
			}
			return errRefused
		}
		if errors.Is(err, errTooLarge) {
			// What was parsed before the cut flows; the object is in the
			// DLQ with the reason (a bomb, or an object to read with a
			// larger bound).
			if err := out.finish(); err != nil {
				return err
			}
			reason := fmt.Sprintf("object %s: over max_decompressed_bytes (%s) once decompressed; cut after record %d, the rest not read", n, f.cfg.MaxDecompressedBytes, out.total)
			if err := r.deadNotice(ctx, n, d, event, reason); err != nil {
				return err
			}
			return errCut
		}
		// The bytes arrived but do not decompress: what parsed flows, the
		// rest is in the DLQ.
		if err := out.bad("after record "+strconv.Itoa(out.total), nil, "object is corrupt: "+err.Error()); err != nil {
			return err
		}
	}
	if err := out.finish(); err != nil {
		return err
	}
	f.m.objects.Inc()
	return nil
}

// decompress sniffs the first bytes: the storage client already undoes a
// stored Content-Encoding: gzip, so the configured compress alone is not
// to be trusted. gzip and zstd are recognised by their magic numbers.
func decompress(r io.Reader, compress string) (io.Reader, func(), error) {
	br := bufio.NewReaderSize(r, 64<<10)
	magic, _ := br.Peek(4)
	switch {
	case bytes.HasPrefix(magic, []byte{0x1f, 0x8b}):
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, nil, fmt.Errorf("gzip: %w", err)
		}
		return zr, func() { _ = zr.Close() }, nil
	case bytes.HasPrefix(magic, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		zr, err := zstd.NewReader(br, zstd.WithDecoderConcurrency(1))
		if err != nil {
			return nil, nil, fmt.Errorf("zstd: %w", err)
		}
		return zr, zr.Close, nil
	}
	_ = compress // plain bytes whatever compress said: the client decompressed them
	return br, func() {}, nil
}

// errTooLarge ends an object's bytes at max_decompressed_bytes.
var errTooLarge = errors.New("over max_decompressed_bytes")

// errRefused says an object was not read as configured and is in the DLQ.
var errRefused = errors.New("object refused")

// errCut says an object was cut at max_decompressed_bytes and is in the DLQ.
var errCut = errors.New("object cut at max_decompressed_bytes")

// limitReader gives left bytes, then errTooLarge: the bound on what one
// object may decompress to.
type limitReader struct {
	r    io.Reader
	left int64
}

func (l *limitReader) Read(p []byte) (int, error) {
	if l.left <= 0 {
		return 0, errTooLarge
	}
	n, err := l.r.Read(p[:min(int64(len(p)), l.left)])
	l.left -= int64(n)
	return n, err
}

type countingReader struct {
	r io.Reader
	n interface{ Add(float64) }
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(float64(n))
	return n, err
}

// chunker cuts an object's records into RAW batches at record boundaries,
// the same way on every read, so a re-read publishes the same message IDs
// and JetStream drops the copies.
type chunker struct {
	r       *reader
	ctx     context.Context
	n       notice
	event   []byte
	element int
	schema  string
	fetched time.Time

	recs       [][]byte
	size       int
	headerLen  int // of a RAW message's headers, once known
	maxPayload int // of one buffer message
	index      int
	total      int
	pending    []*batch.Batch
	pendLen    int
	dead       []queue.DeadRecord
	records    int
	bytes      int
	failed     error
}

func (c *chunker) record(rec []byte) error {
	maxBatch := int(c.r.f.cfg.MaxBatchBytes)
	if need, limit := c.messageSize(rec), c.maxPayload; need > limit {
		// JSON escaping can make a record longer than the bytes it was
		// read from: one that no message can carry goes to the DLQ,
		// cut, and the rest of the object flows.
		c.total++
		keep := min(len(rec), 64<<10, int(c.r.f.cfg.MaxRecordBytes))
		return c.bad("record "+strconv.Itoa(c.total), rec[:keep], fmt.Sprintf(
			"record of %d bytes does not fit one buffer message (max payload %s, %d bytes of it taken by headers); its first %d bytes are kept here",
			len(rec), conf.ByteSize(limit), need-len(rec), keep))
	}
	if len(c.recs) > 0 && c.size+len(rec) > maxBatch {
		if err := c.cut(); err != nil {
			return err
		}
	}
	c.recs = append(c.recs, append([]byte(nil), rec...))
	c.size += len(rec) + 4
	c.total++
	return nil
}

// messageSize is what a RAW message holding rec alone would take: the
// record, the batch encoding and the headers.
func (c *chunker) messageSize(rec []byte) int {
	if c.headerLen == 0 {
		// The widest ID and count a batch of this object can have.
		m := c.meta()
		m.Count = 9_999_999_999
		widest := batch.Batch{ID: c.r.objectID(c.n) + "/" + strconv.Itoa(math.MaxInt) + "/" + strconv.Itoa(math.MaxInt), Meta: m}
		c.headerLen = widest.HeaderSize()
	}
	return len(rec) + 2*binary.MaxVarintLen64 + 1 + c.headerLen
}

func (c *chunker) bad(where string, raw []byte, reason string) error {
	c.r.f.m.parseErrors.Inc()
	id := c.r.objectID(c.n) + "/" + strconv.Itoa(c.element) + "/" + strings.ReplaceAll(where, " ", "-")
	c.dead = append(c.dead, queue.DeadRecord{Stage: queue.StageFetch, Name: c.r.f.cfg.Name, RecordID: id,
		Reason: fmt.Sprintf("object %s, %s: %s", c.n, where, reason), Origin: queue.RawSubject(c.r.f.cfg.Name),
		Meta: c.meta(), Data: append([]byte(nil), raw...)})
	if len(c.dead) >= 256 {
		return c.flushDead()
	}
	return nil
}

// meta is the Meta of the object's batches, but their count.
func (c *chunker) meta() batch.Meta {
	return batch.Meta{Source: c.r.f.cfg.Name, Kind: "gcs", Event: string(c.event), Schema: c.schema, FetchedAt: c.fetched}
}

// cut closes the current batch; batches are published a few MB at a time.
func (c *chunker) cut() error {
	m := c.meta()
	m.Count = len(c.recs)
	c.pending = append(c.pending, &batch.Batch{Subject: queue.RawSubject(c.r.f.cfg.Name),
		ID: c.r.objectID(c.n) + "/" + strconv.Itoa(c.element) + "/" + strconv.Itoa(c.index), Meta: m, Body: batch.Encode(c.recs)})
	c.pendLen += c.size
	c.records += len(c.recs)
	c.bytes += c.size - 4*len(c.recs)
	c.index++
	c.recs, c.size = c.recs[:0], 0
	if c.pendLen >= 4<<20 {
		return c.publish()
	}
	return nil
}

func (c *chunker) publish() error {
	if len(c.pending) == 0 {
		return nil
	}
	if err := c.r.f.deps.Queue.Publish(c.ctx, c.pending); err != nil {
		c.failed = err
		return fmt.Errorf("publish to RAW: %w", err)
	}
	c.r.f.m.records.Add(float64(c.records))
	c.r.f.m.recordBytes.Add(float64(c.bytes))
	c.pending, c.pendLen, c.records, c.bytes = c.pending[:0], 0, 0, 0
	return nil
}

func (c *chunker) flushDead() error {
	if len(c.dead) == 0 {
		return nil
	}
	if err := c.r.f.deps.Queue.DeadLetter(c.ctx, c.dead); err != nil {
		c.failed = err
		return fmt.Errorf("dead-letter: %w", err)
	}
	c.dead = c.dead[:0]
	return nil
}

// finish publishes what is left; only then may the notification be acked.
func (c *chunker) finish() error {
	if len(c.recs) > 0 {
		if err := c.cut(); err != nil {
			return err
		}
	}
	if err := c.publish(); err != nil {
		return err
	}
	return c.flushDead()
}
