package splunk

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"

	"github.com/google/uuid"
	"github.com/hashicorp/go-retryablehttp"
	"github.com/klauspost/compress/gzip"
)

// hecReply is what HEC answers.
type hecReply struct {
	Text       string `json:"text"`
	Code       int    `json:"code"`
	InvalidNum *int   `json:"invalid-event-number"`
	AckID      *int   `json:"ackId"`
}

// outcome is how the sink must react to one answer.
type outcome int

const (
	accepted outcome = iota
	retry            // busy, 5xx, 429, network, a 2xx that is not HEC's: back off and send again
	badEvent         // 400 with a data code: an event is at fault
	tooLarge         // 413: split the batch
	pause            // token, index, channel or URL refused: nothing will pass until fixed
)

// result of one POST.
type result struct {
	status   int
	hec      bool // the body is HEC's own JSON answer, {"text":…,"code":…}
	reply    hecReply
	body     []byte
	ctype    string // Content-Type, for an answer that is not HEC's
	location string // Location of a redirect, sanitized
	snippet  string // the start of a body that is not HEC's, sanitized
	err      error  // network error or timeout
}

func (r result) redirect() bool { return r.status >= 300 && r.status < 400 }

func (r result) String() string {
	switch {
	case r.err != nil:
		return r.err.Error()
	case r.redirect():
		return fmt.Sprintf("HTTP %d redirect to %s: HEC never redirects, the url is wrong", r.status, r.location)
	case r.hec:
		return fmt.Sprintf("HTTP %d, HEC code %d: %s", r.status, r.reply.Code, sanitize(r.reply.Text, ""))
	case r.snippet == "":
		return fmt.Sprintf("HTTP %d with an empty body, not HEC's answer", r.status)
	}
	ctype := r.ctype
	if ctype == "" {
		ctype = "no content type"
	}
	return fmt.Sprintf("HTTP %d, not HEC's answer (%s): %s", r.status, sanitize(ctype, ""), r.snippet)
}

// classify maps an answer to what to do, by HEC code and HTTP status. Only
// HEC's own success answer accepts: a 2xx page from a proxy, a portal or a
// load balancer is not Splunk's yes.
func classify(r result) outcome {
	switch {
	case r.err != nil:
		return retry
	case r.redirect():
		return pause // HEC never redirects: the URL is wrong, and following would post elsewhere
	}
	if r.hec {
		switch r.reply.Code {
		case 0:
			if r.status >= 200 && r.status < 300 {
				return accepted
			}
		case 5, 6, 12, 13, 15:
			if r.status == http.StatusBadRequest {
				return badEvent
			}
		case 1, 2, 3, 4, 7, 10, 11, 14:
			return pause
		case 8, 9, 23, 26, 27:
			return retry
		}
	}
	switch {
	case r.status == http.StatusRequestEntityTooLarge:
		return tooLarge
	case r.status == http.StatusTooManyRequests || r.status == http.StatusRequestTimeout || r.status >= 500:
		return retry
	case r.status >= 400 && r.status < 500:
		// 400 with no HEC data code (a proxy's), 401, 403, 404, …: the URL,
		// the token or what stands in front of HEC is misconfigured; halving
		// the batch down to the DLQ would throw good events away.
		return pause
	}
	return retry // a 2xx or 1xx that is not HEC's answer
}

// hecClient posts to one HEC endpoint.
type hecClient struct {
	base     string
	auth     string // "Splunk <token>": kept out of every log and error
	gzip     bool
	zippers  sync.Pool // *gzip.Writer: each holds ~1 MB of state, too much to make per request
	payloads sync.Pool // *[]byte: compressed bodies (payload)
	channel  string
	http     *retryablehttp.Client
}

func newHECClient(cfg *Config, log *slog.Logger) (*hecClient, error) {
	tlsCfg := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: cfg.TLS.InsecureSkipVerify}
	if cfg.TLS.CAFile != "" {
		pem, err := os.ReadFile(cfg.TLS.CAFile)
		if err != nil {
			return nil, fmt.Errorf("tls.ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("tls.ca_file %s: no PEM certificates in it", cfg.TLS.CAFile)
		}
		tlsCfg.RootCAs = pool
	}
	transport := &http.Transport{
		Proxy:               http.ProxyFromEnvironment,
		DialContext:         (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		TLSClientConfig:     tlsCfg,
		MaxIdleConnsPerHost: cfg.InFlight * 2,
		IdleConnTimeout:     90 * time.Second,
		TLSHandshakeTimeout: 10 * time.Second,
		ForceAttemptHTTP2:   true,
	}
	rc := retryablehttp.NewClient()
	rc.HTTPClient = &http.Client{Transport: transport, Timeout: cfg.Timeout.D(),
		// HEC never redirects: a redirect means the URL is wrong. Following
		// it would re-send a 301/302 as a GET without a body, or a 307 with
		// the events to wherever it points.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	// A few quick retries for a dropped connection; the sink's own loop
	// retries for as long as Splunk stays down.
	rc.RetryMax = 2
	rc.RetryWaitMin = 50 * time.Millisecond
	rc.RetryWaitMax = time.Second
	rc.CheckRetry = func(ctx context.Context, resp *http.Response, err error) (bool, error) {
		if ctx.Err() != nil {
			return false, ctx.Err()
		}
		return err != nil, nil // only network errors here; answers are classified by the sink
	}
	rc.ErrorHandler = retryablehttp.PassthroughErrorHandler
	rc.Logger = nil
	c := &hecClient{
		base: strings.TrimRight(cfg.URL, "/"),
		auth: "Splunk " + cfg.Token.Reveal(),
		gzip: *cfg.Gzip,
		http: rc,
	}
	if cfg.Ack {
		c.channel = newChannelID()
	}
	return c, nil
}

// encode makes a request's payload of concatenated events: gzip'd when
// the sink compresses, into a buffer of the pool. The caller releases it.
func (c *hecClient) encode(body []byte) *payload {
	if !c.gzip {
		return newPayload(body, nil) // the events' body is the sink's, recycled by it
	}
	// Room for what gzip makes of high-entropy events (a third to a half
	// of them) up front: growing it copied the body again.
	var buf *bytes.Buffer
	if b, ok := c.payloads.Get().(*[]byte); ok {
		buf = bytes.NewBuffer(*b)
	} else {
		buf = new(bytes.Buffer)
	}
	buf.Grow(len(body)/2 + 4<<10)
	zw, _ := c.zippers.Get().(*gzip.Writer)
	if zw == nil {
		zw, _ = gzip.NewWriterLevel(buf, gzip.BestSpeed)
	} else {
		zw.Reset(buf)
	}
	_, _ = zw.Write(body)
	_ = zw.Close()
	c.zippers.Put(zw)
	return newPayload(buf.Bytes(), c.recyclePayload)
}

func (c *hecClient) recyclePayload(buf []byte) { c.payloads.Put(&buf) }

// post sends a payload encode made.
func (c *hecClient) post(ctx context.Context, p *payload) result {
	var hdr http.Header
	if c.gzip {
		hdr = http.Header{"Content-Encoding": {"gzip"}}
	}
	return c.do(ctx, "/services/collector/event", retryablehttp.ReaderFunc(p.reader), hdr)
}

// do sends body: []byte, or a ReaderFunc whose readers net/http closes when done.
func (c *hecClient) do(ctx context.Context, path string, body any, hdr http.Header) result {
	req, err := retryablehttp.NewRequestWithContext(ctx, http.MethodPost, c.base+path, body)
	if err != nil {
		return result{err: err}
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	req.Header.Set("Authorization", c.auth)
	req.Header.Set("Content-Type", "application/json")
	if c.channel != "" {
		req.Header.Set("X-Splunk-Request-Channel", c.channel)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return result{err: scrub(err, c.auth)}
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return c.readResult(resp.StatusCode, resp.Header, data)
}

// readResult reads HEC's answer: its JSON {text, code, ...} when there is
// one. Anything else (a proxy's HTML page, an empty body, other JSON) is
// kept as a short sanitized snippet, for the sink's health and logs.
func (c *hecClient) readResult(status int, hdr http.Header, data []byte) result {
	r := result{status: status, body: data}
	var wire struct {
		Text       *string `json:"text"`
		Code       *int    `json:"code"`
		InvalidNum *int    `json:"invalid-event-number"`
		AckID      *int    `json:"ackId"`
	}
	if json.Unmarshal(data, &wire) == nil && wire.Text != nil && wire.Code != nil {
		r.hec = true
		r.reply = hecReply{Text: *wire.Text, Code: *wire.Code, InvalidNum: wire.InvalidNum, AckID: wire.AckID}
		return r
	}
	token := strings.TrimPrefix(c.auth, "Splunk ")
	r.ctype = hdr.Get("Content-Type")
	r.location = sanitize(hdr.Get("Location"), token)
	if r.location == "" {
		r.location = "nowhere (no Location)"
	}
	r.snippet = sanitize(stripTags(data), token)
	return r
}

// snippetRunes bounds what of a foreign answer reaches health and logs.
const snippetRunes = 100

// sanitize makes s fit for a health reason or a log line: the token
// replaced, control characters and runs of spaces made one space, at most
// snippetRunes runes.
func sanitize(s, token string) string {
	if token != "" {
		s = strings.ReplaceAll(s, token, "[redacted]")
	}
	var b strings.Builder
	n, space := 0, false
	for _, r := range s {
		if unicode.IsSpace(r) || !unicode.IsPrint(r) {
			space = b.Len() > 0
			continue
		}
		if n == snippetRunes {
			b.WriteString("…")
			break
		}
		if space {
			b.WriteByte(' ')
			n++
			space = false
		}
		b.WriteRune(r)
		n++
	}
	return b.String()
}

// stripTags drops HTML tags, keeping the text between them (a page's
// title and heading say what it is).
func stripTags(data []byte) string {
	if !bytes.Contains(data[:min(len(data), 512)], []byte("<")) {
		return string(data[:min(len(data), 4<<10)])
	}
	var b strings.Builder
	in := false
	for _, c := range data[:min(len(data), 16<<10)] {
		switch {
		case c == '<':
			in = true
		case c == '>' && in:
			in = false
			b.WriteByte(' ')
		case !in:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// health asks /services/collector/health; nil when HEC says healthy.
func (c *hecClient) health(ctx context.Context) result {
	req, err := retryablehttp.NewRequestWithContext(ctx, http.MethodGet, c.base+"/services/collector/health", nil)
	if err != nil {
		return result{err: err}
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return result{err: scrub(err, c.auth)}
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	return c.readResult(resp.StatusCode, resp.Header, data)
}

// acked polls indexer acknowledgement for one ackId: true once indexed.
func (c *hecClient) acked(ctx context.Context, id int) (bool, result) {
	body, _ := json.Marshal(map[string][]int{"acks": {id}})
	r := c.do(ctx, "/services/collector/ack", body, nil)
	if r.err != nil || r.status != http.StatusOK {
		return false, r
	}
	var ans struct {
		Acks map[string]bool `json:"acks"`
	}
	if err := json.Unmarshal(r.body, &ans); err != nil {
		r.err = fmt.Errorf("ack answer %q: %w", r.body, err)
		return false, r
	}
	return ans.Acks[strconv.Itoa(id)], r
}

// newChannelID is a random channel for indexer acknowledgement.
func newChannelID() string { return uuid.NewString() }

// scrub removes the token from an error text, in case a library echoes a header.
func scrub(err error, auth string) error {
	if err == nil || !strings.Contains(err.Error(), auth) {
		return err
	}
	return fmt.Errorf("%s", strings.ReplaceAll(err.Error(), auth, "Splunk [redacted]"))
}
