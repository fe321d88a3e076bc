// Package splunk is the Splunk HTTP Event Collector sink: it pulls a sink's
// batches from OUT, posts them to HEC in batched requests, and acks a batch
// only when Splunk accepted (or, with indexer acknowledgement, indexed)
// every event of it, or the event went to the DLQ.
package splunk

import (
	"net/url"
	"time"

	"github.com/sluicehq/sluice/internal/conf"
)

// Config is one `type: splunk_hec` sink.
type Config struct {
	Name       string      `yaml:"name"`
	Type       string      `yaml:"type"`
	URL        string      `yaml:"url"`   // https://splunk.example:8088
	Token      conf.Secret `yaml:"token"` // the HEC token
	Index      string      `yaml:"index"` // defaults for events whose policy names none
	Sourcetype string      `yaml:"sourcetype"`
	Source     string      `yaml:"source"`
	Host       string      `yaml:"host"`
	Gzip       *bool       `yaml:"gzip"` // default true
	// Ack turns on indexer acknowledgement: a batch is acked only when
	// Splunk says it is indexed.
	Ack         bool          `yaml:"ack"`
	AckTimeout  conf.Duration `yaml:"ack_timeout"`  // resend a batch whose ack never came; default 2m
	BatchEvents int           `yaml:"batch_events"` // default 2000: 1 MiB (batch_bytes) bounds a request of ~1 KB events first
	BatchBytes  conf.ByteSize `yaml:"batch_bytes"`  // default 1MiB (before gzip)
	Linger      conf.Duration `yaml:"linger"`       // default 200ms
	InFlight    int           `yaml:"in_flight"`    // requests in flight; default 4
	Timeout     conf.Duration `yaml:"timeout"`      // per request; default 30s
	// AckWait is how long a batch held by a node that died waits before
	// JetStream hands it to another; default timeout + 30s (a request in
	// flight must finish first; retries keep their batches alive).
	AckWait    conf.Duration `yaml:"ack_wait"`
	MaxBackoff conf.Duration `yaml:"max_backoff"` // between retries; default 30s
	// PausedRetry is how often a paused sink (token or index refused) tries
	// again; default 30s.
	PausedRetry conf.Duration `yaml:"paused_retry"`
	TLS         struct {
		CAFile             string `yaml:"ca_file"`
		InsecureSkipVerify bool   `yaml:"insecure_skip_verify"`
	} `yaml:"tls"`
}

// SetDefaults fills in what the config left out.
func (c *Config) SetDefaults() {
	if c.Gzip == nil {
		t := true
		c.Gzip = &t
	}
	if c.AckTimeout == 0 {
		c.AckTimeout = conf.Duration(120e9)
	}
	if c.BatchEvents == 0 {
		c.BatchEvents = 2000
	}
	if c.BatchBytes == 0 {
		c.BatchBytes = 1 << 20
	}
	if c.Linger == 0 {
		c.Linger = conf.Duration(200e6)
	}
	if c.InFlight == 0 {
		c.InFlight = 4
	}
	if c.Timeout == 0 {
		c.Timeout = conf.Duration(30e9)
	}
	if c.AckWait == 0 {
		c.AckWait = c.Timeout + conf.Duration(30e9)
	}
	if c.MaxBackoff == 0 {
		c.MaxBackoff = conf.Duration(30e9)
	}
	if c.PausedRetry == 0 {
		c.PausedRetry = conf.Duration(30e9)
	}
}

// Warnings names the insecure choices the config makes (sluice validate
// prints them, the node logs them at startup).
func (c *Config) Warnings() []conf.Warning {
	var ws conf.Warnings
	ws.If(c.TLS.InsecureSkipVerify, "tls.insecure_skip_verify", "true: any certificate passes, so whoever sits between the node and Splunk reads the HEC token and every event")
	ws.If(conf.CleartextURL(c.URL), "url", "http off loopback: the HEC token and every event cross the network in cleartext (use https)")
	return ws
}

// Validate names the first field that is wrong.
func (c *Config) Validate() error {
	if c.URL == "" {
		return conf.Errorf("url", "required (e.g. https://splunk.example:8088)")
	}
	u, err := url.Parse(c.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return conf.Errorf("url", "%q is not an http(s) URL", c.URL)
	}
	if c.Token.IsEmpty() {
		return conf.Errorf("token", "required (the HEC token; use ${SPLUNK_HEC_TOKEN})")
	}
	if c.BatchEvents < 1 {
		return conf.Errorf("batch_events", "%d: want at least 1", c.BatchEvents)
	}
	if c.BatchBytes < 1024 {
		return conf.Errorf("batch_bytes", "%s: want at least 1KiB", c.BatchBytes)
	}
	// A held request's batches are kept leased every ack_wait/3 (a post
	// can last ~3 timeouts with the client's own retries), from when the
	// request is handed to a sender; the first batch of a request may have
	// waited linger before that. One attempt must end within the lease, so
	// that a node cut off from JetStream stops sending before another
	// node can take its batches.
	if c.AckWait < conf.Duration(time.Second) {
		return conf.Errorf("ack_wait", "%s: want at least 1s", c.AckWait)
	}
	if c.AckWait <= c.Timeout {
		return conf.Errorf("ack_wait", "%s must be longer than timeout (%s)", c.AckWait, c.Timeout)
	}
	if c.Linger >= c.AckWait/2 {
		return conf.Errorf("linger", "%s must be shorter than half of ack_wait (%s): batches wait linger before they are kept leased", c.Linger, c.AckWait)
	}
	if c.InFlight < 1 || c.InFlight > 64 {
		return conf.Errorf("in_flight", "%d: want 1 to 64", c.InFlight)
	}
	if c.TLS.InsecureSkipVerify && u.Scheme != "https" {
		return conf.Errorf("tls.insecure_skip_verify", "only means something with an https url")
	}
	return nil
}
