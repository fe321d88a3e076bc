package splunk

import (
	"bytes"
	"encoding/json"
	"math"
	"net/http"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/sluicehq/sluice/queue/batch"
)

// Whatever a HEC endpoint (or a proxy in front of it) answers, the sink
// reads it and decides; it never panics.
func FuzzHECAnswer(f *testing.F) {
	f.Add(200, []byte(`{"text":"Success","code":0}`))
	f.Add(400, []byte(`{"text":"Invalid data format","code":6,"invalid-event-number":3}`))
	f.Add(400, []byte(`{"text":"x","code":6,"invalid-event-number":-7}`))
	f.Add(503, []byte(`{"text":"Server is busy","code":9}`))
	f.Add(403, []byte(`{"text":"Invalid token","code":4}`))
	f.Add(502, []byte("<html>bad gateway</html>"))
	f.Add(200, []byte(`{"code":"zero"}`))
	f.Add(200, []byte("<html><title>Maintenance</title></html>"))
	f.Add(200, []byte(""))
	f.Add(200, []byte(`{"status":"ok"}`))
	f.Add(302, []byte("moved"))
	f.Add(400, []byte("<h1>400 Bad Request</h1> Splunk fuzz-token-1234"))
	c := &hecClient{auth: "Splunk fuzz-token-1234"}
	f.Fuzz(func(t *testing.T, status int, body []byte) {
		r := c.readResult(status, http.Header{"Location": {"https://x/?t=fuzz-token-1234"}}, body)
		o := classify(r)
		text := r.String()
		if o < accepted || o > pause {
			t.Fatalf("outcome %d", o)
		}
		if o == accepted && !(r.hec && r.reply.Code == 0 && status >= 200 && status < 300) {
			t.Fatalf("HTTP %d %q accepted: only HEC's own success may", status, body)
		}
		if !r.hec && (strings.Contains(text, "fuzz-token-1234") || utf8.RuneCountInString(r.snippet) > snippetRunes+1) {
			t.Fatalf("answer text %q: token or too long", text)
		}
	})
}

// Any OUT record renders to a valid HEC event with an event field, or is
// refused with a reason.
func FuzzRender(f *testing.F) {
	f.Add([]byte(`{"id":"a/1","timestamp":1795000000.5,"data":{"user":"alice"},"index":"sec","fields":{"k":"v"}}`), "")
	f.Add([]byte(`{"id":"a/2","timestamp":1,"data":"text"}`), "replay-1")
	f.Add([]byte(`{"id":"a/3","timestamp":1,"data":null}`), "")
	f.Add([]byte(`{"id":"\u2028","timestamp":-1e308,"data":[1,2],"host":"\u0000"}`), "r\"x")
	cfg := &Config{Name: "splunk", Index: "main", Sourcetype: "sluice"}
	s := &Sink{cfg: cfg, defaults: newDefaults(cfg)}
	f.Fuzz(func(t *testing.T, record []byte, replay string) {
		out, err := s.render(nil, record, replay, "")
		if err != nil {
			return
		}
		var ev map[string]json.RawMessage
		if err := json.Unmarshal(out, &ev); err != nil {
			t.Fatalf("rendered %q from %q: not JSON: %v", out, record, err)
		}
		if e := ev["event"]; len(e) == 0 || string(e) == "null" {
			t.Fatalf("rendered %q without an event", out)
		}
	})
}

// A record the transform wrote (AppendJSON: data last) renders the same
// through the data-last shortcut as through the checked path.
func FuzzRenderDataLast(f *testing.F) {
	f.Add("a/1", 1795000000.5, []byte(`{"user":"alice","x":{"y":[1,"}"]}}`), "sec", "h\"ost", "k", "v", "")
	f.Add("", -1.0, []byte(` "text" `), "", "", "", "", "replay-1")
	f.Add("\u2028", 0.0, []byte(`[1,2]`), "", "", "a", "", "")
	cfg := &Config{Name: "splunk", Index: "main", Sourcetype: "sluice"}
	s := &Sink{cfg: cfg, defaults: newDefaults(cfg)}
	f.Fuzz(func(t *testing.T, id string, ts float64, data []byte, index, host, fk, fv, replay string) {
		if !json.Valid(data) || math.IsNaN(ts) || math.IsInf(ts, 0) {
			return
		}
		o := batch.Output{ID: id, Timestamp: ts, Data: data, Index: index, Host: host}
		if fk != "" {
			o.Fields = map[string]any{fk: fv}
		}
		rec, err := o.AppendJSON(nil)
		if err != nil {
			return
		}
		want, wantErr := s.render(nil, rec, replay, "")
		got, err := s.render(nil, rec, replay, batch.EncodedDataLast)
		if (err == nil) != (wantErr == nil) || !bytes.Equal(got, want) {
			t.Fatalf("record %s: data-last %q, %v; checked %q, %v", rec, got, err, want, wantErr)
		}
	})
}
