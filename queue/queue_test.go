package queue

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/sluicehq/sluice/queue/batch"
)

func startQueue(t *testing.T, dir string, mod func(*Options)) *Queue {
	t.Helper()
	opts := Options{DataDir: dir, ServerName: "test", MaxBytes: 64 << 20}
	if mod != nil {
		mod(&opts)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	q, err := Start(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	return q
}

func rawMsg(source, id string, records ...string) *nats.Msg {
	recs := make([][]byte, len(records))
	for i, r := range records {
		recs[i] = []byte(r)
	}
	h := nats.Header{}
	h.Set(batch.HeaderMsgID, id)
	h.Set(batch.HeaderCount, fmt.Sprint(len(recs)))
	return &nats.Msg{Subject: RawSubject(source), Header: h, Data: batch.Encode(recs)}
}

func streamMsgs(t *testing.T, q *Queue, name string) uint64 {
	t.Helper()
	s, err := q.js.Stream(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Msgs
}

func TestPublishDeduplicatesByMessageID(t *testing.T) {
	q := startQueue(t, t.TempDir(), nil)
	defer q.Close()
	ctx := context.Background()
	for i := 0; i < 3; i++ {
		if err := q.PublishMessages(ctx, []*nats.Msg{rawMsg("a", "sls/p/l/0/MTA=/0", `{"x":1}`), rawMsg("a", "sls/p/l/0/MTA=/1", `{"x":2}`)}); err != nil {
			t.Fatal(err)
		}
	}
	if n := streamMsgs(t, q, StreamRaw); n != 2 {
		t.Fatalf("RAW holds %d messages, want 2", n)
	}
}

func TestPublishRequiresMessageID(t *testing.T) {
	q := startQueue(t, t.TempDir(), nil)
	defer q.Close()
	m := rawMsg("a", "x", "r")
	m.Header.Del(batch.HeaderMsgID)
	var perr *PublishError
	if err := q.PublishMessages(context.Background(), []*nats.Msg{m}); !errors.As(err, &perr) || perr.Failed[0] != 0 {
		t.Fatalf("err = %v, want a PublishError for message 0", err)
	}
}

func TestUnackedDeliveryComesBackAfterAckWait(t *testing.T) {
	q := startQueue(t, t.TempDir(), nil)
	defer q.Close()
	ctx := context.Background()
	if err := q.PublishMessages(ctx, []*nats.Msg{rawMsg("a", "id-1", "r1")}); err != nil {
		t.Fatal(err)
	}
	c, err := q.Consumer(ctx, ConsumerConfig{Stream: StreamRaw, Durable: "transform", Subject: "raw.>", AckWait: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	d, err := c.Next(ctx, 5*time.Second)
	if err != nil || d.ID != "id-1" || d.Delivered != 1 {
		t.Fatalf("first delivery: %+v, %v", d, err)
	}
	// Not acked: it must come again.
	d2, err := c.Next(ctx, 5*time.Second)
	if err != nil || d2.ID != "id-1" || d2.Delivered != 2 {
		t.Fatalf("redelivery: %+v, %v", d2, err)
	}
	if err := d2.Ack(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Next(ctx, time.Second); !errors.Is(err, ErrNoMessage) {
		t.Fatalf("after ack: err = %v, want ErrNoMessage", err)
	}
}

func TestMaxDeliveriesSendsEachRecordToDLQWithReason(t *testing.T) {
	q := startQueue(t, t.TempDir(), nil)
	defer q.Close()
	ctx := context.Background()
	if err := q.PublishMessages(ctx, []*nats.Msg{rawMsg("a", "poison", "r0", "r1"), rawMsg("a", "fine", "r2")}); err != nil {
		t.Fatal(err)
	}
	c, err := q.Consumer(ctx, ConsumerConfig{Stream: StreamRaw, Durable: "transform", Subject: "raw.>", AckWait: 200 * time.Millisecond, MaxDeliveries: 2, Stage: "transform", Name: "transform", MaxAckPending: 1})
	if err != nil {
		t.Fatal(err)
	}
	// Never ack "poison"; ack "fine" when it comes.
	deadline := time.Now().Add(15 * time.Second)
	fine := false
	for time.Now().Before(deadline) && (!fine || streamMsgs(t, q, StreamDLQ) < 2) {
		d, err := c.Next(ctx, 500*time.Millisecond)
		if errors.Is(err, ErrNoMessage) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		if d.ID == "poison" && d.Delivered > 2 {
			t.Fatalf("poison handed out on delivery %d, over MaxDeliveries", d.Delivered)
		}
		if d.ID == "fine" {
			fine = true
			_ = d.Ack()
		}
	}
	if !fine {
		t.Fatal("the healthy message never came through")
	}
	dlq, err := q.Consumer(ctx, ConsumerConfig{Stream: StreamDLQ, Durable: "inspect", Subject: DLQSubject("transform", "transform")})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for len(got) < 2 {
		d, err := dlq.Next(ctx, 5*time.Second)
		if err != nil {
			t.Fatalf("DLQ after %d: %v", len(got), err)
		}
		recs, _ := batch.Decode(d.Data)
		if !strings.Contains(d.Meta().Reason, "delivered 2 times") {
			t.Errorf("reason = %q", d.Meta().Reason)
		}
		if d.Meta().Origin != "raw.a" {
			t.Errorf("origin = %q", d.Meta().Origin)
		}
		got = append(got, d.Meta().RecordID+"="+string(recs[0]))
		_ = d.Ack()
	}
	if strings.Join(got, ",") != "poison/0=r0,poison/1=r1" {
		t.Fatalf("DLQ holds %v", got)
	}
}

func TestFullStreamRefusesPublishAndKeepsWhatIsStored(t *testing.T) {
	// RAW gets 30% of 4 MiB; 64 KiB records fill it quickly.
	q := startQueue(t, t.TempDir(), func(o *Options) { o.MaxBytes = 4 << 20; o.DuplicateWindow = 100 * time.Millisecond })
	defer q.Close()
	ctx := context.Background()
	big := strings.Repeat("x", 64<<10)
	stored := 0
	var err error
	for i := 0; i < 100; i++ {
		if err = q.PublishMessages(ctx, []*nats.Msg{rawMsg("a", fmt.Sprint("id-", i), big)}); err != nil {
			break
		}
		stored++
	}
	if !errors.Is(err, ErrBufferFull) {
		t.Fatalf("after %d messages: err = %v, want ErrBufferFull", stored, err)
	}
	if stored == 0 || stored == 100 {
		t.Fatalf("stored %d", stored)
	}
	if n := streamMsgs(t, q, StreamRaw); n != uint64(stored) {
		t.Fatalf("RAW holds %d, want the %d stored before it filled", n, stored)
	}
	// Consuming does not free space by itself; trimming delivered records
	// older than the duplicate window does.
	deliverAll(t, q, stored)
	time.Sleep(150 * time.Millisecond)
	if err := q.Trim(ctx); err != nil {
		t.Fatal(err)
	}
	if n := streamMsgs(t, q, StreamRaw); n != 0 {
		t.Fatalf("after trim of a full stream RAW holds %d delivered messages", n)
	}
	if err := q.PublishMessages(ctx, []*nats.Msg{rawMsg("a", "after", big)}); err != nil {
		t.Fatalf("publish after trim: %v", err)
	}
}

// deliverAll consumes and acks RAW's first n messages as the transform,
// and waits until JetStream's ack floor says so.
func deliverAll(t *testing.T, q *Queue, n int) {
	t.Helper()
	ctx := context.Background()
	c, err := q.Consumer(ctx, ConsumerConfig{Stream: StreamRaw, Durable: "transform", Subject: "raw.>"})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < n; i++ {
		d, err := c.Next(ctx, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		_ = d.Ack()
	}
	waitFor(t, func() bool {
		info, _ := c.Info(ctx)
		return info != nil && info.AckFloor == uint64(n)
	})
}

// A stream full of delivered records must not wait for the trimmer's next
// tick: the refused publish starts a trim, and a retry soon succeeds.
func TestBufferFullTrimsDeliveredAtOnce(t *testing.T) {
	q := startQueue(t, t.TempDir(), func(o *Options) { o.MaxBytes = 4 << 20; o.DuplicateWindow = 100 * time.Millisecond })
	defer q.Close()
	ctx := context.Background()
	big := strings.Repeat("x", 64<<10)
	stored := 0
	for ; ; stored++ {
		if err := q.PublishMessages(ctx, []*nats.Msg{rawMsg("a", fmt.Sprint("id-", stored), big)}); err != nil {
			break
		}
	}
	deliverAll(t, q, stored)
	start := time.Now()
	for {
		err := q.PublishMessages(ctx, []*nats.Msg{rawMsg("a", "after", big)})
		if err == nil {
			break
		}
		if !errors.Is(err, ErrBufferFull) {
			t.Fatal(err)
		}
		if time.Since(start) > TrimInterval/3 {
			t.Fatalf("still full %s after every record was delivered: the trimmer waits for its tick", time.Since(start))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func TestTrimKeepsUndeliveredAndTheReplayWindow(t *testing.T) {
	q := startQueue(t, t.TempDir(), func(o *Options) { o.RetainDelivered = time.Hour; o.DuplicateWindow = 100 * time.Millisecond })
	defer q.Close()
	ctx := context.Background()
	for i := 0; i < 4; i++ {
		if err := q.PublishMessages(ctx, []*nats.Msg{rawMsg("a", fmt.Sprint(i), "r")}); err != nil {
			t.Fatal(err)
		}
	}
	c, err := q.Consumer(ctx, ConsumerConfig{Stream: StreamRaw, Durable: "transform", Subject: "raw.>", MaxAckPending: 1})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		d, err := c.Next(ctx, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		_ = d.Ack()
	}
	if err := q.Trim(ctx); err != nil {
		t.Fatal(err)
	}
	if n := streamMsgs(t, q, StreamRaw); n != 4 {
		t.Fatalf("within the replay window RAW holds %d, want 4", n)
	}
	if n := streamConsumers(t, q, StreamRaw); n != 1 {
		t.Fatalf("RAW has %d consumers after a trim, want only the transform's", n)
	}
	q.opts.RetainDelivered = time.Nanosecond
	time.Sleep(150 * time.Millisecond) // past the duplicate window too
	waitFor(t, func() bool {
		info, _ := c.Info(ctx)
		return info != nil && info.AckFloor == 2
	})
	if err := q.Trim(ctx); err != nil {
		t.Fatal(err)
	}
	if n := streamMsgs(t, q, StreamRaw); n != 2 {
		t.Fatalf("past the window RAW holds %d, want the 2 undelivered", n)
	}
}

func TestRecordsSurviveRestart(t *testing.T) {
	dir := t.TempDir()
	q := startQueue(t, dir, nil)
	if err := q.PublishMessages(context.Background(), []*nats.Msg{rawMsg("a", "1", "r1"), rawMsg("a", "2", "r2")}); err != nil {
		t.Fatal(err)
	}
	q.Close()
	q = startQueue(t, dir, nil)
	defer q.Close()
	if n := streamMsgs(t, q, StreamRaw); n != 2 {
		t.Fatalf("after restart RAW holds %d, want 2", n)
	}
}

// TestRecordsSurviveSIGKILL runs a child process that publishes and is then
// killed with SIGKILL; every acked record must be there after restart.
func TestRecordsSurviveSIGKILL(t *testing.T) {
	if dir := os.Getenv("SLUICE_QUEUE_CHILD_DIR"); dir != "" {
		childPublishAndHang(dir)
		return
	}
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestRecordsSurviveSIGKILL$")
	cmd.Env = append(os.Environ(), "SLUICE_QUEUE_CHILD_DIR="+dir)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(out)
	acked := ""
	for sc.Scan() {
		if n, ok := strings.CutPrefix(sc.Text(), "ACKED "); ok {
			acked = n
			break
		}
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	if acked == "" {
		t.Fatal("child never reported its acks")
	}
	q := startQueue(t, dir, nil)
	defer q.Close()
	// The child kept publishing after it reported, so there may be more.
	stored := streamMsgs(t, q, StreamRaw)
	if acked != "500" || stored < 500 {
		t.Fatalf("after SIGKILL RAW holds %d messages, the child had %s acked", stored, acked)
	}
	c, err := q.Consumer(context.Background(), ConsumerConfig{Stream: StreamRaw, Durable: "check", Subject: "raw.>", MaxAckPending: 1000})
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for i := uint64(0); i < stored; i++ {
		d, err := c.Next(context.Background(), 5*time.Second)
		if err != nil {
			t.Fatalf("reading message %d of %d: %v", i, stored, err)
		}
		if _, err := batch.Decode(d.Data); err != nil {
			t.Fatalf("message %s corrupt after SIGKILL: %v", d.ID, err)
		}
		seen[d.ID] = true
	}
	for i := 0; i < 500; i++ {
		if !seen[fmt.Sprint("k-", i)] {
			t.Fatalf("acked message k-%d lost after SIGKILL", i)
		}
	}
	// Re-publishing an ID stored before the kill stores nothing new.
	if err := q.PublishMessages(context.Background(), []*nats.Msg{rawMsg("a", "k-0", "again")}); err != nil {
		t.Fatal(err)
	}
	if n := streamMsgs(t, q, StreamRaw); n != stored {
		t.Fatalf("a re-publish after restart was stored again: %d, want %d", n, stored)
	}
}

func childPublishAndHang(dir string) {
	q, err := Start(context.Background(), Options{DataDir: dir, ServerName: "child", MaxBytes: 64 << 20})
	if err != nil {
		fmt.Println("ERR", err)
		os.Exit(1)
	}
	msgs := make([]*nats.Msg, 500)
	for i := range msgs {
		msgs[i] = rawMsg("a", fmt.Sprint("k-", i), strings.Repeat("r", 1000))
	}
	if err := q.PublishMessages(context.Background(), msgs); err != nil {
		fmt.Println("ERR", err)
		os.Exit(1)
	}
	fmt.Println("ACKED", len(msgs))
	// Keep publishing until killed, so the kill lands mid-write.
	for i := 0; ; i++ {
		_ = q.PublishMessages(context.Background(), []*nats.Msg{rawMsg("a", fmt.Sprint("more-", i), "x")})
		if i%100 == 0 {
			time.Sleep(time.Millisecond)
		}
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 10s")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestIdleOnlyWhenEveryConsumerIsDone(t *testing.T) {
	q := startQueue(t, t.TempDir(), nil)
	defer q.Close()
	ctx := context.Background()
	c, err := q.Consumer(ctx, ConsumerConfig{Stream: StreamRaw, Durable: "transform", Subject: "raw.>"})
	if err != nil {
		t.Fatal(err)
	}
	if idle, err := q.Idle(ctx); err != nil || !idle {
		t.Fatalf("empty queue: idle=%v err=%v", idle, err)
	}
	if err := q.PublishMessages(ctx, []*nats.Msg{rawMsg("a", "1", "r")}); err != nil {
		t.Fatal(err)
	}
	if idle, _ := q.Idle(ctx); idle {
		t.Fatal("idle with a message waiting")
	}
	d, err := c.Next(ctx, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if idle, _ := q.Idle(ctx); idle {
		t.Fatal("idle with a message delivered and not acked")
	}
	_ = d.Ack()
	waitFor(t, func() bool { idle, _ := q.Idle(ctx); return idle })
}

// A fetch abandoned by a stopping stage must not strand a message the
// server sent it: another fetch gets it at once, not after AckWait.
func TestCancelledFetchStrandsNothing(t *testing.T) {
	q := startQueue(t, t.TempDir(), nil)
	defer q.Close()
	ctx := context.Background()
	c, err := q.Consumer(ctx, ConsumerConfig{Stream: StreamRaw, Durable: "transform", Subject: "raw.>", AckWait: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 20; i++ {
		fctx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() {
			_, err := c.Fetch(fctx, 1, 5*time.Second)
			done <- err
		}()
		time.Sleep(20 * time.Millisecond) // the pull request is open
		cancel()                          // before the message exists, so the fetch must give it back
		if err := q.PublishMessages(ctx, []*nats.Msg{rawMsg("a", fmt.Sprint("id-", i), "r")}); err != nil {
			t.Fatal(err)
		}
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Fatalf("round %d: cancelled fetch returned %v", i, err)
		}
		d, err := c.Next(ctx, 3*time.Second)
		if err != nil {
			t.Fatalf("round %d: the message the cancelled fetch saw is stranded: %v", i, err)
		}
		if err := d.Ack(); err != nil {
			t.Fatal(err)
		}
	}
}

// Scan visits what is stored in range, in order, and no further.
func TestScanBoundsAndHeadersOnly(t *testing.T) {
	q := startQueue(t, t.TempDir(), nil)
	defer q.Close()
	ctx := context.Background()
	var times []time.Time
	for i := 1; i <= 5; i++ {
		if err := q.PublishMessages(ctx, []*nats.Msg{rawMsg("a", fmt.Sprint("id-", i), strings.Repeat("x", i))}); err != nil {
			t.Fatal(err)
		}
		times = append(times, time.Now())
		time.Sleep(10 * time.Millisecond)
	}
	scan := func(o ScanOptions) (seqs []uint64, sizes []int) {
		t.Helper()
		err := q.Scan(ctx, o, func(s Stored) (bool, error) {
			seqs, sizes = append(seqs, s.Seq), append(sizes, s.Size)
			if o.HeadersOnly && len(s.Data) != 0 {
				t.Errorf("headers-only scan got a body")
			}
			return true, nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return seqs, sizes
	}
	all, fullSizes := scan(ScanOptions{Stream: StreamRaw})
	if fmt.Sprint(all) != "[1 2 3 4 5]" {
		t.Fatalf("full scan: %v", all)
	}
	if seqs, sizes := scan(ScanOptions{Stream: StreamRaw, HeadersOnly: true}); fmt.Sprint(seqs) != "[1 2 3 4 5]" || fmt.Sprint(sizes) != fmt.Sprint(fullSizes) {
		t.Fatalf("headers-only scan: %v sizes %v, want the full scan's sizes %v", seqs, sizes, fullSizes)
	}
	if seqs, _ := scan(ScanOptions{Stream: StreamRaw, UpToSeq: 3}); fmt.Sprint(seqs) != "[1 2 3]" {
		t.Fatalf("scan up to 3: %v", seqs)
	}
	if seqs, _ := scan(ScanOptions{Stream: StreamRaw, From: times[2]}); fmt.Sprint(seqs) != "[4 5]" {
		t.Fatalf("scan from the 3rd publish: %v", seqs)
	}
	start := time.Now()
	if seqs, _ := scan(ScanOptions{Stream: StreamDLQ}); len(seqs) != 0 || time.Since(start) > time.Second {
		t.Fatalf("empty stream: %v after %s", seqs, time.Since(start))
	}
	if n := streamConsumers(t, q, StreamRaw); n != 0 {
		t.Fatalf("%d readers left on RAW after the scans ended", n)
	}
}

func streamConsumers(t *testing.T, q *Queue, name string) int {
	t.Helper()
	info, err := q.StreamInfo(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Consumers
}

// The stream gauges say what each stream holds now: a scrape after a
// publish sees it.
func TestStreamMetricsFollowTheStreams(t *testing.T) {
	reg := prometheus.NewRegistry()
	q := startQueue(t, t.TempDir(), func(o *Options) { o.Metrics = reg })
	defer q.Close()
	gauge := func(name, stream string) float64 {
		fams, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range fams {
			for _, m := range f.GetMetric() {
				if f.GetName() == name && len(m.GetLabel()) == 1 && m.GetLabel()[0].GetValue() == stream {
					return m.GetGauge().GetValue()
				}
			}
		}
		t.Fatalf("no %s{stream=%q}", name, stream)
		return 0
	}
	for n := 1; n <= 3; n++ {
		if err := q.PublishMessages(context.Background(), []*nats.Msg{rawMsg("s", fmt.Sprint("b", n), "a", "b")}); err != nil {
			t.Fatal(err)
		}
		if got := gauge("sluice_stream_messages", StreamRaw); got != float64(n) {
			t.Fatalf("after %d publishes: sluice_stream_messages{RAW} %v", n, got)
		}
		if got := gauge("sluice_stream_bytes", StreamRaw); got <= 0 {
			t.Fatalf("after %d publishes: sluice_stream_bytes{RAW} %v", n, got)
		}
	}
	if got := gauge("sluice_stream_messages", StreamOut); got != 0 {
		t.Fatalf("sluice_stream_messages{OUT} %v", got)
	}
}

// FetchReady takes the next delivery and those already waiting behind it,
// up to n, and never waits for more to come.
func TestFetchReadyTakesWhatIsWaiting(t *testing.T) {
	q := startQueue(t, t.TempDir(), nil)
	defer q.Close()
	ctx := context.Background()
	var msgs []*nats.Msg
	for i := range 10 {
		msgs = append(msgs, rawMsg("s", fmt.Sprint("b", i), "r"))
	}
	if err := q.PublishMessages(ctx, msgs); err != nil {
		t.Fatal(err)
	}
	c, err := q.Consumer(ctx, ConsumerConfig{Stream: StreamRaw, Durable: "transform", Subject: "raw.>"})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, want := range []int{4, 6} {
		start := time.Now()
		ds, err := c.FetchReady(ctx, 4+2*len(got), 5*time.Second)
		if err != nil || len(ds) != want {
			t.Fatalf("after %d: %d deliveries, %v; want %d", len(got), len(ds), err, want)
		}
		if took := time.Since(start); took > 2*time.Second {
			t.Fatalf("took %s: waited for messages that were not there", took)
		}
		for _, d := range ds {
			got = append(got, d.ID)
			if err := d.Ack(); err != nil {
				t.Fatal(err)
			}
		}
	}
	for i, id := range got {
		if id != fmt.Sprint("b", i) {
			t.Fatalf("deliveries %q: not each batch once, in order", got)
		}
	}
	if ds, err := c.FetchReady(ctx, 4, 200*time.Millisecond); !errors.Is(err, ErrNoMessage) {
		t.Fatalf("nothing left: %d deliveries, %v", len(ds), err)
	}
}

// A pull of many large messages must not bring more at once than the
// server lets wait for the node's in-process connection: past that (64 MB)
// the server closed the connection as a slow consumer, and what it had
// sent waited unacked for AckWait (the queue bench, 800 messages of 130 KB
// pulled 1,024 at a time, stalled for ten seconds and failed).
func TestFetchReadyCapsAPullInBytes(t *testing.T) {
	q := startQueue(t, t.TempDir(), func(o *Options) { o.MaxBytes = 512 << 20 })
	defer q.Close()
	ctx := context.Background()
	recs := make([]string, 128)
	for i := range recs {
		recs[i] = strings.Repeat("x", 1000)
	}
	const n = 800 // 104 MB
	for i := 0; i < n; i += 100 {
		var msgs []*nats.Msg
		for j := i; j < i+100; j++ {
			msgs = append(msgs, rawMsg("s", fmt.Sprint("b", j), recs...))
		}
		if err := q.PublishMessages(ctx, msgs); err != nil {
			t.Fatal(err)
		}
	}
	c, err := q.Consumer(ctx, ConsumerConfig{Stream: StreamRaw, Durable: "bulk", Subject: "raw.>", MaxAckPending: 1024})
	if err != nil {
		t.Fatal(err)
	}
	for want := uint64(1); want <= n; {
		ds, err := c.FetchReady(ctx, 1024, 2*time.Second)
		if err != nil {
			t.Fatalf("after %d of %d: %v (reconnects %d)", want-1, n, err, q.nc.Stats().Reconnects)
		}
		size := 0
		for _, d := range ds {
			if d.Seq != want {
				t.Fatalf("delivery of seq %d, want %d: some were lost on the way", d.Seq, want)
			}
			want++
			size += len(d.Data)
			if err := d.Ack(); err != nil {
				t.Fatal(err)
			}
		}
		// The first delivery comes by a pull of its own.
		if rest := size - len(ds[0].Data); rest > q.pullBytes() {
			t.Fatalf("a pull brought %d bytes, over its cap of %d", rest, q.pullBytes())
		}
	}
	if r := q.nc.Stats().Reconnects; r != 0 {
		t.Fatalf("the in-process connection was closed %d times", r)
	}
}
