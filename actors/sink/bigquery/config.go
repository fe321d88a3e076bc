package bigquery

import (
	"net/url"
	"strings"
	"time"

	"github.com/valyala/fastjson"

	"github.com/sluicehq/sluice/internal/conf"
)

// Config is one `type: bigquery` sink.
type Config struct {
	Name            string `yaml:"name"`
	Type            string `yaml:"type"`
	Project         string `yaml:"project"`
	Dataset         string `yaml:"dataset"`  // for outputs that name no dataset
	Location        string `yaml:"location"` // of datasets it creates
	CredentialsFile string `yaml:"credentials_file"`
	CreateTables    *bool  `yaml:"create_tables"`   // default true
	Partition       string `yaml:"partition"`       // hour, day, month, year or none; a policy's partition wins; default day
	PartitionField  string `yaml:"partition_field"` // a TIMESTAMP column; default the timestamp column

	IDColumn        string   `yaml:"id_column"`        // default id
	TimestampColumn string   `yaml:"timestamp_column"` // default timestamp; partitions on it
	IntegerFields   []string `yaml:"integer_fields"`   // dotted paths in data typed INTEGER (else numbers are FLOAT)
	TimestampFields []string `yaml:"timestamp_fields"` // dotted paths in data typed TIMESTAMP
	// JSONFields are dotted paths in data stored whole as JSON columns, as
	// written: for values the typed columns change or refuse (nulls in
	// arrays, integers past 2^53, mixed or nested arrays, changing types).
	JSONFields []string `yaml:"json_fields"`

	BatchRows  int           `yaml:"batch_rows"`  // rows per AppendRows request; default 500
	BatchBytes conf.ByteSize `yaml:"batch_bytes"` // data per request; default 4MiB (BigQuery takes at most 10 MB)
	// BufferBytes bounds the OUT batches held in memory while their rows
	// are written (decoded rows take several times this); default 8MiB:
	// twice a default request, measured as fast as 32MiB and far smaller.
	BufferBytes conf.ByteSize `yaml:"buffer_bytes"`
	AckWait     conf.Duration `yaml:"ack_wait"`    // default 2m
	MaxBackoff  conf.Duration `yaml:"max_backoff"` // between retries of a failing append; default 30s
	// MaxSchemaWait bounds how long a row with new fields waits for the
	// widened schema to reach the write API; then it goes to the DLQ with
	// the reason. Default 10m (BigQuery documents minutes, not hours).
	MaxSchemaWait conf.Duration `yaml:"max_schema_wait"`

	// For emulators and tests: the REST endpoint (http://host:port) and
	// the Storage Write gRPC address (host:port, plaintext, no auth).
	Endpoint      string `yaml:"endpoint"`
	WriteEndpoint string `yaml:"write_endpoint"`
}

// SetDefaults fills in what the config left out.
func (c *Config) SetDefaults() {
	if c.CreateTables == nil {
		t := true
		c.CreateTables = &t
	}
	if c.Partition == "" {
		c.Partition = "day"
	}
	if c.IDColumn == "" {
		c.IDColumn = "id"
	}
	if c.TimestampColumn == "" {
		c.TimestampColumn = "timestamp"
	}
	if c.BatchRows == 0 {
		c.BatchRows = 500
	}
	if c.BatchBytes == 0 {
		c.BatchBytes = 4 << 20
	}
	if c.BufferBytes == 0 {
		c.BufferBytes = max(8<<20, c.BatchBytes)
	}
	if c.PartitionField == "" {
		c.PartitionField = c.TimestampColumn
	}
	if c.AckWait == 0 {
		c.AckWait = conf.Duration(120e9)
	}
	if c.MaxBackoff == 0 {
		c.MaxBackoff = conf.Duration(30e9)
	}
	if c.MaxSchemaWait == 0 {
		c.MaxSchemaWait = conf.Duration(10 * time.Minute)
	}
}

// Warnings names the insecure choices the config makes (sluice validate
// prints them, the node logs them at startup): an emulator's endpoints
// take no credentials, and its write endpoint is plaintext gRPC.
func (c *Config) Warnings() []conf.Warning {
	var ws conf.Warnings
	rest, _ := url.Parse(c.Endpoint)
	ws.If(c.Endpoint != "" && (rest == nil || !conf.LoopbackHost(rest.Hostname())), "endpoint", "an emulator off loopback: requests go without credentials to whatever answers there")
	ws.If(c.WriteEndpoint != "" && !conf.LoopbackAddr(c.WriteEndpoint), "write_endpoint", "off loopback: every row crosses the network in cleartext, without credentials")
	return ws
}

// Validate names the first field that is wrong.
func (c *Config) Validate() error {
	if c.Project == "" {
		return conf.Errorf("project", "required (the Google Cloud project that holds the datasets)")
	}
	switch c.Partition {
	case "hour", "day", "month", "year", "none":
	default:
		return conf.Errorf("partition", "%q: want hour, day, month, year or none", c.Partition)
	}
	if c.BatchRows < 1 || c.BatchRows > 50000 {
		return conf.Errorf("batch_rows", "%d: want 1 to 50000", c.BatchRows)
	}
	if c.BufferBytes < c.BatchBytes {
		return conf.Errorf("buffer_bytes", "%s: want at least batch_bytes (%s)", c.BufferBytes, c.BatchBytes)
	}
	if c.BatchBytes < 1024 || c.BatchBytes > 9<<20 {
		return conf.Errorf("batch_bytes", "%s: want 1KiB to 9MiB (BigQuery refuses requests over 10 MB)", c.BatchBytes)
	}
	if c.MaxSchemaWait < conf.Duration(time.Second) {
		return conf.Errorf("max_schema_wait", "%s: want at least 1s (a widened schema takes seconds to minutes to reach the write API)", c.MaxSchemaWait.D())
	}
	if (c.Endpoint == "") != (c.WriteEndpoint == "") {
		return conf.Errorf("write_endpoint", "endpoint and write_endpoint go together (an emulator serves both)")
	}
	if c.Endpoint != "" && c.CredentialsFile != "" {
		return conf.Errorf("credentials_file", "not used with an emulator endpoint")
	}
	for _, f := range []string{c.IDColumn, c.TimestampColumn} {
		if !validColumn(f) {
			return conf.Errorf("id_column", "%q is not a valid column name", f)
		}
	}
	typed := map[string]string{}
	for field, paths := range map[string][]string{"integer_fields": c.IntegerFields, "timestamp_fields": c.TimestampFields} {
		for _, p := range paths {
			typed[p] = field
		}
	}
	for _, p := range c.JSONFields {
		if field, ok := typed[p]; ok {
			return conf.Errorf("json_fields", "%s is in %s too: a path is stored as JSON or typed, not both", p, field)
		}
	}
	if strings.EqualFold(c.IDColumn, c.TimestampColumn) {
		return conf.Errorf("timestamp_column", "must differ from id_column (BigQuery column names ignore case)")
	}
	return nil
}

func (c *Config) rules() Rules {
	r := Rules{IDColumn: c.IDColumn, TimestampColumn: c.TimestampColumn, Integer: map[string]bool{}, Timestamp: map[string]bool{},
		JSON: map[string]bool{}, parsers: &fastjson.ParserPool{}}
	for _, f := range c.JSONFields {
		r.JSON[f] = true
	}
	for _, f := range c.IntegerFields {
		r.Integer[f] = true
	}
	for _, f := range c.TimestampFields {
		r.Timestamp[f] = true
	}
	return r
}
