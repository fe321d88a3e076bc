package bigquery

import (
	"strings"
	"testing"
)

func TestJSONFieldsAreNotTypedToo(t *testing.T) {
	c := &Config{Name: "bq", Type: "bigquery", Project: "p", IntegerFields: []string{"n"}, JSONFields: []string{"raw", "n"}}
	c.SetDefaults()
	err := c.Validate()
	if err == nil || !strings.Contains(err.Error(), "json_fields") || !strings.Contains(err.Error(), "integer_fields") {
		t.Fatalf("err = %v, want json_fields named with integer_fields", err)
	}
}
