// Package hectest is an in-process stand-in for Splunk's HTTP Event
// Collector. It checks the token, parses concatenated JSON events (gzip or
// not), refuses what Splunk refuses with Splunk's codes and texts, supports
// indexer acknowledgement on channels, and records what it accepted. Faults
// can be injected: down (connection refused), busy (503), slow, refusal of
// chosen events, and answers that are not Splunk's: a proxy's HTML page
// (ProxyHTML), a redirect (Redirect), a request held past the client's
// patience (Hang, HangNext), a token whose indexer acknowledgement is off
// (UseACK), or any answer at all (Answer).
package hectest

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"
)

// Options configure a stand-in. Zero values are fine but for Token.
type Options struct {
	Token string
	// Addr to listen on; default 127.0.0.1:0.
	Addr string
	// Out, when set, receives each accepted event as one JSON line.
	Out io.Writer
	// Ack turns on indexer acknowledgement (Splunk's useACK): a channel is
	// required and each accepted request gets an ackId, indexed AckDelay later.
	Ack      bool
	AckDelay time.Duration
	// Discard keeps no accepted event in memory (Accepted returns none), for
	// long runs that watch Out instead; Count still counts them.
	Discard bool
}

// Event is one accepted event as Splunk would index it.
type Event struct {
	Raw     json.RawMessage // the whole event object as received
	Channel string
}

// Server is a running stand-in.
type Server struct {
	URL  string
	opts Options
	addr string
	srv  *http.Server

	mu       sync.Mutex
	l        net.Listener
	accepted []Event
	count    int // events accepted
	requests int
	busy     int           // answer the next busy requests with 503 code 9
	busyTill time.Time     // or until then
	delay    time.Duration // before answering each request
	refuse   func(event json.RawMessage) bool
	acks     map[string]*channel
	out      io.Writer

	ackOn       bool // the token's useACK; Options.Ack, then UseACK
	ackRequests int
	answerFn    AnswerFunc
	proxyHTML   bool
	redirect    string // Location; "" when not redirecting
	redirectTo  int    // its status
	hang        time.Duration
	hangLeft    int // requests still to hang; -1: every one
}

// AnswerFunc answers a request in place of the stand-in: a status, headers
// and a body, sent as they are. A status of 0 leaves the request to the
// stand-in.
type AnswerFunc func(r *http.Request) (status int, header http.Header, body []byte)

type channel struct {
	next    int
	pending map[int]time.Time // ackId → indexed at
}

// NewServer starts a stand-in.
func NewServer(opts Options) (*Server, error) {
	if opts.Addr == "" {
		opts.Addr = "127.0.0.1:0"
	}
	l, err := net.Listen("tcp", opts.Addr)
	if err != nil {
		return nil, fmt.Errorf("hectest: listen: %w", err)
	}
	s := &Server{opts: opts, l: l, addr: l.Addr().String(), acks: map[string]*channel{}, out: opts.Out, ackOn: opts.Ack}
	s.URL = "http://" + s.addr
	mux := http.NewServeMux()
	mux.HandleFunc("/services/collector/event", s.serveEvent)
	mux.HandleFunc("/services/collector/event/1.0", s.serveEvent)
	mux.HandleFunc("/services/collector", s.serveEvent)
	mux.HandleFunc("/services/collector/ack", s.serveAck)
	mux.HandleFunc("/services/collector/health", s.serveHealth)
	mux.HandleFunc("/services/collector/health/1.0", s.serveHealth)
	s.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go s.srv.Serve(l)
	return s, nil
}

// Close stops the stand-in.
func (s *Server) Close() { _ = s.srv.Close() }

// Down closes the listener, so connections are refused, until Up.
func (s *Server) Down() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.l != nil {
		_ = s.l.Close()
		s.l = nil
	}
	s.srv.SetKeepAlivesEnabled(false)
}

// Up listens again on the same address after Down.
func (s *Server) Up() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.l != nil {
		return nil
	}
	var l net.Listener
	var err error
	for i := 0; i < 50; i++ { // the port may linger for a moment
		if l, err = net.Listen("tcp", s.addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		return fmt.Errorf("hectest: listen again on %s: %w", s.addr, err)
	}
	s.l = l
	s.srv.SetKeepAlivesEnabled(true)
	go s.srv.Serve(l)
	return nil
}

// Busy answers the next n requests with 503 "Server is busy" (code 9).
func (s *Server) Busy(n int) { s.mu.Lock(); s.busy = n; s.mu.Unlock() }

// BusyFor answers 503 code 9 until d has passed.
func (s *Server) BusyFor(d time.Duration) { s.mu.Lock(); s.busyTill = time.Now().Add(d); s.mu.Unlock() }

// Slow delays every answer by d.
func (s *Server) Slow(d time.Duration) { s.mu.Lock(); s.delay = d; s.mu.Unlock() }

// Refuse makes every event for which f is true fail as invalid data
// (400, code 6, with its invalid-event-number), as Splunk does.
func (s *Server) Refuse(f func(event json.RawMessage) bool) { s.mu.Lock(); s.refuse = f; s.mu.Unlock() }

// Answer makes f answer every request (events, acks, health) before the
// stand-in does: whatever a proxy or a broken Splunk could say. Where f
// returns status 0 the stand-in answers as usual. Answer(nil) ends it.
// It comes before every other fault but Down and Hang.
func (s *Server) Answer(f AnswerFunc) { s.mu.Lock(); s.answerFn = f; s.mu.Unlock() }

// ProxyHTML(true) answers every request (events, acks, health) with 200 and
// an HTML maintenance page, as a proxy, portal or load balancer in front of
// HEC does; nothing is indexed. ProxyHTML(false) ends it.
func (s *Server) ProxyHTML(on bool) { s.mu.Lock(); s.proxyHTML = on; s.mu.Unlock() }

// Redirect answers every request (events, acks, health) with status (301,
// 302, 307 or 308) and a Location header of location, as a load balancer
// or a web server at a wrong URL does; HEC itself never redirects. An empty
// location ends it.
func (s *Server) Redirect(status int, location string) {
	s.mu.Lock()
	s.redirectTo, s.redirect = status, location
	s.mu.Unlock()
}

// Hang holds every event request d before answering it (0 ends it): the
// stand-in reads the request, then waits. A request whose client gives up
// meanwhile (its timeout) is dropped, nothing of it indexed, as a stalled
// proxy or indexer would; one that waits d is answered as usual.
func (s *Server) Hang(d time.Duration) { s.mu.Lock(); s.hang, s.hangLeft = d, -1; s.mu.Unlock() }

// HangNext holds only the next n event requests d, as Hang does.
func (s *Server) HangNext(n int, d time.Duration) {
	s.mu.Lock()
	s.hang, s.hangLeft = d, n
	s.mu.Unlock()
}

// UseACK turns the token's indexer acknowledgement (Splunk's useACK) on or
// off; it starts as Options.Ack. Off, the stand-in answers as Splunk does
// for such a token: events get {"text":"Success","code":0} with no ackId,
// and /services/collector/ack answers 400 code 14 "ACK is disabled".
func (s *Server) UseACK(on bool) { s.mu.Lock(); s.ackOn = on; s.mu.Unlock() }

// AckRequests is the number of /services/collector/ack requests received.
func (s *Server) AckRequests() int { s.mu.Lock(); defer s.mu.Unlock(); return s.ackRequests }

// Accepted returns every event accepted so far.
func (s *Server) Accepted() []Event {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Event(nil), s.accepted...)
}

// Forget drops the accepted events for which f is true, as a Splunk index
// that lost data would, and says how many went.
func (s *Server) Forget(f func(Event) bool) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	kept := s.accepted[:0]
	for _, e := range s.accepted {
		if !f(e) {
			kept = append(kept, e)
		}
	}
	n := len(s.accepted) - len(kept)
	s.accepted = kept
	s.count -= n
	return n
}

// Count is the number of accepted events.
func (s *Server) Count() int { s.mu.Lock(); defer s.mu.Unlock(); return s.count }

// Requests is the number of event requests received.
func (s *Server) Requests() int { s.mu.Lock(); defer s.mu.Unlock(); return s.requests }

type reply struct {
	Text       string `json:"text"`
	Code       int    `json:"code"`
	InvalidNum *int   `json:"invalid-event-number,omitempty"`
	AckID      *int   `json:"ackId,omitempty"`
	status     int
}

func answer(w http.ResponseWriter, r reply) {
	w.Header().Set("Content-Type", "application/json; charset=UTF-8")
	w.WriteHeader(r.status)
	_ = json.NewEncoder(w).Encode(r)
}

// Splunk's answers (codes and texts as Splunk sends them).
var (
	replySuccess      = reply{Text: "Success", Code: 0, status: 200}
	replyTokenMissing = reply{Text: "Token is required", Code: 2, status: 401}
	replyBadAuth      = reply{Text: "Invalid authorization", Code: 3, status: 401}
	replyBadToken     = reply{Text: "Invalid token", Code: 4, status: 403}
	replyNoData       = reply{Text: "No data", Code: 5, status: 400}
	replyBusy         = reply{Text: "Server is busy", Code: 9, status: 503}
	replyNoChannel    = reply{Text: "Data channel is missing", Code: 10, status: 400}
	replyHealthy      = reply{Text: "HEC is healthy", Code: 17, status: 200}
)

func invalid(text string, code, n int) reply {
	return reply{Text: text, Code: code, InvalidNum: &n, status: 400}
}

func (s *Server) authorized(w http.ResponseWriter, r *http.Request) bool {
	auth := r.Header.Get("Authorization")
	switch {
	case auth == "":
		answer(w, replyTokenMissing)
		return false
	case !strings.HasPrefix(auth, "Splunk "):
		answer(w, replyBadAuth)
		return false
	case strings.TrimPrefix(auth, "Splunk ") != s.opts.Token:
		answer(w, replyBadToken)
		return false
	}
	return true
}

// proxyPage is what a proxy in maintenance answers, with a 200.
const proxyPage = `<!DOCTYPE html>
<html><head><title>Service Unavailable - Maintenance</title></head>
<body><h1>We'll be back soon</h1>
<p>This site is undergoing scheduled maintenance. Please try again later.</p></body></html>
`

// injected answers r as an injected fault says (Answer, Redirect,
// ProxyHTML) and reports whether one did.
func (s *Server) injected(w http.ResponseWriter, r *http.Request) bool {
	s.mu.Lock()
	f, html, code, loc := s.answerFn, s.proxyHTML, s.redirectTo, s.redirect
	s.mu.Unlock()
	if f != nil {
		if status, hdr, body := f(r); status != 0 {
			for k, v := range hdr {
				w.Header()[k] = v
			}
			w.WriteHeader(status)
			_, _ = w.Write(body)
			return true
		}
	}
	if loc != "" {
		w.Header().Set("Location", loc)
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.WriteHeader(code)
		_, _ = fmt.Fprintf(w, "<a href=%q>Moved</a>.\n", loc)
		return true
	}
	if html {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.WriteHeader(http.StatusOK)
		_, _ = io.WriteString(w, proxyPage)
		return true
	}
	return false
}

// hold waits the hang set for the next request, if any; false when the
// client went away meanwhile.
func (s *Server) hold(r *http.Request) bool {
	s.mu.Lock()
	d := s.hang
	switch {
	case s.hangLeft == 0:
		d = 0
	case s.hangLeft > 0:
		s.hangLeft--
	}
	s.mu.Unlock()
	if d <= 0 {
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-r.Context().Done():
		return false
	}
}

func (s *Server) serveHealth(w http.ResponseWriter, r *http.Request) {
	if s.injected(w, r) {
		return
	}
	answer(w, replyHealthy)
}

func (s *Server) serveEvent(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.requests++
	delay := s.delay
	s.mu.Unlock()
	// The body is read first: the server notices a client that gives up
	// only once it has read the request (net/http's background read).
	raw, readErr := io.ReadAll(r.Body)
	if !s.hold(r) {
		return // the client gave up: nothing indexed
	}
	if delay > 0 {
		time.Sleep(delay)
	}
	if s.injected(w, r) {
		return
	}
	s.mu.Lock()
	busy := s.busy > 0 || time.Now().Before(s.busyTill)
	if s.busy > 0 {
		s.busy--
	}
	refuse := s.refuse
	s.mu.Unlock()
	if r.Method != http.MethodPost {
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	if !s.authorized(w, r) {
		return
	}
	if busy {
		answer(w, replyBusy)
		return
	}
	channel := r.Header.Get("X-Splunk-Request-Channel")
	if channel == "" {
		channel = r.URL.Query().Get("channel")
	}
	if s.ackEnabled() && channel == "" {
		answer(w, replyNoChannel)
		return
	}
	if readErr != nil {
		answer(w, invalid("Invalid data format", 6, 0))
		return
	}
	body := io.Reader(bytes.NewReader(raw))
	if r.Header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(body)
		if err != nil {
			answer(w, invalid("Invalid data format", 6, 0))
			return
		}
		body = zr
	}
	data, err := io.ReadAll(body)
	if err != nil {
		answer(w, invalid("Invalid data format", 6, 0))
		return
	}
	if len(bytes.TrimSpace(data)) == 0 {
		answer(w, replyNoData)
		return
	}
	// Events are handled in order; those before a bad one are indexed, as
	// Splunk does, and the answer names the bad one.
	dec := json.NewDecoder(bytes.NewReader(data))
	var good []Event
	n := 0
	var fail *reply
	for {
		var raw json.RawMessage
		err := dec.Decode(&raw)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			r := invalid("Invalid data format", 6, n)
			fail = &r
			break
		}
		if r := checkEvent(raw, n, refuse); r != nil {
			fail = r
			break
		}
		good = append(good, Event{Raw: raw, Channel: channel})
		n++
	}
	ackID := s.accept(good, channel)
	if fail != nil {
		answer(w, *fail)
		return
	}
	rep := replySuccess
	if ackID >= 0 {
		rep.AckID = &ackID
	}
	answer(w, rep)
}

func checkEvent(raw json.RawMessage, n int, refuse func(json.RawMessage) bool) *reply {
	var ev map[string]json.RawMessage
	if err := json.Unmarshal(raw, &ev); err != nil {
		r := invalid("Invalid data format", 6, n)
		return &r
	}
	e, ok := ev["event"]
	if !ok {
		r := invalid("Event field is required", 12, n)
		return &r
	}
	if t := bytes.TrimSpace(e); len(t) == 0 || string(t) == `""` || string(t) == "null" {
		r := invalid("Event field cannot be blank", 13, n)
		return &r
	}
	if refuse != nil && refuse(raw) {
		r := invalid("Invalid data format", 6, n)
		return &r
	}
	return nil
}

// accept records good events and returns an ackId on the channel, or -1
// when acknowledgement is off.
func (s *Server) accept(events []Event, ch string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.count += len(events)
	if !s.opts.Discard {
		s.accepted = append(s.accepted, events...)
	}
	if s.out != nil {
		for _, e := range events {
			var line bytes.Buffer
			if json.Compact(&line, e.Raw) == nil {
				line.WriteByte('\n')
				_, _ = s.out.Write(line.Bytes())
			}
		}
	}
	if !s.ackEnabledLocked() {
		return -1
	}
	c := s.acks[ch]
	if c == nil {
		c = &channel{pending: map[int]time.Time{}}
		s.acks[ch] = c
	}
	id := c.next
	c.next++
	c.pending[id] = time.Now().Add(s.opts.AckDelay)
	return id
}

func (s *Server) ackEnabled() bool { s.mu.Lock(); defer s.mu.Unlock(); return s.ackEnabledLocked() }

func (s *Server) ackEnabledLocked() bool { return s.ackOn }

// serveAck answers {"acks":{"<id>":true|false}}; a true is reported once.
func (s *Server) serveAck(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.ackRequests++
	s.mu.Unlock()
	if s.injected(w, r) {
		return
	}
	if !s.authorized(w, r) {
		return
	}
	if !s.ackEnabled() {
		answer(w, reply{Text: "ACK is disabled", Code: 14, status: 400})
		return
	}
	ch := r.Header.Get("X-Splunk-Request-Channel")
	if ch == "" {
		ch = r.URL.Query().Get("channel")
	}
	if ch == "" {
		answer(w, replyNoChannel)
		return
	}
	var req struct {
		Acks []int `json:"acks"`
	}
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		answer(w, invalid("Invalid data format", 6, 0))
		return
	}
	out := map[string]bool{}
	s.mu.Lock()
	c := s.acks[ch]
	for _, id := range req.Acks {
		at, ok := time.Time{}, false
		if c != nil {
			at, ok = c.pending[id]
		}
		done := ok && !time.Now().Before(at)
		if done {
			delete(c.pending, id)
		}
		out[fmt.Sprint(id)] = done
	}
	s.mu.Unlock()
	w.Header().Set("Content-Type", "application/json; charset=UTF-8")
	_ = json.NewEncoder(w).Encode(map[string]any{"acks": out})
}
