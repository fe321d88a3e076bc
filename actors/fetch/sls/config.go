// Package sls is the Alibaba Cloud Log Service source: a consumer-group
// fetcher on the SDK's consumer library that publishes each log group to
// RAW and saves a shard's checkpoint only after JetStream acked every
// record pulled up to it.
package sls

import (
	"net/url"
	"os"
	"time"

	"github.com/sluicehq/sluice/internal/conf"
)

// Config is one `type: sls` source.
type Config struct {
	Name            string      `yaml:"name"`
	Type            string      `yaml:"type"`
	Endpoint        string      `yaml:"endpoint"` // https://cn-hangzhou.log.aliyuncs.com
	Project         string      `yaml:"project"`
	Logstore        string      `yaml:"logstore"`
	ConsumerGroup   string      `yaml:"consumer_group"`
	ConsumerName    string      `yaml:"consumer_name"` // default: <node>-<pid>-<random>
	AccessKeyID     string      `yaml:"access_key_id"` // default $SLS_AK_ID
	AccessKeySecret conf.Secret `yaml:"access_key_secret"`
	SecurityToken   conf.Secret `yaml:"security_token"`
	// Start is where a shard without a checkpoint starts: begin, end or an
	// RFC 3339 time. A group's saved checkpoints always win, as in SLS.
	Start string `yaml:"start"`
	// HeartbeatInterval: SLS drops a consumer that sent no heartbeat for
	// 3× this and gives its shards to the others at their next heartbeat,
	// so a node that died or paused (no quorum) hands its shards over
	// 2–4 heartbeats after its last one. Default 5s: ~10–20 s.
	HeartbeatInterval conf.Duration `yaml:"heartbeat_interval"`
	FetchInterval     conf.Duration `yaml:"fetch_interval"` // default 200ms
	MaxFetchLogGroups int           `yaml:"max_fetch_log_groups"`
	// CheckpointInterval is how often acked progress is saved to SLS;
	// default 5s. Shorter means less re-pulled (and deduplicated) after a crash.
	CheckpointInterval conf.Duration `yaml:"checkpoint_interval"`
	Query              string        `yaml:"query"`  // SLS SPL filter run server-side
	Schema             string        `yaml:"schema"` // fixed schema; else the event policy decides
	// MaxBatchBytes caps one RAW message's records; a larger log group is
	// cut in parts. Parts never exceed what the queue's max message size
	// carries; a record larger than that goes to the DLQ (oversize.go).
	MaxBatchBytes conf.ByteSize `yaml:"max_batch_bytes"`
}

// SetDefaults fills in what the config left out; credentials default to
// the SLS_AK_ID and SLS_AK_KEY environment variables.
func (c *Config) SetDefaults() { c.setDefaults(os.Getenv) }

func (c *Config) setDefaults(env func(string) string) {
	if c.AccessKeyID == "" {
		c.AccessKeyID = env("SLS_AK_ID")
	}
	if c.AccessKeySecret == "" {
		c.AccessKeySecret = conf.Secret(env("SLS_AK_KEY"))
	}
	if c.Start == "" {
		c.Start = "begin"
	}
	if c.HeartbeatInterval == 0 {
		c.HeartbeatInterval = conf.Duration(5 * time.Second)
	}
	if c.FetchInterval == 0 {
		c.FetchInterval = conf.Duration(200 * time.Millisecond)
	}
	if c.MaxFetchLogGroups == 0 {
		c.MaxFetchLogGroups = 100
	}
	if c.CheckpointInterval == 0 {
		c.CheckpointInterval = conf.Duration(5 * time.Second)
	}
	if c.MaxBatchBytes == 0 {
		c.MaxBatchBytes = 1 << 20
	}
}

// Warnings names the insecure choices the config makes (sluice validate
// prints them, the node logs them at startup).
func (c *Config) Warnings() []conf.Warning {
	var ws conf.Warnings
	ws.If(conf.CleartextURL(c.Endpoint), "endpoint", "http off loopback: every record crosses the network in cleartext (use https)")
	return ws
}

// Validate names the first field that is wrong.
func (c *Config) Validate() error {
	u, err := url.Parse(c.Endpoint)
	switch {
	case c.Endpoint == "":
		return conf.Errorf("endpoint", "required (e.g. https://cn-hangzhou.log.aliyuncs.com)")
	case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "":
		return conf.Errorf("endpoint", "%q: want http(s)://host[:port]", c.Endpoint)
	case c.Project == "":
		return conf.Errorf("project", "required")
	case c.Logstore == "":
		return conf.Errorf("logstore", "required")
	case c.ConsumerGroup == "":
		return conf.Errorf("consumer_group", "required")
	case c.AccessKeyID == "":
		return conf.Errorf("access_key_id", "required (or set SLS_AK_ID)")
	case c.AccessKeySecret.IsEmpty():
		return conf.Errorf("access_key_secret", "required (or set SLS_AK_KEY)")
	case c.MaxFetchLogGroups < 1 || c.MaxFetchLogGroups > 1000:
		return conf.Errorf("max_fetch_log_groups", "%d: want 1 to 1000", c.MaxFetchLogGroups)
	case c.HeartbeatInterval.D() < time.Second:
		return conf.Errorf("heartbeat_interval", "%s: at least 1s", c.HeartbeatInterval)
	}
	if _, err := c.startPosition(); err != nil {
		return conf.Errorf("start", "%v", err)
	}
	return nil
}

// startPosition maps start to the consumer library's cursor position.
func (c *Config) startPosition() (time.Time, error) {
	switch c.Start {
	case "begin", "end":
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339, c.Start)
	if err != nil {
		return t, err
	}
	return t, nil
}
