package gcstest

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/md5"
	"encoding/base64"
	"encoding/json"
	"io"
	"testing"
	"time"

	"cloud.google.com/go/pubsub/v2"
	"cloud.google.com/go/storage"
)

// The real clients, found through the emulator variables only.
func clients(t *testing.T, s *Server) (*pubsub.Client, *storage.Client) {
	t.Helper()
	t.Setenv("PUBSUB_EMULATOR_HOST", s.PubSubHost())
	t.Setenv("STORAGE_EMULATOR_HOST", s.StorageHost())
	ctx := context.Background()
	ps, err := pubsub.NewClient(ctx, s.Options().Project)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ps.Close() })
	st, err := storage.NewClient(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	return ps, st
}

func receive(t *testing.T, ps *pubsub.Client, s *Server, n int) []*pubsub.Message {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	msgs := make(chan *pubsub.Message, 100)
	go func() {
		_ = ps.Subscriber(s.Options().Subscription).Receive(ctx, func(_ context.Context, m *pubsub.Message) {
			m.Ack()
			msgs <- m
		})
	}()
	var out []*pubsub.Message
	for len(out) < n {
		select {
		case m := <-msgs:
			out = append(out, m)
		case <-ctx.Done():
			t.Fatalf("received %d of %d notifications", len(out), n)
		}
	}
	return out
}

func TestUploadIsAnnouncedInTheRealFormatAndReadable(t *testing.T) {
	s, err := Start(Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ps, st := clients(t, s)
	ctx := context.Background()
	data := []byte("{\"a\":1}\n{\"b\":2}\n")
	w := st.Bucket("audit-logs").Object("logs/x.jsonl").NewWriter(ctx)
	_, _ = w.Write(data)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	gen := w.Attrs().Generation
	m := receive(t, ps, s, 1)[0]
	a := m.Attributes
	if a["eventType"] != "OBJECT_FINALIZE" || a["bucketId"] != "audit-logs" || a["objectId"] != "logs/x.jsonl" || a["payloadFormat"] != "JSON_API_V1" ||
		a["notificationConfig"] != "projects/_/buckets/audit-logs/notificationConfigs/1" || a["objectGeneration"] == "" {
		t.Fatalf("attributes %v", a)
	}
	if _, err := time.Parse("2006-01-02T15:04:05.000000Z", a["eventTime"]); err != nil {
		t.Fatalf("eventTime %q: %v", a["eventTime"], err)
	}
	var res map[string]any
	if err := json.Unmarshal(m.Data, &res); err != nil {
		t.Fatal(err)
	}
	sum := md5.Sum(data)
	if res["size"] != "16" || res["generation"] != a["objectGeneration"] || res["md5Hash"] != base64.StdEncoding.EncodeToString(sum[:]) || res["kind"] != "storage#object" {
		t.Fatalf("resource %s", m.Data)
	}
	if _, err := time.Parse(time.RFC3339Nano, res["timeCreated"].(string)); err != nil {
		t.Fatalf("timeCreated: %v", err)
	}
	r, err := st.Bucket("audit-logs").Object("logs/x.jsonl").Generation(gen).NewReader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(r)
	r.Close()
	if !bytes.Equal(got, data) {
		t.Fatalf("read back %q", got)
	}
}

func TestGzipContentEncodingIsDecompressedByTheClient(t *testing.T) {
	s, err := Start(Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ps, st := clients(t, s)
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	_, _ = zw.Write([]byte("plain text\n"))
	_ = zw.Close()
	gen, err := s.Upload(context.Background(), "z.txt", gz.Bytes(), "gzip")
	if err != nil {
		t.Fatal(err)
	}
	receive(t, ps, s, 1)
	r, err := st.Bucket("audit-logs").Object("z.txt").Generation(gen).NewReader(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(r)
	r.Close()
	if string(got) != "plain text\n" {
		t.Fatalf("read %q, want the client to decompress", got)
	}
}

func TestPreloadAndOtherEvents(t *testing.T) {
	s, err := Start(Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ps, _ := clients(t, s)
	ctx := context.Background()
	n, err := s.Preload(ctx, 3, 10)
	if err != nil || n != 30 {
		t.Fatalf("preload: %d, %v", n, err)
	}
	if err := s.Delete(ctx, PreloadName(0)); err != nil {
		t.Fatal(err)
	}
	if err := s.Notify(ctx, PreloadName(0), 1, "OBJECT_DELETE"); err != nil {
		t.Fatal(err)
	}
	if err := s.NotifyNone(ctx, PreloadName(1)); err != nil {
		t.Fatal(err)
	}
	msgs := receive(t, ps, s, 5)
	kinds := map[string]int{}
	for _, m := range msgs {
		kinds[m.Attributes["eventType"]+"/"+m.Attributes["payloadFormat"]]++
	}
	if kinds["OBJECT_FINALIZE/JSON_API_V1"] != 3 || kinds["OBJECT_DELETE/JSON_API_V1"] != 1 || kinds["OBJECT_FINALIZE/NONE"] != 1 || s.Published() != 5 {
		t.Fatalf("notifications %v, published %d", kinds, s.Published())
	}
	if !json.Valid(SampleRecord(7)) || len(SampleRecord(7)) < 900 || len(SampleRecord(7)) > 1300 {
		t.Fatalf("sample record (%d bytes): %s", len(SampleRecord(7)), SampleRecord(7))
	}
}
