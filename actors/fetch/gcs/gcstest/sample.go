package gcstest

import (
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"strings"
)

var actions = []string{"repo.create", "repo.destroy", "org.add_member", "git.clone", "protected_branch.update", "oauth_application.create", "team.add_repository", "repo.download_zip"}

// SampleRecord is the i-th sample GitHub audit log entry, ~1 KB of JSON.
func SampleRecord(i int) []byte {
	ts := int64(1795514400000) + int64(i)*37
	return fmt.Appendf(nil, `{"@timestamp":%d,"_document_id":"doc-%09d","action":%q,"actor":"user%d","actor_id":%d,"actor_ip":"203.0.113.%d","org":"sluicehq","repo":"sluicehq/repo-%d","created_at":%d,"operation_type":"modify","country_code":"DE","business":"acme-corp","user_agent":"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36","request_id":"%08X-%04X-4%03X-A%03X-%012X","hashed_token":"SHA256:%s","programmatic_access_type":"GitHub App server-to-server token","transport_protocol_name":"http","details":%q}`,
		ts, i, actions[i%len(actions)], i%97, 100000+i%97, i%250, i%40, ts, i, i%65536, i%4096, (i*7)%4096, i,
		strings.Repeat("Zm9v", 11), strings.Repeat(fmt.Sprintf("k%d=v%x;", i%10, (i*2654435761)%1000003), 40))
}

// PreloadName is the name of the n-th preloaded object.
func PreloadName(n int) string { return fmt.Sprintf("github/2026/11/24/part-%05d.json.gz", n) }

// Preload uploads objects gzip'd JSON-lines objects (no Content-Encoding,
// as a log exporter writes them) of recordsPerObject sample records each,
// each announced; it returns the number of records.
func (s *Server) Preload(ctx context.Context, objects, recordsPerObject int) (int, error) {
	for n := 0; n < objects; n++ {
		var buf bytes.Buffer
		zw := gzip.NewWriter(&buf)
		for i := n * recordsPerObject; i < (n+1)*recordsPerObject; i++ {
			_, _ = zw.Write(SampleRecord(i))
			_, _ = zw.Write([]byte{'\n'})
		}
		if err := zw.Close(); err != nil {
			return 0, err
		}
		if _, err := s.Upload(ctx, PreloadName(n), buf.Bytes(), ""); err != nil {
			return 0, err
		}
	}
	return objects * recordsPerObject, nil
}

// GzipBomb is a gzip stream of uncompressed zero bytes: a few KB per
// 10 MB. A source reading it must cut it at its decompressed-size bound.
func GzipBomb(uncompressed int64) []byte {
	var buf bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	zero := make([]byte, 64<<10)
	for n := int64(0); n < uncompressed; n += int64(len(zero)) {
		_, _ = zw.Write(zero[:min(int64(len(zero)), uncompressed-n)])
	}
	_ = zw.Close()
	return buf.Bytes()
}

// ExpandingLine is one line of n control bytes (0x01) and a line end. The
// text parser makes it the record {"text":"\u0001…"}, six times as long
// as the line: with n above a sixth of the buffer's max message size it
// is a record no JSON-escaping source can publish in one message.
func ExpandingLine(n int) []byte {
	return append(bytes.Repeat([]byte{1}, n), '\n')
}
