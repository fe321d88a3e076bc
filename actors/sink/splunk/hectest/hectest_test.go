package hectest

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

func post(t *testing.T, url, token, body string, hdr map[string]string) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest("POST", url, strings.NewReader(body))
	if token != "" {
		req.Header.Set("Authorization", "Splunk "+token)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	data, _ := io.ReadAll(resp.Body)
	_ = json.Unmarshal(data, &out)
	return resp.StatusCode, out
}

func TestAnswersLikeSplunk(t *testing.T) {
	s, err := NewServer(Options{Token: "tok"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	u := s.URL + "/services/collector/event"
	cases := []struct {
		token, body string
		status      int
		code        float64
		invalid     float64 // -1: absent
	}{
		{"", `{"event":"a"}`, 401, 2, -1},
		{"nope", `{"event":"a"}`, 403, 4, -1},
		{"tok", ``, 400, 5, -1},
		{"tok", `{"event":"a"}{"time":1}`, 400, 12, 1},
		{"tok", `{"event":""}`, 400, 13, 0},
		{"tok", `{"event":"a"}{"event":"b"} {not json`, 400, 6, 2},
		{"tok", `{"event":{"k":"v"},"time":1.5}{"event":"x","index":"main"}`, 200, 0, -1},
	}
	for _, c := range cases {
		st, out := post(t, u, c.token, c.body, nil)
		if st != c.status || out["code"] != c.code {
			t.Errorf("%q: %d %v, want %d code %v", c.body, st, out, c.status, c.code)
		}
		inv, has := out["invalid-event-number"]
		if (c.invalid < 0) == has || (has && inv != c.invalid) {
			t.Errorf("%q: invalid-event-number %v, want %v", c.body, inv, c.invalid)
		}
	}
	// Events before a bad one were indexed: a, a, b from the failures, then the 2 good.
	if n := s.Count(); n != 5 {
		t.Fatalf("accepted %d events, want 5", n)
	}
}

func TestGzipFaultsAndAcks(t *testing.T) {
	var out bytes.Buffer
	s, err := NewServer(Options{Token: "tok", Out: &out, Ack: true, AckDelay: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write([]byte(`{"event":"zipped"}`))
	zw.Close()
	req, _ := http.NewRequest("POST", s.URL+"/services/collector/event", &gz)
	req.Header.Set("Authorization", "Splunk tok")
	req.Header.Set("Content-Encoding", "gzip")
	req.Header.Set("X-Splunk-Request-Channel", "11111111-1111-1111-1111-111111111111")
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("gzip post: %v %v", resp, err)
	}
	var rep map[string]any
	json.NewDecoder(resp.Body).Decode(&rep)
	if rep["ackId"] != float64(0) {
		t.Fatalf("reply %v, want ackId 0", rep)
	}
	if st, r := post(t, s.URL+"/services/collector/event", "tok", `{"event":"x"}`, nil); st != 400 || r["code"] != float64(10) {
		t.Fatalf("no channel with acks on: %d %v", st, r)
	}
	ch := map[string]string{"X-Splunk-Request-Channel": "11111111-1111-1111-1111-111111111111"}
	_, r := post(t, s.URL+"/services/collector/ack", "tok", `{"acks":[0]}`, ch)
	if r["acks"].(map[string]any)["0"] != false {
		t.Fatalf("acked before indexed: %v", r)
	}
	time.Sleep(60 * time.Millisecond)
	_, r = post(t, s.URL+"/services/collector/ack", "tok", `{"acks":[0]}`, ch)
	if r["acks"].(map[string]any)["0"] != true {
		t.Fatalf("not acked after delay: %v", r)
	}
	_, r = post(t, s.URL+"/services/collector/ack", "tok", `{"acks":[0]}`, ch)
	if r["acks"].(map[string]any)["0"] != false {
		t.Fatalf("a true must be reported once: %v", r)
	}
	if strings.TrimSpace(out.String()) != `{"event":"zipped"}` {
		t.Fatalf("out file: %q", out.String())
	}

	s.Busy(1)
	if st, r := post(t, s.URL+"/services/collector/event", "tok", `{"event":"x"}`, ch); st != 503 || r["code"] != float64(9) {
		t.Fatalf("busy: %d %v", st, r)
	}
	s.Down()
	if _, err := http.Post(s.URL+"/services/collector/health", "", nil); err == nil {
		t.Fatal("down, yet a connection succeeded")
	}
	if err := s.Up(); err != nil {
		t.Fatal(err)
	}
	if st, _ := post(t, s.URL+"/services/collector/health", "", "", nil); st != 200 {
		t.Fatalf("health after up: %d", st)
	}
}

func TestInjectedAnswers(t *testing.T) {
	s, err := NewServer(Options{Token: "tok"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	u := s.URL + "/services/collector/event"
	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	raw := func(path string) (int, http.Header, string) {
		t.Helper()
		req, _ := http.NewRequest("POST", s.URL+path, strings.NewReader(`{"event":"a"}`))
		req.Header.Set("Authorization", "Splunk tok")
		resp, err := noFollow.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header, string(b)
	}

	s.ProxyHTML(true)
	for _, p := range []string{"/services/collector/event", "/services/collector/ack", "/services/collector/health"} {
		if st, h, body := raw(p); st != 200 || !strings.HasPrefix(h.Get("Content-Type"), "text/html") || !strings.Contains(body, "maintenance") {
			t.Fatalf("proxy page on %s: %d %v %q", p, st, h, body)
		}
	}
	s.ProxyHTML(false)

	s.Redirect(http.StatusFound, "https://login.example/sso")
	if st, h, _ := raw("/services/collector/event"); st != 302 || h.Get("Location") != "https://login.example/sso" {
		t.Fatalf("redirect: %d %v", st, h)
	}
	s.Redirect(0, "")

	s.Answer(func(r *http.Request) (int, http.Header, []byte) {
		if r.URL.Path == "/services/collector/ack" {
			return 400, http.Header{"Content-Type": {"application/json"}}, []byte(`{"text":"ACK is disabled","code":14}`)
		}
		return 0, nil, nil
	})
	if st, _, body := raw("/services/collector/ack"); st != 400 || !strings.Contains(body, `"code":14`) {
		t.Fatalf("answer override: %d %q", st, body)
	}
	if st, out := post(t, u, "tok", `{"event":"a"}`, nil); st != 200 || out["code"] != float64(0) {
		t.Fatalf("status 0 leaves the request to the stand-in: %d %v", st, out)
	}
	s.Answer(nil)
	if s.Count() != 1 {
		t.Fatalf("accepted %d events, want only the one not faulted", s.Count())
	}
	if s.AckRequests() != 2 {
		t.Fatalf("%d ack requests, want 2", s.AckRequests())
	}

	// UseACK(false): success without ackId, and the ack endpoint refuses.
	s.UseACK(true)
	ch := map[string]string{"X-Splunk-Request-Channel": "11111111-1111-1111-1111-111111111111"}
	if _, out := post(t, u, "tok", `{"event":"a"}`, ch); out["ackId"] == nil {
		t.Fatalf("useACK on: no ackId in %v", out)
	}
	s.UseACK(false)
	if st, out := post(t, u, "tok", `{"event":"a"}`, ch); st != 200 || out["code"] != float64(0) || out["ackId"] != nil {
		t.Fatalf("useACK off: %d %v, want success without ackId", st, out)
	}
	if st, out := post(t, s.URL+"/services/collector/ack", "tok", `{"acks":[0]}`, ch); st != 400 || out["code"] != float64(14) {
		t.Fatalf("ack endpoint with useACK off: %d %v", st, out)
	}
}

func TestHangDropsWhatTheClientGaveUpOn(t *testing.T) {
	s, err := NewServer(Options{Token: "tok"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	u := s.URL + "/services/collector/event"
	s.HangNext(1, 5*time.Second)
	impatient := &http.Client{Timeout: 200 * time.Millisecond}
	req, _ := http.NewRequest("POST", u, strings.NewReader(`{"event":"a"}`))
	req.Header.Set("Authorization", "Splunk tok")
	if _, err := impatient.Do(req); err == nil {
		t.Fatal("a hung request was answered")
	}
	start := time.Now()
	if st, _ := post(t, u, "tok", `{"event":"b"}`, nil); st != 200 || time.Since(start) > time.Second {
		t.Fatalf("after HangNext(1): %d in %s", st, time.Since(start))
	}
	time.Sleep(100 * time.Millisecond)
	if s.Count() != 1 || s.Requests() != 2 {
		t.Fatalf("accepted %d of %d requests, want only the one not given up on", s.Count(), s.Requests())
	}
	s.Hang(150 * time.Millisecond)
	start = time.Now()
	if st, _ := post(t, u, "tok", `{"event":"c"}`, nil); st != 200 || time.Since(start) < 150*time.Millisecond {
		t.Fatalf("hang shorter than the client's patience: %d in %s", st, time.Since(start))
	}
}
