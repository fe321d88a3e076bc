package gcs

import (
	"bytes"
	"testing"
)

// Windows tools and Excel's "CSV UTF-8" start a file with a UTF-8
// byte-order mark. It is not part of the first record, for any parser.
func TestLeadingByteOrderMarkIsNotPartOfTheFirstRecord(t *testing.T) {
	const bom = "\xef\xbb\xbf"
	for _, tc := range []struct {
		parser, in string
		want       []string
	}{
		{"json", bom + "{\"a\":1}\n{\"b\":2}\n", []string{`{"a":1}`, `{"b":2}`}},
		{"json", bom + "{\n  \"a\": {}\n}\n", []string{`{"a":{}}`}},
		{"json_array", bom + `[{"a":1}]`, []string{`{"a":1}`}},
		{"cloudtrail", bom + `{"Records":[{"eventName":"A"}]}`, []string{`{"Records":[{"eventName":"A"}]}`}},
		{"csv", bom + "name,action\nalice,login\n", []string{`{"name":"alice","action":"login"}`}},
		{"text", bom + "first\n", []string{`{"text":"first"}`}},
	} {
		t.Run(tc.parser, func(t *testing.T) {
			c := parseString(t, tc.parser, tc.in)
			check(t, c.bads)
			check(t, c.recs, tc.want...)
		})
	}
	// The mark is looked for after decompression: it is the text's.
	body, done, err := decompress(bytes.NewReader(gzipped([]byte(bom+"h\nv\n"))), "gzip")
	if err != nil {
		t.Fatal(err)
	}
	defer done()
	var c collected
	if err := parse("csv", body, 1024, &c); err != nil {
		t.Fatal(err)
	}
	check(t, c.recs, `{"h":"v"}`)
	// Only a leading one: a BOM inside a line is data.
	c = *parseString(t, "text", "a\xef\xbb\xbfb\n")
	check(t, c.recs, "{\"text\":\"a\ufeffb\"}")
}
