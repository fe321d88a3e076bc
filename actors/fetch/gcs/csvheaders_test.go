package gcs

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// A CSV header that names a column twice kept only the last column's
// value (the record held the key twice; JSON decoders keep the last).
// By default each column is kept, the repeats with a suffix that no
// other header has.
func TestCSVRepeatedHeadersAreKeptWithASuffix(t *testing.T) {
	c := parseString(t, "csv", "name,action,name,name_2,name\na,b,c,d,e\n")
	check(t, c.bads)
	check(t, c.recs, `{"name":"a","action":"b","name_3":"c","name_2":"d","name_4":"e"}`)
}

// With csv_duplicate_headers: refuse, such an object is not read: it
// goes to the DLQ as its notification, to re-drive once the option or
// the file is changed.
func TestCSVRepeatedHeadersRefusedSendTheNotificationToTheDLQ(t *testing.T) {
	var c collected
	err := parseWith("csv", strings.NewReader("name,name\na,b\n"), parseOptions{maxRecord: 1024, csvDuplicates: "refuse"}, &c)
	var ro *objectRefused
	if !errors.As(err, &ro) || !strings.Contains(ro.reason, `"name"`) || len(c.recs) != 0 {
		t.Fatalf("err %v, records %q", err, c.recs)
	}

	fx := newFixture(t, t.TempDir(), 256<<20, func(c *Config) { c.CSVDuplicateHeaders = "refuse" })
	fx.start()
	upload(t, fx.gs, "logs/dup.csv", []byte("user,user\nalice,bob\n"), "")
	upload(t, fx.gs, "logs/ok.csv", []byte("user,action\nalice,login\n"), "")
	fx.waitRecords(1, 10*time.Second)
	fx.waitNotifications("refused", 1)
	dlq := fx.dlq()
	if len(dlq) != 1 || !strings.HasSuffix(dlq[0].Header.Get("Sluice-Record-Id"), "/notification") ||
		!strings.Contains(dlq[0].Header.Get("Sluice-Reason"), "csv_duplicate_headers") {
		t.Fatalf("DLQ: %d entries: %v", len(dlq), dlq)
	}
}
