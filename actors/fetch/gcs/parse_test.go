package gcs

import (
	"fmt"
	"strings"
	"testing"
)

type collected struct {
	recs    []string
	bads    []string
	reasons []string
}

func (c *collected) record(rec []byte) error { c.recs = append(c.recs, string(rec)); return nil }
func (c *collected) bad(where string, raw []byte, reason string) error {
	c.bads = append(c.bads, fmt.Sprintf("%s: %s", where, raw))
	c.reasons = append(c.reasons, reason)
	return nil
}

func parseString(t *testing.T, parser, in string) *collected {
	t.Helper()
	var c collected
	if err := parse(parser, strings.NewReader(in), 1024, &c); err != nil {
		t.Fatalf("parse: %v", err)
	}
	return &c
}

func check(t *testing.T, got []string, want ...string) {
	t.Helper()
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestJSONLinesBrokenLineGoesAloneRestFlows(t *testing.T) {
	c := parseString(t, "json", "{\"a\":1}\n{\"b\":2\n{\"c\":3}\n\n{\"d\":4}\r\n")
	check(t, c.recs, `{"a":1}`, `{"c":3}`, `{"d":4}`)
	check(t, c.bads, `line 2: {"b":2`)
}

func TestJSONPrettyPrintedAndConcatenatedValues(t *testing.T) {
	c := parseString(t, "json", "{\n  \"a\": 1,\n  \"b\": {\"x\": [1, 2]}\n}\n{\"c\":3}{\"d\":4} {\"e\":5}\n")
	check(t, c.recs, `{"a":1,"b":{"x":[1,2]}}`, `{"c":3}`, `{"d":4}`, `{"e":5}`)
	check(t, c.bads)
}

func TestJSONNonObjectsAndLongLinesAreBad(t *testing.T) {
	long := `{"x":"` + strings.Repeat("y", 2000) + `"}`
	c := parseString(t, "json", "[1,2]\n"+long+"\n{\"ok\":true}\n{\"cut\":\n")
	check(t, c.recs, `{"ok":true}`)
	if len(c.bads) != 3 || !strings.HasPrefix(c.bads[0], "line 1: [1,2]") || !strings.HasPrefix(c.bads[1], "line 2: ") || !strings.HasPrefix(c.bads[2], "line 4: {\"cut\":") {
		t.Fatalf("bad: %q", c.bads)
	}
}

func TestJSONArrayStopsAtSyntaxErrorKeepingWhatCameBefore(t *testing.T) {
	c := parseString(t, "json_array", `[{"a":1}, {"b":2}, {"c": oops}, {"d":4}]`)
	check(t, c.recs, `{"a":1}`, `{"b":2}`)
	if len(c.bads) != 1 || !strings.Contains(c.bads[0], "oops") {
		t.Fatalf("bad: %q", c.bads)
	}
}

func TestCloudTrailExplodesRecords(t *testing.T) {
	c := parseString(t, "cloudtrail", `{"Records":[{"eventName":"A"},{"eventName":"B"}],"Other":{"x":1}}`)
	check(t, c.recs, `{"Records":[{"eventName":"A"}]}`, `{"Records":[{"eventName":"B"}]}`)
	check(t, c.bads)
}

func TestCSVHeaderAndBadRow(t *testing.T) {
	c := parseString(t, "csv", "user,action\nalice,login\nbob\n\"carol\",\"logout, then \"\"bye\"\"\"\n")
	check(t, c.recs, `{"user":"alice","action":"login"}`, `{"user":"carol","action":"logout, then \"bye\""}`)
	if len(c.bads) != 1 || !strings.HasPrefix(c.bads[0], "line 3: bob") {
		t.Fatalf("bad: %q", c.bads)
	}
}

func TestTextLines(t *testing.T) {
	c := parseString(t, "text", "first \"line\"\n\nsecond\n")
	check(t, c.recs, `{"text":"first \"line\""}`, `{"text":"second"}`)
}

func TestEventInputIsSwarms(t *testing.T) {
	n, err := parseNotice(map[string]string{"bucketId": "b", "objectId": "logs/x.json.gz", "objectGeneration": "1732000000123456", "eventType": "OBJECT_FINALIZE", "payloadFormat": "JSON_API_V1"},
		[]byte(`{"kind":"storage#object","name":"logs/x.json.gz","bucket":"b","generation":"1732000000123456","size":"2048","md5Hash":"XrY7u+Ae7tCTyyK7j1rNww==","timeCreated":"2026-11-24T10:00:00.123456Z"}`))
	if err != nil {
		t.Fatal(err)
	}
	got := string(n.eventInput())
	want := `{"cs":{"bucket":"b","name":"logs/x.json.gz"},"size":2048,"created_at":1795514400,"digests":[{"alg":"md5","value":"5eb63bbbe01eeed093cb22bb8f5acdc3"}],"data":{"kind":"storage#object","name":"logs/x.json.gz","bucket":"b","generation":"1732000000123456","size":"2048","md5Hash":"XrY7u+Ae7tCTyyK7j1rNww==","timeCreated":"2026-11-24T10:00:00.123456Z"}}`
	if got != want {
		t.Fatalf("event input\n got %s\nwant %s", got, want)
	}
	none, err := parseNotice(map[string]string{"bucketId": "b", "objectId": "o", "objectGeneration": "7", "eventType": "OBJECT_FINALIZE", "payloadFormat": "NONE"}, nil)
	if err != nil || none.Name != "o" || none.Generation != 7 || none.Size != -1 {
		t.Fatalf("NONE payload: %+v %v", none, err)
	}
	if _, err := parseNotice(map[string]string{"eventType": "OBJECT_FINALIZE"}, []byte("not json")); err == nil {
		t.Fatal("a payload that is not JSON was accepted")
	}
}

func TestCSVQuotedLineEndsStayInTheirField(t *testing.T) {
	c := parseString(t, "csv", "h1,h2\n\"a\nb\",c\n\nd,\"e\"\"\"\n")
	check(t, c.recs, `{"h1":"a\nb","h2":"c"}`, `{"h1":"d","h2":"e\""}`)
	check(t, c.bads)
}
