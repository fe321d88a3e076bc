package splunk

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/actors/sink/splunk/hectest"
	"github.com/sluicehq/sluice/internal/conf"
	"github.com/sluicehq/sluice/queue"
)

// What the sink makes of an answer.
const (
	wantAck    = "ack"    // every event accepted once, the batch acked
	wantDLQ    = "dlq"    // the refused events dead-lettered, the others accepted once, the batch acked
	wantPause  = "pause"  // paused: nothing accepted, the batch held
	wantRetry  = "retry"  // retrying with backoff: nothing accepted, the batch held
	wantAckOff = "ackoff" // accepted as received, then paused: the token has acks off
	wantResend = "resend" // accepted but never said indexed: sent again after a backoff, the batch held
)

// answerCase is one class of answer Splunk or something in front of it can
// give, and what the sink must make of it.
type answerCase struct {
	name   string
	hopts  hectest.Options
	setup  func(f *fixture) // inject the answer
	mod    func(c *Config)
	want   string
	dlq    int      // events dead-lettered (wantDLQ)
	health []string // in the readiness error (pause, retry, ackoff)
}

func jsonAnswer(path string, status int, body string) func(f *fixture) {
	return func(f *fixture) {
		f.hec.Answer(func(r *http.Request) (int, http.Header, []byte) {
			if path != "" && r.URL.Path != path {
				return 0, nil, nil
			}
			return status, http.Header{"Content-Type": {"application/json; charset=UTF-8"}}, []byte(body)
		})
	}
}

func textAnswer(status int, ctype, body string) func(f *fixture) {
	return func(f *fixture) {
		f.hec.Answer(func(r *http.Request) (int, http.Header, []byte) {
			if r.URL.Path == "/services/collector/health" {
				return 0, nil, nil
			}
			return status, http.Header{"Content-Type": {ctype}}, []byte(body)
		})
	}
}

const eventPath = "/services/collector/event"

// Under every answer, the sink reaches the right outcome and sends at a
// bounded rate: no loop posts again without waiting.
func TestEveryAnswerHasAnOutcomeAndABoundedRate(t *testing.T) {
	const events = 10
	// At most this many requests of each kind in the window: with backoff and
	// paused retry at 200 ms (and the first backoff 50–100 ms) a held request
	// makes fewer than 10 a second; a split of 10 events takes 19.
	const window, maxRequests = time.Second, 25
	redirect := func(code int) func(f *fixture) {
		return func(f *fixture) {
			// Another HEC that would take the events: a client that follows
			// the redirect delivers them to a place nobody configured.
			other, err := hectest.NewServer(hectest.Options{Token: token})
			if err != nil {
				f.t.Fatal(err)
			}
			f.t.Cleanup(other.Close)
			f.t.Cleanup(func() {
				if other.Count() != 0 || other.Requests() != 0 {
					f.t.Errorf("the redirect was followed: %d requests, %d events at its target", other.Requests(), other.Count())
				}
			})
			f.hec.Redirect(code, other.URL+eventPath)
		}
	}
	cases := []answerCase{
		{name: "network refused", setup: func(f *fixture) { f.hec.Down() }, want: wantRetry, health: []string{"retrying"}},
		{name: "hang past timeout", setup: func(f *fixture) { f.hec.Hang(5 * time.Second) },
			mod: func(c *Config) {
				c.Timeout = conf.Duration(250 * time.Millisecond)
				c.AckWait = conf.Duration(time.Second)
			},
			want: wantRetry, health: []string{"retrying", "Timeout"}},
		{name: "200 HEC success", want: wantAck},
		{name: "200 HTML", setup: func(f *fixture) { f.hec.ProxyHTML(true) }, want: wantRetry,
			health: []string{"retrying", "HTTP 200", "text/html", "Maintenance"}},
		{name: "200 empty body", setup: textAnswer(200, "text/plain", ""), want: wantRetry, health: []string{"retrying", "HTTP 200", "empty"}},
		{name: "200 JSON not HEC", setup: textAnswer(200, "application/json", `{"status":"ok"}`), want: wantRetry,
			health: []string{"retrying", "HTTP 200", `{"status":"ok"}`}},
		{name: "200 JSON another code", setup: jsonAnswer(eventPath, 200, `{"text":"Internal server error","code":8}`), want: wantRetry,
			health: []string{"retrying", "code 8"}},
		{name: "200 success without ackId, ack on", mod: func(c *Config) { c.Ack = true }, want: wantAckOff,
			health: []string{"paused", "indexer acknowledgement off", "ack: false", "useACK"}},
		{name: "ack endpoint 400 code 14", hopts: hectest.Options{Ack: true},
			setup: jsonAnswer("/services/collector/ack", 400, `{"text":"ACK is disabled","code":14}`),
			mod:   func(c *Config) { c.Ack = true }, want: wantAckOff, health: []string{"paused", "indexer acknowledgement off"}},
		{name: "ack never comes", hopts: hectest.Options{Ack: true, AckDelay: time.Hour},
			mod:  func(c *Config) { c.Ack = true; c.AckTimeout = conf.Duration(time.Millisecond) },
			want: wantResend, health: []string{"retrying", "ack_timeout"}},
		{name: "301", setup: redirect(301), want: wantPause, health: []string{"paused", "HTTP 301", "redirect", eventPath}},
		{name: "302", setup: redirect(302), want: wantPause, health: []string{"paused", "HTTP 302", "redirect", eventPath}},
		{name: "307", setup: redirect(307), want: wantPause, health: []string{"paused", "HTTP 307", "redirect", eventPath}},
		{name: "400 code 6 invalid-event-number", setup: func(f *fixture) {
			f.hec.Refuse(func(ev json.RawMessage) bool { return bytes.Contains(ev, []byte(`"n":3,`)) })
		}, want: wantDLQ, dlq: 1},
		{name: "400 without HEC body", setup: textAnswer(400, "text/html", "<html><body><h1>400 Bad Request</h1>Request Header Or Cookie Too Large</body></html>"),
			want: wantPause, health: []string{"paused", "HTTP 400", "Bad Request"}},
		{name: "401 code 2", setup: jsonAnswer(eventPath, 401, `{"text":"Token is required","code":2}`), want: wantPause, health: []string{"paused", "code 2"}},
		{name: "401 code 3", setup: jsonAnswer(eventPath, 401, `{"text":"Invalid authorization","code":3}`), want: wantPause, health: []string{"paused", "code 3"}},
		{name: "403 code 4", mod: func(c *Config) { c.Token = "wrong-token-value-1234" }, want: wantPause, health: []string{"paused", "code 4"}},
		{name: "404", mod: func(c *Config) { c.URL += "/wrong" }, want: wantPause, health: []string{"paused", "HTTP 404"}},
		{name: "413", setup: textAnswer(413, "text/html", "<html><h1>413 Request Entity Too Large</h1></html>"), want: wantDLQ, dlq: events},
		{name: "429", setup: textAnswer(429, "text/plain", "Too Many Requests"), want: wantRetry, health: []string{"retrying", "HTTP 429"}},
		{name: "500", setup: textAnswer(500, "text/plain", "Internal Server Error"), want: wantRetry, health: []string{"retrying", "HTTP 500"}},
		{name: "503 code 9", setup: func(f *fixture) { f.hec.BusyFor(time.Hour) }, want: wantRetry, health: []string{"retrying", "code 9"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, c.hopts)
			if c.setup != nil {
				c.setup(f)
			}
			f.publish(events, events)
			rt, stop := f.start(func(cfg *Config) {
				cfg.InFlight = 2
				if c.mod != nil {
					c.mod(cfg)
				}
			})
			time.Sleep(window)
			posts, polls, attempts := f.hec.Requests(), f.hec.AckRequests(), f.counter("sluice_sink_retries_total")
			if posts > maxRequests || polls > maxRequests || attempts > maxRequests {
				t.Errorf("in %s: %d event requests, %d ack requests, %d retries; want at most %d of each", window, posts, polls, attempts, maxRequests)
			}
			idle := func() bool { ok, _ := f.q.Idle(context.Background()); return ok }
			switch c.want {
			case wantAck:
				f.waitDelivered(events, 10*time.Second)
				f.assertEachOnce(events)
			case wantDLQ:
				waitFor(t, func() bool { return idle() && f.dlqCount() == c.dlq })
				var skip []int
				if c.dlq == 1 {
					skip = []int{3}
				} else {
					for i := range events {
						skip = append(skip, i)
					}
				}
				f.assertEachOnce(events, skip...)
			case wantAckOff:
				waitFor(t, func() bool { return idle() && f.hec.Count() == events })
				f.assertEachOnce(events)
			case wantResend:
				if idle() {
					t.Error("the batch was acked")
				}
			case wantPause, wantRetry:
				if n := f.hec.Count(); n != 0 {
					t.Errorf("%d events accepted, want none", n)
				}
				if idle() {
					t.Error("the batch was acked")
				}
				if n := f.dlqCount(); n != 0 {
					t.Errorf("%d events dead-lettered, want none", n)
				}
			}
			if len(c.health) > 0 {
				// A post can take a while (the hang: 3 attempts of the
				// timeout), so the reason may come after the window.
				says := func(err error) bool {
					for _, h := range c.health {
						if err == nil || !strings.Contains(err.Error(), h) {
							return false
						}
					}
					return true
				}
				err := rt.Ready()
				for deadline := time.Now().Add(5 * time.Second); !says(err) && time.Now().Before(deadline); err = rt.Ready() {
					time.Sleep(20 * time.Millisecond)
				}
				if !says(err) {
					t.Errorf("readiness %v, want it to say each of %q", err, c.health)
				}
				if err != nil && strings.Contains(err.Error(), token) {
					t.Errorf("readiness names the token: %v", err)
				}
			}
			stop()
			if strings.Contains(f.log.String(), token) {
				t.Error("the token is in the log")
			}
			if t.Failed() {
				t.Logf("log:\n%s", f.log.String())
			}
		})
	}
}

// counter sums a counter's values in the registry of the sink last started.
func (f *fixture) counter(name string) int {
	mfs, err := f.reg.Gather()
	if err != nil {
		f.t.Fatal(err)
	}
	n := 0.0
	for _, mf := range mfs {
		if mf.GetName() == name {
			for _, m := range mf.GetMetric() {
				n += m.GetCounter().GetValue()
			}
		}
	}
	return int(n)
}

// dlqCount is the number of records in the DLQ stream.
func (f *fixture) dlqCount() int {
	s, err := f.q.JetStream().Stream(context.Background(), queue.StreamDLQ)
	if err != nil {
		f.t.Fatal(err)
	}
	info, err := s.Info(context.Background())
	if err != nil {
		f.t.Fatal(err)
	}
	return int(info.State.Msgs)
}
