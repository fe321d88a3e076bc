package sls

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	sdk "github.com/aliyun/aliyun-log-go-sdk"
	consumerLibrary "github.com/aliyun/aliyun-log-go-sdk/consumer"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluicehq/sluice/actors"
	"github.com/sluicehq/sluice/internal/backoff"
	"github.com/sluicehq/sluice/queue"
	"github.com/sluicehq/sluice/queue/batch"
)

// Deps are what a fetcher is given.
type Deps struct {
	Queue    *queue.Queue
	Logger   *slog.Logger
	Metrics  prometheus.Registerer // already labelled with the source's name
	NodeName string
}

// Fetcher is one SLS source actor.
type Fetcher struct {
	cfg      *Config
	q        *queue.Queue
	log      *slog.Logger
	m        *metrics
	consumer string
	ctx      atomic.Pointer[context.Context] // the running Run's context, for Process
	health   atomic.Pointer[actors.Health]
	wire     *pullLogs // the pulls' logs, left on the wire by decodeLogGroups
	storedMu sync.Mutex
	stored   map[int]map[string]bool // by shard: IDs RAW stored of a pull that failed in part (unstored)
	fails    map[int]int             // by shard: failed tries in a row (retryWait)
	// maxPayload is the largest message the queue takes, headers and
	// all: a record that cannot fit goes to the DLQ (oversize.go).
	maxPayload int
	bodies     batch.Bodies
}

// New builds a fetcher; Run runs it.
func New(cfg *Config, deps Deps) (*Fetcher, error) {
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("source %q: %w", cfg.Name, err)
	}
	log, reg := actors.Defaults(deps.Logger, deps.Metrics)
	m, err := newMetrics(reg)
	if err != nil {
		return nil, fmt.Errorf("source %q: metrics: %w", cfg.Name, err)
	}
	name := cfg.ConsumerName
	if name == "" {
		// The group needs distinct names; a restarted process is a new consumer.
		name = fmt.Sprintf("%s-%d-%04x", deps.NodeName, os.Getpid(), rand.IntN(1<<16))
	}
	f := &Fetcher{cfg: cfg, q: deps.Queue, log: log.With("source", cfg.Name), m: m, consumer: name, wire: newPullLogs()}
	if deps.Queue != nil {
		f.maxPayload = int(deps.Queue.Options().MaxPayload)
	}
	return f, nil
}

// ConsumerName is this fetcher's name in the consumer group.
func (f *Fetcher) ConsumerName() string { return f.consumer }

// Run joins the consumer group and publishes what it pulls until ctx ends.
func (f *Fetcher) Run(ctx context.Context, h *actors.Health) error {
	defer f.m.lag.reset()
	f.ctx.Store(&ctx)
	f.health.Store(h)
	// Requests to SLS end when ctx does, checkpoint saves a grace later
	// (sdkTransport): a stop never waits on a silent network.
	flush, endFlush := context.WithCancel(context.WithoutCancel(ctx))
	defer endFlush()
	httpc, err := httpClient(f.cfg.Endpoint, 60*time.Second, ctx, flush)
	if err != nil {
		return fmt.Errorf("source %q: endpoint: %w", f.cfg.Name, err)
	}
	if err := f.preflight(httpc); err != nil {
		if ctx.Err() != nil {
			return nil // stopped before SLS answered
		}
		h.SetUnhealthy(err.Error())
		return err
	}
	hb := int(f.cfg.HeartbeatInterval.D() / time.Second)
	opt := consumerLibrary.LogHubConfig{
		Endpoint: f.cfg.Endpoint, AccessKeyID: f.cfg.AccessKeyID, AccessKeySecret: f.cfg.AccessKeySecret.Reveal(),
		SecurityToken: f.cfg.SecurityToken.Reveal(),
		Project:       f.cfg.Project, Logstore: f.cfg.Logstore, Query: f.cfg.Query,
		ConsumerGroupName: f.cfg.ConsumerGroup, ConsumerName: f.consumer,
		HeartbeatIntervalInSecond: hb, HeartbeatTimeoutInSecond: 3 * hb,
		DataFetchIntervalInMs: f.cfg.FetchInterval.D().Milliseconds(), MaxFetchLogGroupCount: f.cfg.MaxFetchLogGroups,
		AutoCommitIntervalInMS: f.cfg.CheckpointInterval.D().Milliseconds(),
		HTTPClient:             httpc, Logger: kitLogger{f.log}, DisableRuntimeMetrics: true,
	}
	switch f.cfg.Start {
	case "begin":
		opt.CursorPosition = consumerLibrary.BEGIN_CURSOR
	case "end":
		opt.CursorPosition = consumerLibrary.END_CURSOR
	default:
		t, _ := f.cfg.startPosition()
		opt.CursorPosition, opt.CursorStartTime = consumerLibrary.SPECIAL_TIMER_CURSOR, t.Unix()
	}
	// Each run has its own processor bound to its ctx: a worker left
	// behind by a run that did not stop in time (a pause, then a resume)
	// must not publish under the next run's context.
	worker := consumerLibrary.InitConsumerWorkerWithProcessor(opt, session{f: f, ctx: ctx})
	if !presetTimeouts(worker, 60*time.Second, 90*time.Second) {
		f.log.Warn("could not preset the SLS client's timeouts (consumer library layout changed?)")
	}
	if !decodePulls(worker, f.wire) {
		f.log.Warn("pulls are decoded by the SLS SDK, not sluice's faster decoder (consumer library layout changed?)")
	}
	worker.Start()
	f.log.Info("joined the SLS consumer group", "project", f.cfg.Project, "logstore", f.cfg.Logstore, "group", f.cfg.ConsumerGroup, "consumer", f.consumer)
	h.SetHealthy()
	<-ctx.Done()
	// The library stops heart-beating, ends each shard's Process, then
	// flushes the acked checkpoints, retrying forever if SLS is away. Its
	// pulls and heartbeats were cut short when ctx ended; the flush gets
	// checkpointFlushGrace, after which its saves are answered at once and
	// given up: other consumers (or this one, restarted) go on from the
	// last saved checkpoint and re-pull the rest, which is deduplicated.
	flushTimer := time.AfterFunc(checkpointFlushGrace, endFlush)
	defer flushTimer.Stop()
	stopped := make(chan struct{})
	go func() { worker.StopAndWait(); close(stopped) }()
	select {
	case <-stopped:
		if flush.Err() != nil {
			f.log.Warn("left the SLS consumer group; SLS did not answer within "+checkpointFlushGrace.String()+", so checkpoints acked since the last save were not saved: their records will be pulled again and deduplicated", "consumer", f.consumer)
		} else {
			f.log.Info("left the SLS consumer group; acked checkpoints saved", "consumer", f.consumer)
		}
	case <-time.After(checkpointFlushGrace + stopSlack):
		f.log.Error("the SLS consumer did not stop in time; unsaved progress will be pulled again and deduplicated", "consumer", f.consumer, "waited", (checkpointFlushGrace + stopSlack).String())
	}
	return nil
}

// checkpointFlushGrace is how long a stopping fetcher waits for SLS to
// save its acked checkpoints. A save takes milliseconds when SLS answers;
// the grace bounds a stop when it does not (node.shutdown_timeout, 30 s by
// default, bounds the whole fetch stage).
const checkpointFlushGrace = 5 * time.Second

// stopSlack covers the consumer library's own polling (every 500 ms)
// after the grace; past it the fetcher stops waiting for the library.
const stopSlack = 3 * time.Second

// preflight checks credentials, project and logstore and creates the group,
// so each of those problems is one clear error with the SLS code.
func (f *Fetcher) preflight(httpc *http.Client) error {
	c := sdk.CreateNormalInterface(f.cfg.Endpoint, f.cfg.AccessKeyID, f.cfg.AccessKeySecret.Reveal(), f.cfg.SecurityToken.Reveal())
	c.SetHTTPClient(httpc)
	defer c.Close()
	groups, err := c.ListConsumerGroup(f.cfg.Project, f.cfg.Logstore)
	if err != nil {
		return f.slsError("list consumer groups", err)
	}
	for _, g := range groups {
		if g.ConsumerGroupName == f.cfg.ConsumerGroup {
			return nil
		}
	}
	err = c.CreateConsumerGroup(f.cfg.Project, f.cfg.Logstore, sdk.ConsumerGroup{
		ConsumerGroupName: f.cfg.ConsumerGroup, Timeout: 3 * int(f.cfg.HeartbeatInterval.D()/time.Second),
	})
	var se *sdk.Error
	if err != nil && !(errors.As(err, &se) && se.Code == "ConsumerGroupAlreadyExist") {
		return f.slsError("create consumer group "+f.cfg.ConsumerGroup, err)
	}
	return nil
}

// slsError names the source, the call and SLS's error code; it never holds
// a credential (SLS errors name the key id at most).
func (f *Fetcher) slsError(call string, err error) error {
	var se *sdk.Error
	where := fmt.Sprintf("source %q: SLS project %s, logstore %s: %s", f.cfg.Name, f.cfg.Project, f.cfg.Logstore, call)
	if errors.As(err, &se) {
		hint := ""
		switch se.Code {
		case "SignatureNotMatch", "Unauthorized", "InvalidAccessKeyId.NotFound":
			hint = " (check access_key_id and access_key_secret)"
		case "ExceedQuota":
			hint = " (a logstore allows only so many consumer groups: reuse one or delete an unused one)"
		case "ProjectNotExist", "LogStoreNotExist":
			hint = " (check project, logstore and endpoint region)"
		}
		return fmt.Errorf("%s: %s: %s%s", where, se.Code, se.Message, hint)
	}
	return fmt.Errorf("%s: %w", where, err)
}

// Process publishes a pull's log groups to RAW and marks the checkpoint
// only once every message is acked. The library calls it synchronously, one
// pull at a time per shard, so the mark is this pull's end cursor. An error
// makes the library retry the same pull: that is how a full RAW pauses
// the shard without losing or skipping anything.
func (f *Fetcher) Process(shard int, list *sdk.LogGroupList, tracker consumerLibrary.CheckPointTracker) (string, error) {
	return f.process(*f.ctx.Load(), shard, list, tracker)
}

// session is one Run's processor for the consumer library.
type session struct {
	f   *Fetcher
	ctx context.Context
}

func (s session) Process(shard int, list *sdk.LogGroupList, tracker consumerLibrary.CheckPointTracker) (string, error) {
	return s.f.process(s.ctx, shard, list, tracker)
}

func (s session) Shutdown(t consumerLibrary.CheckPointTracker) error { return s.f.Shutdown(t) }

func (f *Fetcher) process(ctx context.Context, shard int, list *sdk.LogGroupList, tracker consumerLibrary.CheckPointTracker) (string, error) {
	if ctx.Err() != nil {
		return "", errStopping
	}
	labels := strconv.Itoa(shard)
	if len(list.LogGroups) == 0 {
		// Empty pulls are committed too: a read-only shard after a split is
		// released only once its end is saved.
		f.m.lag.caughtUp(labels)
		return "", tracker.SaveCheckPoint(false)
	}
	pl, ok := f.wire.get(list, tracker.GetCurrentCursor(), f.cfg.Query)
	if !ok {
		// Pulled again from its start: rather than publish nothing and
		// checkpoint past the records.
		f.log.Error("a pull's logs were not kept (a bug in sluice); pulling it again", "shard", shard)
		return tracker.GetCurrentCursor(), nil
	}
	msgs, dead, records, bytes, newest := f.messages(shard, pl.place, list.LogGroups, pl.logs)
	msgs = f.unstored(shard, msgs)
	err := f.q.Publish(ctx, msgs)
	f.remember(shard, msgs, err)
	if err == nil && len(dead) > 0 {
		// After RAW's acks, before the checkpoint: a pull retried after
		// a failure here publishes none of its RAW messages again.
		err = f.q.DeadLetter(ctx, dead)
		if err != nil {
			f.remember(shard, msgs, errAllStored)
		} else {
			f.log.Warn("records larger than a buffer message went to the DLQ", "shard", shard, "records", len(dead), "first", dead[0].RecordID, "max_payload", f.maxPayload)
		}
	}
	if err != nil {
		f.m.publishErrors.WithLabelValues(labels).Inc()
		f.m.lag.waiting(labels, newest)
		if h := f.health.Load(); h != nil && errors.Is(err, queue.ErrBufferFull) {
			h.SetUnhealthy("RAW is full: pulling paused, checkpoints held (" + err.Error() + ")")
		}
		if ctx.Err() != nil {
			return "", errStopping
		}
		wait := f.retryWait(shard)
		f.log.Warn("publish to RAW or the DLQ failed; the pull will be retried, its checkpoint is not saved", "shard", shard, "next_in", wait, "err", err)
		// The library retries every 50ms; a full buffer needs longer, and
		// each try sends the whole pull through the node's connection,
		// which the transform and the sinks share.
		actors.Sleep(ctx, wait)
		return "", err
	}
	for _, m := range msgs {
		f.bodies.Release(m.Body)
	}
	if h := f.health.Load(); h != nil {
		h.SetHealthy()
	}
	f.m.records.WithLabelValues(labels).Add(float64(records))
	f.m.bytes.WithLabelValues(labels).Add(float64(bytes))
	f.m.checkpointTime.WithLabelValues(labels).Set(float64(newest.Unix()))
	f.m.lag.stored(labels, newest)
	f.forget(shard)
	return "", tracker.SaveCheckPoint(false)
}

// unstored drops from a pull's messages those RAW stored when an earlier
// try of the same pull failed in part (a full RAW took some of its log
// groups): the library pulls the same groups again, under the same IDs,
// and past duplicate_window — a full buffer can last longer — publishing
// them again would store them twice.
func (f *Fetcher) unstored(shard int, msgs []*batch.Batch) []*batch.Batch {
	f.storedMu.Lock()
	defer f.storedMu.Unlock()
	ids := f.stored[shard]
	if len(ids) == 0 {
		return msgs
	}
	out := msgs[:0]
	for _, m := range msgs {
		if ids[m.ID] {
			f.bodies.Release(m.Body)
			continue
		}
		out = append(out, m)
	}
	return out
}

// errAllStored tells remember that every message was stored (what failed
// came after them).
var errAllStored = errors.New("every message stored")

// remember notes which of msgs RAW stored when their publish failed: all
// of them but those a *queue.PublishError names (none for errAllStored).
func (f *Fetcher) remember(shard int, msgs []*batch.Batch, err error) {
	if err == nil {
		return
	}
	failed := map[int]bool{}
	if err != errAllStored {
		var perr *queue.PublishError
		if !errors.As(err, &perr) {
			return // which were stored is not known: publish them all again
		}
		for _, i := range perr.Failed {
			failed[i] = true
		}
	}
	f.storedMu.Lock()
	defer f.storedMu.Unlock()
	if f.stored == nil {
		f.stored = map[int]map[string]bool{}
	}
	if f.stored[shard] == nil {
		f.stored[shard] = map[string]bool{}
	}
	for i, m := range msgs {
		if !failed[i] {
			f.stored[shard][m.ID] = true
		}
	}
}

// forget drops what remember kept for shard once its checkpoint moves
// past it, and its count of failed tries.
func (f *Fetcher) forget(shard int) {
	f.storedMu.Lock()
	delete(f.stored, shard)
	delete(f.fails, shard)
	f.storedMu.Unlock()
}

// retryWait is how long shard waits before its next try after the n-th
// failed one in a row: 200 ms doubling to 5 s, with jitter.
func (f *Fetcher) retryWait(shard int) time.Duration {
	f.storedMu.Lock()
	if f.fails == nil {
		f.fails = map[int]int{}
	}
	n := f.fails[shard]
	f.fails[shard] = n + 1
	f.storedMu.Unlock()
	return backoff.Nth(n+1, 200*time.Millisecond, 5*time.Second)
}

// errStopping tells the library the node is stopping; the pull is not
// checkpointed and is pulled again (and deduplicated) next time.
var errStopping = errors.New("stopping")

// Shutdown saves nothing itself: the library flushes the last checkpoint
// Process marked, which covers only acked records.
func (f *Fetcher) Shutdown(consumerLibrary.CheckPointTracker) error { return nil }

// messages turns a pull into RAW messages: one per log group, or per part
// of a log group larger than MaxBatchBytes or than one message can carry.
// logs are the groups' logs on the wire (decodeLogGroups). A log group's ID
// is its source and its place in its shard (see place), so a re-read gives
// the same IDs however its pulls were cut; its parts are cut by its records'
// sizes alone. A record that no message can carry is a part of its own that
// goes to the DLQ (dead) instead of RAW.
func (f *Fetcher) messages(shard int, at place, groups []*sdk.LogGroup, logs [][][]byte) (msgs []*batch.Batch, dead []queue.DeadRecord, records, bytes int, newest time.Time) {
	fetched := time.Now()
	// The source's name comes first: JetStream deduplicates by ID across
	// the whole stream, so two sources on one logstore (two consumer
	// groups) must never share an ID.
	base := fmt.Sprintf("sls/%s/%s/%s/%d/", f.cfg.Name, f.cfg.Project, f.cfg.Logstore, shard)
	// A group's records are written into one buffer, sliced once it stops
	// growing, and copied into their batch; the buffer then serves the
	// next group: no allocation a record, nor a group.
	var arena []byte
	var ends []int
	for i, lg := range groups {
		event := eventJSON(f.cfg.Project, f.cfg.Logstore, shard, lg)
		var first, last time.Time
		arena, ends, first, last = writeGroup(arena, ends, recordTail(lg), logs[i])
		id := base + at.key(i)
		m := f.groupMeta(event, first, last, fetched)
		room := recordRoom(f.maxPayload, m, id)
		parts, n := cutParts(arena, ends, room, int(f.cfg.MaxBatchBytes))
		bytes += n
		if last.After(newest) {
			newest = last
		}
		for p, part := range parts {
			pid := id
			if len(parts) > 1 {
				pid += "." + strconv.Itoa(p)
			}
			if part.dead {
				dead = append(dead, f.deadRecord(m, batch.RecordID(pid, 0), part.recs[0], room, shard, at, i))
				continue
			}
			pm := m
			pm.Count = len(part.recs)
			msgs = append(msgs, &batch.Batch{Subject: queue.RawSubject(f.cfg.Name), ID: pid, Meta: pm, Body: f.bodies.Encode(part.recs)})
			records += len(part.recs)
		}
	}
	return msgs, dead, records, bytes, newest
}

// writeGroup writes a log group's records (its logs on the wire, each with
// the group's tail) into arena, grown first to hold them all so the
// records sliced from it stay put, and sets ends to where each ends. first
// and last are the earliest and latest of the records' times.
func writeGroup(arena []byte, ends []int, tail []byte, logs [][]byte) (_ []byte, _ []int, first, last time.Time) {
	if n := groupSize(logs, tail); cap(arena) < n {
		arena = make([]byte, 0, n)
	}
	arena, ends = arena[:0], slices.Grow(ends[:0], len(logs))[:len(logs)]
	for j, l := range logs {
		var t time.Time
		arena, t = appendRecord(arena, tail, l)
		ends[j] = len(arena)
		if j == 0 || t.Before(first) {
			first = t
		}
		if t.After(last) {
			last = t
		}
	}
	return arena, ends, first, last
}

// groupMeta is the Meta every RAW batch of a log group shares; each adds
// its count.
func (f *Fetcher) groupMeta(event string, first, last, fetched time.Time) batch.Meta {
	return batch.Meta{Source: f.cfg.Name, Kind: "sls", Event: event, Schema: f.cfg.Schema, FirstTime: first, LastTime: last, FetchedAt: fetched}
}

// cutParts cuts a group's records (arena up to each of ends) into parts of
// at most maxBytes of records and room of message body each, in order; a
// record larger than room is a dead part of its own. bytes counts the
// records that are not dead.
func cutParts(arena []byte, ends []int, room, maxBytes int) (parts []part, bytes int) {
	var cur [][]byte
	size, cost, start := 0, 0, 0
	for _, end := range ends {
		rec := arena[start:end:end]
		start = end
		c := recordCost(rec)
		if c > room {
			if len(cur) > 0 {
				parts, cur, size, cost = append(parts, part{recs: cur}), nil, 0, 0
			}
			parts = append(parts, part{recs: [][]byte{rec}, dead: true})
			continue
		}
		if len(cur) > 0 && (size+len(rec) > maxBytes || cost+c > room) {
			parts, cur, size, cost = append(parts, part{recs: cur}), nil, 0, 0
		}
		cur = append(cur, rec)
		size += len(rec)
		cost += c
		bytes += len(rec)
	}
	if len(cur) > 0 || len(parts) == 0 {
		parts = append(parts, part{recs: cur})
	}
	return parts, bytes
}

// part is the records of one RAW message, or a record no message can
// carry (dead).
type part struct {
	recs [][]byte
	dead bool
}
