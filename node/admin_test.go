package node_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/actors/builtin"
	"github.com/sluicehq/sluice/node"
	"github.com/sluicehq/sluice/node/nodetest"
	"github.com/sluicehq/sluice/node/ops"
)

// startAdmin runs a node without sources or sinks, with extra keys under
// node:, and returns its admin address.
func startAdmin(t *testing.T, nodeKeys string) string {
	t.Helper()
	yaml := fmt.Sprintf("node: {name: test, data_dir: %q, admin_listen: \"127.0.0.1:0\"%s}\nqueue: {max_bytes: 64MiB}\n", t.TempDir(), nodeKeys)
	cfg, err := node.Parse([]byte(yaml), builtin.Registry(), func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatal(err)
	}
	n := nodetest.Start(t, cfg, node.Options{Components: func(context.Context, *node.Node) error { return nil }})
	return n.AdminAddr()
}

// adminReq is one request as a browser or the CLI would send it.
type adminReq struct {
	method, path, body string
	host, origin       string // default: the address dialled, no Origin
	site               string // Sec-Fetch-Site, which browsers add
	ctype              string
	token              string
}

const purge = `{"confirm":true}` // purges an empty DLQ: 200 when let through

func (r adminReq) send(t *testing.T, addr string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(r.method, "http://"+addr+r.path, strings.NewReader(r.body))
	if err != nil {
		t.Fatal(err)
	}
	if r.host != "" {
		req.Host = r.host
	}
	for k, v := range map[string]string{"Origin": r.origin, "Sec-Fetch-Site": r.site, "Content-Type": r.ctype} {
		if v != "" {
			req.Header.Set(k, v)
		}
	}
	if r.token != "" {
		req.Header.Set("Authorization", "Bearer "+r.token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

type adminCase struct {
	name string
	req  adminReq
	code int
	says string // in the answer
}

func runAdminCases(t *testing.T, addr, token string, cases []adminCase) {
	t.Helper()
	_, port, _ := net.SplitHostPort(addr)
	for _, c := range cases {
		c.req.host = strings.ReplaceAll(c.req.host, "PORT", port)
		c.req.origin = strings.ReplaceAll(c.req.origin, "PORT", port)
		code, body := c.req.send(t, addr)
		if code != c.code || !strings.Contains(body, c.says) {
			t.Errorf("%s: %s %s answered %d %q, want %d saying %q", c.name, c.req.method, c.req.path, code, strings.TrimSpace(body), c.code, c.says)
		}
		if token != "" && strings.Contains(body, token) {
			t.Errorf("%s: the answer shows the admin token: %q", c.name, body)
		}
	}
}

// On loopback without a token, as `sluice run` starts by default, a web
// page open on the node must not be able to change it or, through DNS
// rebinding, read it.
func TestAdminRefusesWhatABrowserCanSend(t *testing.T) {
	addr := startAdmin(t, "")
	const json = "application/json"
	runAdminCases(t, addr, "", []adminCase{
		{"cross-origin POST", adminReq{method: "POST", path: "/api/v1/dlq/purge", body: purge, ctype: json, origin: "http://evil.example"}, 403, `Origin \"http://evil.example\" refused`},
		{"cross-site POST", adminReq{method: "POST", path: "/api/v1/dlq/purge", body: purge, ctype: json, site: "cross-site"}, 403, `Sec-Fetch-Site \"cross-site\" refused`},
		{"cross-origin POST from another local port", adminReq{method: "POST", path: "/api/v1/dlq/purge", body: purge, ctype: json, origin: "http://127.0.0.1:1"}, 403, "Origin"},
		{"no-cors text/plain POST", adminReq{method: "POST", path: "/api/v1/dlq/purge", body: purge, ctype: "text/plain"}, 415, "send application/json"},
		{"form POST", adminReq{method: "POST", path: "/api/v1/dlq/purge", body: "confirm=true", ctype: "application/x-www-form-urlencoded"}, 415, "Content-Type"},
		{"rebound GET", adminReq{method: "GET", path: "/api/v1/status", host: "evil.example:PORT"}, 403, `Host \"evil.example:`},
		{"rebound GET of a record", adminReq{method: "GET", path: "/api/v1/dlq/1", host: "evil.example:PORT"}, 403, "DNS rebinding"},
		{"rebound POST", adminReq{method: "POST", path: "/api/v1/dlq/purge", body: purge, ctype: json, host: "evil.example:PORT"}, 403, "Host"},
		{"tokenless POST", adminReq{method: "POST", path: "/api/v1/dlq/purge", body: purge, ctype: json}, 403, "without node.admin_token the admin API is read-only"},
		{"tokenless DELETE", adminReq{method: "DELETE", path: "/api/v1/jobs/x", ctype: json}, 403, "read-only"},
		{"status", adminReq{method: "GET", path: "/api/v1/status"}, 200, `"node"`},
		{"status by localhost", adminReq{method: "GET", path: "/api/v1/status", host: "localhost:PORT"}, 200, `"node"`},
		{"status through a port forward", adminReq{method: "GET", path: "/api/v1/status", host: "[::1]:9000"}, 200, `"node"`},
		{"DLQ list", adminReq{method: "GET", path: "/api/v1/dlq"}, 200, "[]"},
		{"metrics", adminReq{method: "GET", path: "/metrics"}, 200, "go_goroutines"},
		{"healthz", adminReq{method: "GET", path: "/healthz"}, 200, "ok"},
	})
}

// admin_loopback_writes opens writes to tokenless loopback callers, by
// name, but not to browsers.
func TestAdminLoopbackWritesByName(t *testing.T) {
	addr := startAdmin(t, ", admin_loopback_writes: true")
	runAdminCases(t, addr, "", []adminCase{
		{"POST", adminReq{method: "POST", path: "/api/v1/dlq/purge", body: purge, ctype: "application/json"}, 200, `"purged": 0`},
		{"cross-origin POST", adminReq{method: "POST", path: "/api/v1/dlq/purge", body: purge, ctype: "application/json", origin: "http://evil.example"}, 403, "Origin"},
		{"text/plain POST", adminReq{method: "POST", path: "/api/v1/dlq/purge", body: purge, ctype: "text/plain;charset=UTF-8"}, 415, "Content-Type"},
	})
}

// A token does not make a browser's request acceptable: the browser
// checks come first and hold even for a caller that has it.
func TestAdminWithTokenRefusesBrowsersToo(t *testing.T) {
	const token = "admin-secret-4c1f"
	addr := startAdmin(t, ", admin_token: "+token)
	const json = "application/json"
	runAdminCases(t, addr, token, []adminCase{
		{"POST with the token", adminReq{method: "POST", path: "/api/v1/dlq/purge", body: purge, ctype: json, token: token}, 200, `"purged": 0`},
		{"same-origin POST", adminReq{method: "POST", path: "/api/v1/dlq/purge", body: purge, ctype: json, token: token, origin: "http://127.0.0.1:PORT", site: "same-origin"}, 200, `"purged"`},
		{"same-site POST", adminReq{method: "POST", path: "/api/v1/dlq/purge", body: purge, ctype: json, token: token, origin: "http://127.0.0.1:1", site: "same-site"}, 403, "Origin"},
		{"POST without the token", adminReq{method: "POST", path: "/api/v1/dlq/purge", body: purge, ctype: json}, 401, "admin token required"},
		{"POST with a wrong token", adminReq{method: "POST", path: "/api/v1/dlq/purge", body: purge, ctype: json, token: "guess"}, 401, "admin token required"},
		{"cross-origin POST", adminReq{method: "POST", path: "/api/v1/dlq/purge", body: purge, ctype: json, token: token, origin: "http://evil.example"}, 403, "Origin"},
		{"opaque-origin POST", adminReq{method: "POST", path: "/api/v1/dlq/purge", body: purge, ctype: json, token: token, origin: "null"}, 403, "Origin"},
		{"text/plain POST", adminReq{method: "POST", path: "/api/v1/dlq/purge", body: purge, ctype: "text/plain", token: token}, 415, "application/json"},
		{"rebound GET", adminReq{method: "GET", path: "/api/v1/status", host: "evil.example:PORT", token: token}, 403, "Host"},
		{"rebound healthz", adminReq{method: "GET", path: "/healthz", host: "evil.example:PORT"}, 403, "Host"},
		{"GET with the token", adminReq{method: "GET", path: "/api/v1/status", token: token}, 200, `"node"`},
	})
}

// node.admin_hosts names what a proxy or DNS calls the node; other names
// stay refused.
func TestAdminHostsNamesAProxy(t *testing.T) {
	addr := startAdmin(t, ", admin_hosts: [sluice.corp.example]")
	runAdminCases(t, addr, "", []adminCase{
		{"proxy name", adminReq{method: "GET", path: "/api/v1/status", host: "sluice.corp.example"}, 200, `"node"`},
		{"proxy name, other case and port", adminReq{method: "GET", path: "/api/v1/status", host: "Sluice.Corp.Example.:443"}, 200, `"node"`},
		{"other name", adminReq{method: "GET", path: "/api/v1/status", host: "corp.example"}, 403, "node.admin_hosts"},
		{"no name", adminReq{method: "GET", path: "/api/v1/status", host: ":PORT"}, 403, "Host"},
	})
}

// The CLI's client gets through every check with the token: reads and
// each kind of write (POST, DELETE).
func TestAdminClientPassesTheChecks(t *testing.T) {
	const token = "admin-secret-77aa"
	addr := startAdmin(t, ", admin_token: "+token)
	c := ops.NewClient(addr, token)
	ctx := context.Background()
	if _, err := c.Status(ctx); err != nil {
		t.Fatalf("status: %v", err)
	}
	if _, err := c.DLQGroups(ctx, ops.DLQFilter{}); err != nil {
		t.Fatalf("dlq list: %v", err)
	}
	if n, err := c.PurgeDLQ(ctx, ops.DLQFilter{}); err != nil || n != 0 {
		t.Fatalf("dlq purge: %d, %v", n, err)
	}
	if _, err := c.Redrive(ctx, ops.DLQFilter{}, true); err != nil {
		t.Fatalf("dlq redrive --dry-run: %v", err)
	}
	var apiErr *ops.APIError
	if _, err := c.Cancel(ctx, "no-such-job"); !errors.As(err, &apiErr) || apiErr.Code != http.StatusNotFound {
		t.Fatalf("cancel of an unknown job: %v, want the API's 404", err)
	}
	if _, err := ops.NewClient(addr, "").PurgeDLQ(ctx, ops.DLQFilter{}); err == nil || !strings.Contains(err.Error(), "admin token required") {
		t.Fatalf("purge without the token: %v", err)
	}
}

func TestAdminHostsMustBeNames(t *testing.T) {
	for _, h := range []string{"http://sluice.example", "sluice.example:8686", "sluice.example/api", "", "*.example"} {
		yaml := fmt.Sprintf("node: {name: test, admin_hosts: [ok.example, %q]}\n", h)
		_, err := node.Parse([]byte(yaml), builtin.Registry(), func(string) (string, bool) { return "", false })
		if want := fmt.Sprintf("node.admin_hosts[1]: %q: want a host name", h); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("admin_hosts entry %q: %v, want …%s…", h, err, want)
		}
	}
}
