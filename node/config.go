// Package node holds the node's configuration and lifecycle: it starts the
// queue, the actors and the admin HTTP server, and stops them in order.
package node

import (
	"errors"
	"fmt"
	"net"
	"os"
	"regexp"
	"strings"
	"time"

	"github.com/nats-io/nkeys"
	"gopkg.in/yaml.v3"

	"github.com/sluicehq/sluice/actors/component"
	"github.com/sluicehq/sluice/actors/transform"
	"github.com/sluicehq/sluice/cluster"
	"github.com/sluicehq/sluice/internal/conf"
)

// Config is the whole sluice.yaml.
type Config struct {
	Node            NodeConfig       `yaml:"node"`
	Queue           QueueConfig      `yaml:"queue"`
	Policies        PoliciesConfig   `yaml:"policies"`
	Transform       yaml.Node        `yaml:"transform"` // decoded into TransformConfig
	TransformConfig transform.Config `yaml:"-"`
	Sources         []Component      `yaml:"sources"`
	Sinks           []Component      `yaml:"sinks"`
	Cluster         *ClusterConfig   `yaml:"cluster"`

	raw   map[string]rawScalar // the file's values before ${NAME} expansion, for Warnings
	types *component.Registry  // the types it was loaded with: the transform routes by them
}

// NodeConfig is the node: its name, where it keeps data, where it listens.
type NodeConfig struct {
	Name        string      `yaml:"name"`         // default: hostname
	DataDir     string      `yaml:"data_dir"`     // default: /var/lib/sluice
	AdminListen string      `yaml:"admin_listen"` // default: 127.0.0.1:8686
	AdminToken  conf.Secret `yaml:"admin_token"`  // required when admin_listen is not loopback
	NATSListen  string      `yaml:"nats_listen"`  // client port for the nats CLI; default 127.0.0.1, random port
	// NATSOperatorPassword is the password of the NATS user "operator" (the
	// nats CLI, a dashboard: reads, and cannot change what sluice relies
	// on); required when nats_listen is not loopback.
	NATSOperatorPassword conf.Secret `yaml:"nats_operator_password"`
	// NATSOperatorNkey is a public user nkey (U…) that also logs in as the
	// operator, with its seed (nats --nkey FILE); not a secret.
	NATSOperatorNkey string `yaml:"nats_operator_nkey"`
	// NATSToken is a deprecated alias of NATSOperatorPassword.
	NATSToken conf.Secret `yaml:"nats_token"`
	// TLS is the certificate both client-facing listeners (admin_listen
	// and nats_listen) present; required when either is not loopback.
	TLS *ListenerTLS `yaml:"tls"`
	// Insecure lets admin_listen and nats_listen serve cleartext off
	// loopback: tokens and records readable by anyone on the network.
	Insecure  bool   `yaml:"insecure"`
	LogLevel  string `yaml:"log_level"`  // debug, info, warn, error; default info
	LogFormat string `yaml:"log_format"` // text or json; default text
	// ShutdownTimeout bounds how long each stage may take to drain on stop.
	ShutdownTimeout conf.Duration `yaml:"shutdown_timeout"`
	// MemoryLimit is the Go runtime's soft memory limit (GOMEMLIMIT) that
	// `sluice run` sets: the collector works harder near it instead of
	// letting the heap double, and hands freed memory back to the OS.
	// Default DefaultMemoryLimit; 0 sets none; GOMEMLIMIT in the
	// environment wins.
	MemoryLimit *conf.ByteSize `yaml:"memory_limit"`
	// AdminHosts are the names, besides IP addresses, localhost and the
	// host of admin_listen, that requests may carry in Host: those a proxy
	// or DNS gives the admin API. Any other name is refused, which is what
	// stops a DNS rebinding from reading the API from a web page.
	AdminHosts []string `yaml:"admin_hosts"`
	// AdminLoopbackWrites lets a loopback admin API without admin_token
	// take writes (replay, DLQ re-drive and purge, backlog move and drop,
	// job cancel). Dangerous: every process and user of the machine can
	// then change the buffer with nothing to prove who they are; browsers
	// stay refused. Default false: without a token the API is read-only.
	AdminLoopbackWrites bool `yaml:"admin_loopback_writes"`
}

// OperatorPassword is the NATS operator user's password:
// nats_operator_password, or its deprecated alias nats_token.
func (n NodeConfig) OperatorPassword() conf.Secret {
	if n.NATSOperatorPassword.IsEmpty() {
		return n.NATSToken
	}
	return n.NATSOperatorPassword
}

// DefaultMemoryLimit keeps a node under 300 MB of RSS with a large backlog
// on disk (README, "Performance"): buffers live in JetStream's files, and
// what the stages hold in memory is bounded well below it.
const DefaultMemoryLimit conf.ByteSize = 256 << 20

// QueueConfig is the durable buffer.
type QueueConfig struct {
	MaxBytes        conf.ByteSize `yaml:"max_bytes"`        // all streams together; default 20GiB
	RetainDelivered conf.Duration `yaml:"retain_delivered"` // replay window; default 72h
	Sync            string        `yaml:"sync"`             // interval (default) or always
	DuplicateWindow conf.Duration `yaml:"duplicate_window"` // message-ID dedup window; default 10m
}

// PoliciesConfig points at the Rego policies.
type PoliciesConfig struct {
	Dir   string `yaml:"dir"`
	Watch *bool  `yaml:"watch"` // reload when a file changes; default true
	// FullEval sends every record through OPA's evaluator, skipping the
	// fast path (README, "Policies"): to rule the fast path out.
	FullEval bool `yaml:"full_eval"`
}

// ClusterConfig joins nodes into one JetStream cluster.
type ClusterConfig struct {
	Name     string   `yaml:"name"`
	Listen   string   `yaml:"listen"`
	Peers    []string `yaml:"peers"`
	Replicas int      `yaml:"replicas"`
	// PauseAfter: a node that has heard from no quorum of the cluster for
	// this long stops taking work (its SLS shards, Pub/Sub messages and
	// sink deliveries go to the other nodes) until the quorum is back;
	// default 10s, past the 4–9 s RAFT election a healthy majority goes
	// through when it loses its leader.
	PauseAfter conf.Duration `yaml:"pause_after"`
	// TLS is mutual TLS for routes, required when Listen is not a
	// loopback address (sluice cluster certs makes the files).
	TLS struct {
		CertFile string `yaml:"cert_file"`
		KeyFile  string `yaml:"key_file"`
		CAFile   string `yaml:"ca_file"`
	} `yaml:"tls"`
	// Insecure runs routes without TLS on a non-loopback Listen: any host
	// that reaches the route port can join as a route and read, publish
	// into or purge every stream. Only for a network private by other
	// means; validate warns, the node logs it at startup, and status and
	// sluice_insecure{what="cluster_routes"} show it.
	Insecure bool `yaml:"insecure"`
}

// Component is one source or sink: its name and type, and the rest of its
// keys, decoded by the package of that type.
type Component struct {
	Name string
	Type string
	Line int
	Node *yaml.Node
	// Decoded is the type's own Config, and Spec the type, set by Load.
	Decoded any
	Spec    *component.Spec
}

func (c *Component) UnmarshalYAML(n *yaml.Node) error {
	c.Node, c.Line = n, n.Line
	if n.Kind != yaml.MappingNode {
		return errors.New("want a mapping of keys")
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		switch n.Content[i].Value {
		case "name":
			c.Name = n.Content[i+1].Value
		case "type":
			c.Type = n.Content[i+1].Value
		}
	}
	return nil
}

// Load reads, expands and validates a config file, with the source and
// sink types of types. Every error names the file, the field and what is
// wrong.
func Load(path string, types *component.Registry) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	cfg, err := Parse(data, types, os.LookupEnv)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return cfg, nil
}

// Parse is Load on bytes, with env looking up ${NAME}.
func Parse(data []byte, types *component.Registry, env func(string) (string, bool)) (*Config, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("not valid YAML: %w", err)
	}
	raw := rawScalars(&doc, "", map[string]rawScalar{})
	if err := expandEnv(&doc, "", env); err != nil {
		return nil, err
	}
	cfg := &Config{raw: raw, types: types}
	if len(doc.Content) > 0 {
		if err := conf.DecodeStrict(&doc, "", cfg); err != nil {
			return nil, err
		}
	}
	cfg.setDefaults()
	if err := cfg.validate(types); err != nil {
		return nil, err
	}
	return cfg, nil
}

func (c *Config) setDefaults() {
	if c.Node.Name == "" {
		c.Node.Name, _ = os.Hostname()
	}
	if c.Node.DataDir == "" {
		c.Node.DataDir = "/var/lib/sluice"
	}
	if c.Node.AdminListen == "" {
		c.Node.AdminListen = "127.0.0.1:8686"
	}
	if c.Node.NATSListen == "" {
		c.Node.NATSListen = "127.0.0.1:-1"
	}
	if c.Node.LogLevel == "" {
		c.Node.LogLevel = "info"
	}
	if c.Node.LogFormat == "" {
		c.Node.LogFormat = "text"
	}
	if c.Node.MemoryLimit == nil {
		l := DefaultMemoryLimit
		c.Node.MemoryLimit = &l
	}
	if c.Node.ShutdownTimeout == 0 {
		c.Node.ShutdownTimeout = conf.Duration(30e9)
	}
	if c.Queue.MaxBytes == 0 {
		c.Queue.MaxBytes = 20 << 30
	}
	if c.Queue.RetainDelivered == 0 {
		c.Queue.RetainDelivered = conf.Duration(72 * 3600e9)
	}
	if c.Queue.Sync == "" {
		c.Queue.Sync = "interval"
	}
	if c.Queue.DuplicateWindow == 0 {
		c.Queue.DuplicateWindow = conf.Duration(600e9)
	}
	if c.Policies.Watch == nil {
		t := true
		c.Policies.Watch = &t
	}
	if c.Cluster != nil && c.Cluster.Replicas == 0 {
		c.Cluster.Replicas = 3
	}
	if c.Cluster != nil && c.Cluster.PauseAfter == 0 {
		c.Cluster.PauseAfter = conf.Duration(cluster.DefaultPauseAfter)
	}
}

var namePattern = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)

// hostNamePattern is a DNS name, with or without its final dot.
var hostNamePattern = regexp.MustCompile(`^[A-Za-z0-9_]([A-Za-z0-9_.-]*[A-Za-z0-9_])?\.?$`)

func (c *Config) validate(types *component.Registry) error {
	if err := c.Node.validate(); err != nil {
		return err
	}
	if err := c.Queue.validate(); err != nil {
		return err
	}
	tc, err := transform.DecodeConfig(&c.Transform)
	if err != nil {
		return err
	}
	c.TransformConfig = tc
	if len(c.Sources) > 0 && c.Policies.Dir == "" {
		return conf.Errorf("policies.dir", "required: the transform needs policies to route records")
	}
	if err := decodeComponents("sources", c.Sources, types.Source, types.SourceNames()); err != nil {
		return err
	}
	if err := decodeComponents("sinks", c.Sinks, types.Sink, types.SinkNames()); err != nil {
		return err
	}
	if c.Cluster != nil {
		if err := c.Cluster.validate(); err != nil {
			return err
		}
	}
	return nil
}

func (n *NodeConfig) validate() error {
	if !namePattern.MatchString(n.Name) {
		return conf.Errorf("node.name", "%q: use letters, digits, - and _ only", n.Name)
	}
	if _, _, err := net.SplitHostPort(n.AdminListen); err != nil {
		return conf.Errorf("node.admin_listen", "%q is not host:port", n.AdminListen)
	}
	if !isLoopback(n.AdminListen) && n.AdminToken.IsEmpty() {
		return conf.Errorf("node.admin_token", "required when node.admin_listen (%s) is not a loopback address", n.AdminListen)
	}
	for i, h := range n.AdminHosts {
		if !hostNamePattern.MatchString(h) {
			return conf.Errorf(fmt.Sprintf("node.admin_hosts[%d]", i), "%q: want a host name without scheme, port or path (IP addresses and localhost need no entry)", h)
		}
	}
	if err := n.validateNATS(); err != nil {
		return err
	}
	if err := n.validateTLS(); err != nil {
		return err
	}
	switch n.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		return conf.Errorf("node.log_level", "%q: want debug, info, warn or error", n.LogLevel)
	}
	switch n.LogFormat {
	case "text", "json":
	default:
		return conf.Errorf("node.log_format", "%q: want text or json", n.LogFormat)
	}
	return nil
}

// validateNATS checks the NATS client port and who may log in to it.
func (n *NodeConfig) validateNATS() error {
	if _, _, err := net.SplitHostPort(n.NATSListen); err != nil {
		return conf.Errorf("node.nats_listen", "%q is not host:port", n.NATSListen)
	}
	if !n.NATSToken.IsEmpty() && !n.NATSOperatorPassword.IsEmpty() {
		return conf.Errorf("node.nats_token", "a deprecated alias of node.nats_operator_password: set only node.nats_operator_password")
	}
	if k := n.NATSOperatorNkey; k != "" && !nkeys.IsValidPublicUserKey(k) {
		return conf.Errorf("node.nats_operator_nkey", "%q is not a public user nkey (U…, as nk -gen user -pubout prints)", k)
	}
	if !isLoopback(n.NATSListen) && n.OperatorPassword().IsEmpty() && n.NATSOperatorNkey == "" {
		return conf.Errorf("node.nats_operator_password", "required (or node.nats_operator_nkey) when node.nats_listen (%s) is not a loopback address: the buffer holds every record", n.NATSListen)
	}
	if len(n.OperatorPassword()) > 72 {
		field := "node.nats_operator_password"
		if n.NATSOperatorPassword.IsEmpty() {
			field = "node.nats_token"
		}
		return conf.Errorf(field, "longer than 72 bytes, bcrypt's limit (the node keeps only its bcrypt hash)")
	}
	return nil
}

func (q *QueueConfig) validate() error {
	switch q.Sync {
	case "interval", "always":
	default:
		return conf.Errorf("queue.sync", "%q: want interval or always", q.Sync)
	}
	// JetStream rebuilds its duplicate table from the records it stores:
	// a delivered record trimmed inside the window is forgotten, and a
	// re-read of it after a restart would be stored and delivered again.
	if q.RetainDelivered < q.DuplicateWindow {
		return conf.Errorf("queue.retain_delivered", "%s is shorter than queue.duplicate_window (%s): delivered records must stay at least as long as their IDs are remembered",
			q.RetainDelivered.D(), q.DuplicateWindow.D())
	}
	if q.MaxBytes < 16<<20 {
		return conf.Errorf("queue.max_bytes", "%s is too small (at least 16MiB)", q.MaxBytes)
	}
	return nil
}

// decodeComponents decodes each source or sink with the type its `type`
// names (lookup), and checks the names.
func decodeComponents(field string, comps []Component, lookup func(string) (*component.Spec, bool), known []string) error {
	seen := map[string]int{}
	for i := range comps {
		c := &comps[i]
		path := fmt.Sprintf("%s[%d]", field, i)
		if c.Name == "" {
			return &conf.FieldError{Path: path + ".name", Line: c.Line, Msg: "required"}
		}
		if !namePattern.MatchString(c.Name) {
			return &conf.FieldError{Path: path + ".name", Line: c.Line, Msg: fmt.Sprintf("%q: use letters, digits, - and _ only (it becomes a subject name)", c.Name)}
		}
		if j, dup := seen[c.Name]; dup {
			return &conf.FieldError{Path: path + ".name", Line: c.Line, Msg: fmt.Sprintf("duplicate name %q (also %s[%d])", c.Name, field, j)}
		}
		seen[c.Name] = i
		t, ok := lookup(c.Type)
		if !ok {
			return &conf.FieldError{Path: path + ".type", Line: c.Line, Msg: fmt.Sprintf("unknown type %q (known: %s)", c.Type, strings.Join(known, ", "))}
		}
		dec, err := t.Decode(c.Node)
		if err != nil {
			var fe *conf.FieldError
			if errors.As(err, &fe) && fe.Line == 0 {
				fe.Line = lineOf(c.Node, strings.SplitN(fe.Path, ".", 2)[0])
			}
			return conf.Prefix(path, err)
		}
		c.Decoded, c.Spec = dec, t
	}
	return nil
}

// lineOf finds the line of key in a mapping node, else the node's line.
func lineOf(n *yaml.Node, key string) int {
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return n.Content[i].Line
		}
	}
	return n.Line
}

func (c *ClusterConfig) validate() error {
	if c.Name == "" {
		return conf.Errorf("cluster.name", "required")
	}
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		return conf.Errorf("cluster.listen", "%q is not host:port", c.Listen)
	}
	for i, p := range c.Peers {
		if _, _, err := net.SplitHostPort(p); err != nil {
			return conf.Errorf(fmt.Sprintf("cluster.peers[%d]", i), "%q is not host:port", p)
		}
	}
	if c.Replicas < 1 || c.Replicas > 5 {
		return conf.Errorf("cluster.replicas", "%d: want 1 to 5", c.Replicas)
	}
	if c.PauseAfter.D() < time.Second {
		return conf.Errorf("cluster.pause_after", "%s: at least 1s (a RAFT heartbeat is 1s; 10s rides out a leader election)", c.PauseAfter)
	}
	return c.validateTLS()
}

// validateTLS wants mutual TLS on routes off loopback, unless
// cluster.insecure says by name to run without.
func (c *ClusterConfig) validateTLS() error {
	t := c.TLS
	set := t.CertFile != "" || t.KeyFile != "" || t.CAFile != ""
	switch {
	case set && c.Insecure:
		return conf.Errorf("cluster.insecure", "true with cluster.tls set: routes use the TLS; remove one of them")
	case !set && !c.Insecure && !conf.LoopbackAddr(c.Listen):
		return conf.Errorf("cluster.tls", "required when cluster.listen (%s) is not a loopback address: routes carry every record and can purge every stream (sluice cluster certs makes the files; cluster.insecure: true runs without)", c.Listen)
	}
	if set {
		files := []struct{ field, path string }{{"cert_file", t.CertFile}, {"key_file", t.KeyFile}, {"ca_file", t.CAFile}}
		for _, f := range files {
			if f.path == "" {
				return conf.Errorf("cluster.tls."+f.field, "required with the other cluster.tls files (routes use mutual TLS)")
			}
		}
		for _, f := range files {
			if _, err := os.Stat(f.path); err != nil {
				return conf.Errorf("cluster.tls."+f.field, "%v", err)
			}
		}
	}
	return nil
}

func isLoopback(hostport string) bool {
	host, _, err := net.SplitHostPort(hostport)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

var envRef = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)\}`)

// expandEnv replaces ${NAME} in every scalar value. An unset variable is an
// error naming the field, so a missing secret is caught at startup.
func expandEnv(n *yaml.Node, path string, env func(string) (string, bool)) error {
	switch n.Kind {
	case yaml.DocumentNode:
		for _, c := range n.Content {
			if err := expandEnv(c, path, env); err != nil {
				return err
			}
		}
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			p := n.Content[i].Value
			if path != "" {
				p = path + "." + p
			}
			if err := expandEnv(n.Content[i+1], p, env); err != nil {
				return err
			}
		}
	case yaml.SequenceNode:
		for i, c := range n.Content {
			if err := expandEnv(c, fmt.Sprintf("%s[%d]", path, i), env); err != nil {
				return err
			}
		}
	case yaml.ScalarNode:
		var missing string
		n.Value = envRef.ReplaceAllStringFunc(n.Value, func(ref string) string {
			name := ref[2 : len(ref)-1]
			v, ok := env(name)
			if !ok && missing == "" {
				missing = name
			}
			return v
		})
		if missing != "" {
			return &conf.FieldError{Path: path, Line: n.Line, Msg: fmt.Sprintf("environment variable %s is not set", missing)}
		}
	}
	return nil
}
