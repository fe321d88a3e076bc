package component

import (
	"context"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/sluicehq/sluice/actors"
	"github.com/sluicehq/sluice/internal/conf"
	"github.com/sluicehq/sluice/queue/batch"
)

type fakeConfig struct {
	Name  string `yaml:"name"`
	Type  string `yaml:"type"`
	URL   string `yaml:"url"`
	Batch int    `yaml:"batch"`
}

func (c *fakeConfig) SetDefaults() {
	if c.Batch == 0 {
		c.Batch = 10
	}
}

func (c *fakeConfig) Validate() error {
	if c.URL == "" {
		return conf.Errorf("url", "required")
	}
	return nil
}

func fakeSink(name string, takes func(*batch.Output) bool) *Spec {
	return Sink(Type[fakeConfig]{
		Name: name,
		New: func(c *fakeConfig, d Deps) (actors.Actor, error) {
			return actors.ActorFunc(func(context.Context, *actors.Health) error { return nil }), nil
		},
		Describe: func(c *fakeConfig) string { return c.URL },
		Takes:    takes,
	})
}

func decodeYAML(t *testing.T, spec *Spec, src string) (any, error) {
	t.Helper()
	var n yaml.Node
	if err := yaml.Unmarshal([]byte(src), &n); err != nil {
		t.Fatal(err)
	}
	return spec.Decode(n.Content[0])
}

// A spec decodes strictly, fills in defaults, validates naming the field,
// builds from what it decoded and describes it.
func TestSpecDecodesBuildsAndDescribes(t *testing.T) {
	s := fakeSink("fake", nil)
	cfg, err := decodeYAML(t, s, "{name: a, type: fake, url: http://x}")
	if err != nil {
		t.Fatal(err)
	}
	if c := cfg.(*fakeConfig); c.Batch != 10 || c.Name != "a" {
		t.Fatalf("decoded %+v, want the default batch 10 and the name", c)
	}
	if got := s.Describe(cfg); got != "http://x" {
		t.Fatalf("described as %q", got)
	}
	if _, err := s.Build(cfg, Deps{}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Build(&struct{}{}, Deps{}); err == nil {
		t.Fatal("built from another type's config")
	}
	for src, want := range map[string]string{
		"{name: a, type: fake}":                    "url: required",
		"{name: a, type: fake, url: x, batchh: 2}": `batchh (line 1): unknown key "batchh"`,
		"{name: a, type: fake, url: x, batch: b}":  "batch (line 1)",
	} {
		if _, err := decodeYAML(t, s, src); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: err %v, want %q", src, err, want)
		}
	}
}

func TestRegistryFindsTypesAndRefusesTwoOfOneName(t *testing.T) {
	r := NewRegistry(fakeSink("b", nil), fakeSink("a", nil), Source(Type[fakeConfig]{Name: "a"}))
	if s, ok := r.Sink("a"); !ok || !s.IsSink() {
		t.Fatal("sink a not found")
	}
	if s, ok := r.Source("a"); !ok || s.IsSink() {
		t.Fatal("source a not found")
	}
	if _, ok := r.Source("b"); ok {
		t.Fatal("a sink found as a source")
	}
	if got := strings.Join(r.SinkNames(), ","); got != "a,b" {
		t.Fatalf("sink names %s", got)
	}
	var none *Registry
	if _, ok := none.Sink("a"); ok || len(none.SourceNames()) != 0 {
		t.Fatal("a nil registry has types")
	}
	defer func() {
		if recover() == nil {
			t.Fatal("two sink types named a were taken")
		}
	}()
	r.Add(fakeSink("a", nil))
}

// An output that names no sink goes to the only sink of the first type
// that takes it; the errors say what is missing, as the DLQ shows them.
func TestRouterPicksTheSinkOfAnOutput(t *testing.T) {
	r := NewRegistry(
		fakeSink("hec", func(o *batch.Output) bool { return o.Table == "" }),
		fakeSink("bq", func(o *batch.Output) bool { return o.Table != "" }),
		fakeSink("tape", nil),
	)
	rt := NewRouter(r, map[string]string{"splunk": "hec", "t1": "tape", "b1": "bq", "b2": "bq"})
	table := &batch.Output{Table: "x"}
	cases := []struct {
		sink string
		o    *batch.Output
		want string
	}{
		{"t1", &batch.Output{}, "t1"},
		{"", &batch.Output{}, "splunk"},
		{"nowhere", &batch.Output{}, `field sink: no sink named "nowhere" is configured`},
		{"", table, "field sink: not set, and there are several bq sinks ([b1 b2]): name one"},
	}
	for _, c := range cases {
		got, err := rt.SinkFor(c.sink, c.o)
		if err != nil {
			got = err.Error()
		}
		if got != c.want {
			t.Errorf("sink %q, table %q: got %s, want %s", c.sink, c.o.Table, got, c.want)
		}
	}
	if _, err := NewRouter(r, map[string]string{"t1": "tape"}).SinkFor("", table); err == nil || err.Error() != "field sink: not set, and no bq sink is configured" {
		t.Errorf("no bq sink: %v", err)
	}
	if _, err := NewRouter(NewRegistry(fakeSink("tape", nil)), map[string]string{"t1": "tape"}).SinkFor("", table); err == nil || !strings.Contains(err.Error(), "no sink type takes this output") {
		t.Errorf("no type takes it: %v", err)
	}
}
