package splunk

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicehq/sluice/actors/sink/splunk/hectest"
	"github.com/sluicehq/sluice/internal/conf"
)

func TestPayloadIsRecycledOnlyOnceNothingReadsIt(t *testing.T) {
	recycled := 0
	p := newPayload([]byte("events"), func([]byte) { recycled++ })
	r1, _ := p.reader()
	r2, _ := p.reader()
	p.release()
	if recycled != 0 {
		t.Fatal("recycled while two readers are open")
	}
	_ = r1.(io.Closer).Close()
	_ = r1.(io.Closer).Close() // net/http may close twice; it counts once
	if recycled != 0 {
		t.Fatal("recycled while a reader is open")
	}
	if b, _ := io.ReadAll(r2); string(b) != "events" {
		t.Fatalf("reader read %q", b)
	}
	_ = r2.(io.Closer).Close()
	if recycled != 1 {
		t.Fatalf("recycled %d times once everything let go, want 1", recycled)
	}
}

// Through retryablehttp and net/http, against HEC answering busy before
// reading the body (so net/http may still be sending it after the
// answer): every payload's buffer comes back once its attempts closed
// their readers, and no sooner (-race would see a write into a buffer
// net/http still reads).
func TestPayloadsComeBackAfterNetHTTPClosesThem(t *testing.T) {
	hec, err := hectest.NewServer(hectest.Options{Token: token})
	if err != nil {
		t.Fatal(err)
	}
	defer hec.Close()
	cfg := &Config{Name: "splunk", Type: "splunk_hec", URL: hec.URL, Token: conf.Secret(token)}
	cfg.SetDefaults()
	c, err := newHECClient(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	var made, back atomic.Int32
	recycle := c.recyclePayload
	const requests = 20
	for i := range requests {
		var body []byte
		for j := range 2000 { // ~100 KB gzip'd: more than one write
			body = fmt.Appendf(body, `{"event":{"n":%d,"pad":"%x"}}`, i*2000+j, uint64(j)*0x9e3779b97f4a7c15)
		}
		p := c.encode(body)
		p.recycle = func(b []byte) { back.Add(1); recycle(b) }
		made.Add(1)
		if i%2 == 0 {
			hec.Busy(1)
			if res := c.post(context.Background(), p); classify(res) != retry {
				t.Fatalf("request %d with HEC busy: %s", i, res)
			}
		}
		if res := c.post(context.Background(), p); classify(res) != accepted {
			t.Fatalf("request %d: %s", i, res)
		}
		p.release()
	}
	deadline := time.Now().Add(5 * time.Second)
	for back.Load() != made.Load() && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if back.Load() != made.Load() {
		t.Fatalf("%d of %d payloads came back: net/http did not close their readers", back.Load(), made.Load())
	}
	if hec.Count() != requests*2000 {
		t.Fatalf("HEC accepted %d events, want %d", hec.Count(), requests*2000)
	}
}
