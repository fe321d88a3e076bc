package node

import (
	"fmt"
	"math"
	"sort"

	"gopkg.in/yaml.v3"

	"github.com/sluicehq/sluice/internal/conf"
	"github.com/sluicehq/sluice/node/ops"
)

// An insecureSetting turns a protection off by name. One that is on makes
// validate warn, the node log it at startup, and status and the
// sluice_insecure gauge show it.
type insecureSetting struct {
	what    string // what it exposes: the gauge's label (cluster_routes)
	setting string // the field that turns it on (cluster.insecure)
	on      bool
	why     string // the warning
}

// insecureSettings lists every such setting, on or off (the gauge shows
// each): one line per setting.
func (c *Config) insecureSettings() []insecureSetting {
	return []insecureSetting{
		{"cluster_routes", "cluster.insecure", c.Cluster != nil && c.Cluster.Insecure,
			"routes run without TLS: any host that reaches cluster.listen can join as a route and read, publish into or purge every stream"},
		{"client_listeners", "node.insecure", c.Node.Insecure,
			"the admin API and the NATS client port serve cleartext: off loopback, tokens and records cross the network readable"},
		{"admin_writes", "node.admin_loopback_writes", c.Node.AdminLoopbackWrites,
			"a loopback admin API without admin_token takes replays, re-drives and purges from any local process or user"},
	}
}

// InsecureSettings are the settings for ops' status and gauge.
func (c *Config) InsecureSettings() []ops.InsecureSetting {
	var out []ops.InsecureSetting
	for _, s := range c.insecureSettings() {
		out = append(out, ops.InsecureSetting{What: s.what, Setting: s.setting, On: s.on})
	}
	return out
}

// Warnings are the insecure choices the config makes and is allowed to
// make, in file order: settings that turn a protection off, the sources'
// and sinks' own (TLS verification off, cleartext endpoints), and
// secrets written in the file instead of ${NAME}. Validate prints them;
// the node logs them at startup.
func (c *Config) Warnings() []conf.Warning {
	var ws []conf.Warning
	for _, s := range c.insecureSettings() {
		if s.on {
			ws = append(ws, conf.Warning{Path: s.setting, Msg: "true: " + s.why})
		}
	}
	ws = append(ws, componentWarnings("sources", c.Sources)...)
	ws = append(ws, componentWarnings("sinks", c.Sinks)...)
	ws = append(ws, c.literalSecrets()...)
	for i := range ws {
		if ws[i].Line == 0 {
			ws[i].Line = c.raw[ws[i].Path].line
		}
	}
	sort.SliceStable(ws, func(a, b int) bool { return lineOrLast(ws[a].Line) < lineOrLast(ws[b].Line) })
	return ws
}

func lineOrLast(line int) int {
	if line == 0 {
		return math.MaxInt
	}
	return line
}

func componentWarnings(field string, comps []Component) []conf.Warning {
	var ws []conf.Warning
	for i, c := range comps {
		w, ok := c.Decoded.(conf.Warner)
		if !ok {
			continue
		}
		for _, x := range w.Warnings() {
			x.Path = fmt.Sprintf("%s[%d].%s", field, i, x.Path)
			ws = append(ws, x)
		}
	}
	return ws
}

// literalSecrets warns about every secret written in the file: a config
// file is copied, committed and shown; the environment (or a file of the
// service manager's) is where a secret belongs.
func (c *Config) literalSecrets() []conf.Warning {
	paths := conf.SecretPaths(c)
	for i, comp := range c.Sources {
		paths = append(paths, prefixed(fmt.Sprintf("sources[%d]", i), conf.SecretPaths(comp.Decoded))...)
	}
	for i, comp := range c.Sinks {
		paths = append(paths, prefixed(fmt.Sprintf("sinks[%d]", i), conf.SecretPaths(comp.Decoded))...)
	}
	var ws []conf.Warning
	for _, p := range paths {
		if r, ok := c.raw[p]; ok && !r.env {
			ws = append(ws, conf.Warning{Path: p, Line: r.line, Msg: "a secret written in the file: use ${NAME} and set NAME in the environment"})
		}
	}
	return ws
}

func prefixed(prefix string, paths []string) []string {
	for i, p := range paths {
		paths[i] = prefix + "." + p
	}
	return paths
}

// rawScalar is a value as the file wrote it, before ${NAME} expansion.
type rawScalar struct {
	line int
	env  bool // refers to the environment
}

// rawScalars records every scalar of n by its path, named as expandEnv
// and errors name it.
func rawScalars(n *yaml.Node, path string, out map[string]rawScalar) map[string]rawScalar {
	switch n.Kind {
	case yaml.DocumentNode:
		for _, c := range n.Content {
			rawScalars(c, path, out)
		}
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			p := n.Content[i].Value
			if path != "" {
				p = path + "." + p
			}
			rawScalars(n.Content[i+1], p, out)
		}
	case yaml.SequenceNode:
		for i, c := range n.Content {
			rawScalars(c, fmt.Sprintf("%s[%d]", path, i), out)
		}
	case yaml.ScalarNode:
		out[path] = rawScalar{line: n.Line, env: envRef.MatchString(n.Value)}
	}
	return out
}
