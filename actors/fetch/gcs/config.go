// Package gcs is the Google Cloud Storage source: it receives a bucket's
// object-finalize notifications through a Pub/Sub pull subscription, reads
// each object as the event policy says, publishes its records to RAW and
// acks the notification only after JetStream acked every one of them.
package gcs

import (
	"os"
	"slices"
	"time"

	"github.com/sluicehq/sluice/internal/conf"
)

// Config is one `type: gcs` source.
type Config struct {
	Name         string `yaml:"name"`
	Type         string `yaml:"type"`
	Project      string `yaml:"project"`
	Subscription string `yaml:"subscription"` // an existing pull subscription on the bucket's notification topic
	// CredentialsFile is a service-account key; default: Application
	// Default Credentials (or none, with PUBSUB_EMULATOR_HOST and
	// STORAGE_EMULATOR_HOST set).
	CredentialsFile    string        `yaml:"credentials_file"`
	MaxObjectsInFlight int           `yaml:"max_objects_in_flight"` // default 8
	MaxObjectBytes     conf.ByteSize `yaml:"max_object_bytes"`      // stored size; default 1GiB; larger goes to the DLQ
	// MaxDecompressedBytes bounds an object's bytes as parsed, after gzip
	// or zstd: a decompression bomb is cut there and goes to the DLQ;
	// default 1GiB, or max_object_bytes when that is larger.
	MaxDecompressedBytes conf.ByteSize `yaml:"max_decompressed_bytes"`
	// MaxRecordBytes bounds one record (and one pretty-printed JSON value
	// gathered over several lines); default 1MiB.
	MaxRecordBytes conf.ByteSize `yaml:"max_record_bytes"`
	// MaxBatchBytes cuts an object's records into RAW messages; default 256KiB.
	MaxBatchBytes conf.ByteSize `yaml:"max_batch_bytes"`
	// MaxExtension is how long a notification's lease is extended while its
	// object is read; default 60m.
	MaxExtension conf.Duration `yaml:"max_extension"`
	// LeasePeriod is how far each extension pushes the ack deadline, and so
	// how long a crashed node's notifications wait before Pub/Sub hands
	// them out again; default 60s.
	LeasePeriod conf.Duration `yaml:"lease_period"`
	// Parser, Compress and Schema fix how every object is read; with Schema
	// set the event policy is not asked.
	Parser   string `yaml:"parser"`   // json (default), json_array, cloudtrail, csv, text
	Compress string `yaml:"compress"` // "", gzip or zstd; the bytes' magic number wins
	Schema   string `yaml:"schema"`
	// CSVDuplicateHeaders is what a CSV header that names a column twice
	// does: "suffix" (default) keeps every column, the repeats renamed
	// name_2, name_3, …; "refuse" sends the object's notification to the
	// DLQ unread.
	CSVDuplicateHeaders string `yaml:"csv_duplicate_headers"`
}

// Parsers are the record formats an object can be read as.
var Parsers = []string{"json", "json_array", "cloudtrail", "csv", "text"}

// SetDefaults fills in what the config left out.
func (c *Config) SetDefaults() {
	if c.Project == "" {
		c.Project = os.Getenv("GOOGLE_CLOUD_PROJECT")
	}
	if c.MaxObjectsInFlight == 0 {
		c.MaxObjectsInFlight = 8
	}
	if c.MaxObjectBytes == 0 {
		c.MaxObjectBytes = 1 << 30
	}
	if c.MaxDecompressedBytes == 0 {
		c.MaxDecompressedBytes = max(1<<30, c.MaxObjectBytes)
	}
	if c.MaxRecordBytes == 0 {
		c.MaxRecordBytes = 1 << 20
	}
	if c.MaxBatchBytes == 0 {
		c.MaxBatchBytes = 256 << 10
	}
	if c.LeasePeriod == 0 {
		c.LeasePeriod = conf.Duration(60 * time.Second)
	}
	if c.CSVDuplicateHeaders == "" {
		c.CSVDuplicateHeaders = "suffix"
	}
	if c.MaxExtension == 0 {
		c.MaxExtension = conf.Duration(60 * time.Minute)
	}
}

// Validate names the first field that is wrong.
func (c *Config) Validate() error {
	switch {
	case c.Project == "":
		return conf.Errorf("project", "required (or set GOOGLE_CLOUD_PROJECT)")
	case c.Subscription == "":
		return conf.Errorf("subscription", "required: a pull subscription on the bucket's notification topic")
	case c.MaxObjectsInFlight < 1:
		return conf.Errorf("max_objects_in_flight", "%d: at least 1", c.MaxObjectsInFlight)
	case c.MaxBatchBytes < 1024 || c.MaxBatchBytes > 4<<20:
		return conf.Errorf("max_batch_bytes", "%s: want 1KiB to 4MiB", c.MaxBatchBytes)
	case c.MaxDecompressedBytes < 1024:
		return conf.Errorf("max_decompressed_bytes", "%s: at least 1KiB", c.MaxDecompressedBytes)
	case c.MaxRecordBytes < 1024:
		return conf.Errorf("max_record_bytes", "%s: at least 1KiB", c.MaxRecordBytes)
	case c.LeasePeriod.D() < 10*time.Second || c.LeasePeriod.D() > 10*time.Minute:
		return conf.Errorf("lease_period", "%s: want 10s to 10m (Pub/Sub's ack deadline range)", c.LeasePeriod)
	case c.Parser != "" && !slices.Contains(Parsers, c.Parser):
		return conf.Errorf("parser", "%q: want one of %v", c.Parser, Parsers)
	case c.Compress != "" && c.Compress != "gzip" && c.Compress != "zstd":
		return conf.Errorf("compress", "%q: want gzip, zstd or empty", c.Compress)
	case c.CSVDuplicateHeaders != "suffix" && c.CSVDuplicateHeaders != "refuse":
		return conf.Errorf("csv_duplicate_headers", "%q: want suffix or refuse", c.CSVDuplicateHeaders)
	case c.Parser != "" && c.Schema == "":
		return conf.Errorf("parser", "set only together with schema (else the event policy decides)")
	}
	if c.CredentialsFile != "" {
		if _, err := os.Stat(c.CredentialsFile); err != nil {
			return conf.Errorf("credentials_file", "%v", err)
		}
	}
	return nil
}

// headerRoom is what a RAW message's headers may take beside its records
// (the event header holds the object resource, with its metadata).
const headerRoom = 64 << 10

// fitsMessages refuses a max_record_bytes or max_batch_bytes that cannot
// fit one buffer message of maxPayload bytes.
func (c *Config) fitsMessages(maxPayload int64) error {
	room := maxPayload - headerRoom
	switch {
	case int64(c.MaxRecordBytes) > room:
		return conf.Errorf("max_record_bytes", "%s: a record must fit one buffer message (max payload %s, less %s for headers)", c.MaxRecordBytes, conf.ByteSize(maxPayload), conf.ByteSize(headerRoom))
	case int64(c.MaxBatchBytes) > room:
		return conf.Errorf("max_batch_bytes", "%s: a batch must fit one buffer message (max payload %s, less %s for headers)", c.MaxBatchBytes, conf.ByteSize(maxPayload), conf.ByteSize(headerRoom))
	}
	return nil
}
