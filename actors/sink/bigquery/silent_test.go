package bigquery

import (
	"testing"

	"cloud.google.com/go/bigquery"

	"github.com/sluicehq/sluice/queue/batch"
)

// What the sink changes on the way without a word, pinned so that a
// change to it is a decision (README, BigQuery sink, "Changed silently").
func TestPrepareSilentChangesArePinned(t *testing.T) {
	rules := Rules{IDColumn: "id", TimestampColumn: "timestamp", Integer: map[string]bool{"actor_id": true}}
	r, err := rules.Prepare(&batch.Output{ID: "r", Timestamp: 1, Data: []byte(
		`{"tags":["a",null,"b"],"big":9007199254740993,"actor_id":9007199254740993,"name":"alice","name":"bob"}`)})
	if err != nil {
		t.Fatal(err)
	}
	v := r.Values
	// A null inside an array is dropped: the elements after it move up.
	if tags, _ := v["tags"].([]any); len(tags) != 2 || tags[0] != "a" || tags[1] != "b" {
		t.Fatalf("tags: %#v", v["tags"])
	}
	// A number outside integer_fields is a FLOAT: past 2^53 it is rounded.
	if v["big"] != float64(9007199254740992) {
		t.Fatalf("big: %#v", v["big"])
	}
	if v["actor_id"] != int64(9007199254740993) {
		t.Fatalf("actor_id: %#v", v["actor_id"])
	}
	// Of a key repeated in one object (a CSV file's repeated header), the last wins.
	if v["name"] != "bob" {
		t.Fatalf("name: %#v", v["name"])
	}
	for _, f := range r.Schema {
		if f.Name == "big" && f.Type != bigquery.FloatFieldType {
			t.Fatalf("big inferred %s", f.Type)
		}
	}
}
