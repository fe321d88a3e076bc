package node_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicehq/sluice/actors/builtin"
	"github.com/sluicehq/sluice/cluster"
	"github.com/sluicehq/sluice/node"
	"github.com/sluicehq/sluice/node/nodetest"
	"github.com/sluicehq/sluice/node/ops"
)

// testCerts makes a CA and the certificates of node-1..3, as an operator
// would with `sluice cluster certs`.
func testCerts(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if err := cluster.GenerateCerts(cluster.CertOptions{Dir: dir, Nodes: []string{"node-1", "node-2", "node-3"}}); err != nil {
		t.Fatal(err)
	}
	return dir
}

func noEnv(string) (string, bool) { return "", false }

// Off loopback, the admin API and the NATS client port need node.tls or,
// named for what it gives up, node.insecure: true.
func TestClientListenersOffLoopbackNeedTLS(t *testing.T) {
	certs := testCerts(t)
	cert, key, ca := filepath.Join(certs, "node-1.pem"), filepath.Join(certs, "node-1-key.pem"), filepath.Join(certs, "ca.pem")
	withTLS := fmt.Sprintf("tls: {cert_file: %s, key_file: %s}", cert, key)
	cases := []struct{ node, want string }{
		{"admin_listen: 10.0.0.11:8686, admin_token: t", "node.tls: required when node.admin_listen (10.0.0.11:8686) is not a loopback address"},
		{"nats_listen: 0.0.0.0:4222, nats_token: t", "node.tls: required when node.nats_listen (0.0.0.0:4222) is not a loopback address"},
		{"admin_listen: 10.0.0.11:8686, admin_token: t, insecure: true", ""},
		{"admin_listen: 10.0.0.11:8686, admin_token: t, nats_listen: 10.0.0.11:4222, nats_token: t, " + withTLS, ""},
		{withTLS, ""}, // on loopback too, when asked for
		{fmt.Sprintf("tls: {cert_file: %s, key_file: %s, client_ca_file: %s}", cert, key, ca), ""},
		{withTLS + ", insecure: true", "node.insecure: true contradicts node.tls"},
		{fmt.Sprintf("tls: {cert_file: %s}", cert), "node.tls.key_file: required"},
		{fmt.Sprintf("tls: {key_file: %s}", key), "node.tls.cert_file: required"},
		{"tls: {cert_file: /nonexistent/node-1.pem, key_file: /nonexistent/node-1-key.pem}", "node.tls.cert_file: stat /nonexistent/node-1.pem"},
		{fmt.Sprintf("tls: {cert_file: %s, key_file: %s}", cert, filepath.Join(certs, "node-2-key.pem")), "node.tls.cert_file: " + cert},
		{fmt.Sprintf("tls: {cert_file: %s, key_file: %s, client_ca_file: %s}", cert, key, key), "node.tls.client_ca_file: " + key + " holds no PEM certificate"},
	}
	for _, c := range cases {
		_, err := node.Parse([]byte("node: {name: n1, data_dir: /tmp/d, "+c.node+"}\n"), builtin.Registry(), noEnv)
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%s: %v", c.node, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%s:\n got  %v\n want …%s…", c.node, err, c.want)
		}
		if err != nil && strings.Contains(err.Error(), "PRIVATE KEY") {
			t.Errorf("%s: the error shows key material: %v", c.node, err)
		}
	}
}

// startTLSNode runs node-1 with node.tls on both client listeners; with
// clientCA they also ask for a client certificate the CA signed.
func startTLSNode(t *testing.T, certs string, clientCA bool) *node.Node {
	t.Helper()
	extra := ""
	if clientCA {
		extra = ", client_ca_file: " + filepath.Join(certs, "ca.pem")
	}
	src := fmt.Sprintf("node: {name: node-1, data_dir: %s, admin_listen: 127.0.0.1:0, nats_listen: 127.0.0.1:-1, tls: {cert_file: %s, key_file: %s%s}}\nqueue: {max_bytes: 64MiB}\n",
		t.TempDir(), filepath.Join(certs, "node-1.pem"), filepath.Join(certs, "node-1-key.pem"), extra)
	cfg, err := node.Parse([]byte(src), builtin.Registry(), noEnv)
	if err != nil {
		t.Fatal(err)
	}
	return nodetest.Start(t, cfg, node.Options{Components: func(context.Context, *node.Node) error { return nil }})
}

func httpsClient(t *testing.T, ca, cert, key string) *http.Client {
	t.Helper()
	tc, err := ops.ClientTLS(ca, cert, key)
	if err != nil {
		t.Fatal(err)
	}
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: tc}}
}

// get answers the status code and body, or -1 and the error.
func get(c *http.Client, url string) (int, string) {
	resp, err := c.Get(url)
	if err != nil {
		return -1, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// natsCleartextRefused speaks NATS without TLS to addr: the server's INFO
// must demand TLS and no PING of ours may get its PONG.
func natsCleartextRefused(t *testing.T, addr string) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	r := bufio.NewReader(c)
	info, err := r.ReadString('\n')
	if err != nil || !strings.Contains(info, `"tls_required":true`) {
		t.Errorf("the NATS port's INFO does not require TLS: %q, %v", info, err)
	}
	fmt.Fprint(c, "CONNECT {\"verbose\":false,\"pedantic\":false}\r\nPING\r\n")
	rest, _ := io.ReadAll(r) // until the server hangs up (or the deadline)
	if strings.Contains(string(rest), "PONG") {
		t.Errorf("the NATS port answered a cleartext client: %q", rest)
	}
}

// With node.tls the admin API answers over HTTPS only, and the NATS client
// port takes TLS clients that trust the CA and no one else.
func TestAdminAndNATSServeTLSOnly(t *testing.T) {
	certs := testCerts(t)
	ca := filepath.Join(certs, "ca.pem")
	n := startTLSNode(t, certs, false)

	if code, body := get(httpsClient(t, ca, "", ""), "https://"+n.AdminAddr()+"/api/v1/actors"); code != http.StatusOK {
		t.Errorf("HTTPS with the CA: %d %s", code, body)
	}
	if code, body := get(&http.Client{Timeout: 10 * time.Second}, "http://"+n.AdminAddr()+"/api/v1/actors"); code == http.StatusOK {
		t.Errorf("cleartext HTTP answered: %d %s", code, body)
	}
	if code, body := get(&http.Client{Timeout: 10 * time.Second}, "https://"+n.AdminAddr()+"/healthz"); code != -1 {
		t.Errorf("a client that does not trust the CA got an answer: %d %s", code, body)
	}

	url := n.Queue.ClientURL()
	if !strings.HasPrefix(url, "tls://") {
		t.Fatalf("NATS client URL %s: want tls://", url)
	}
	natsCleartextRefused(t, strings.TrimPrefix(url, "tls://"))
	if nc, err := nats.Connect(url, nats.Timeout(5*time.Second)); err == nil {
		nc.Close()
		t.Error("a NATS client that does not trust the CA connected")
	}
	nc, err := nats.Connect(url, nats.RootCAs(ca), nats.Timeout(10*time.Second))
	if err != nil {
		t.Fatalf("a NATS client trusting the CA: %v", err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := js.AccountInfo(ctx); err != nil {
		t.Errorf("JetStream over TLS: %v", err)
	}
}

// With node.tls.client_ca_file both listeners also want a client
// certificate the CA signed; the node's own in-process connection needs none.
func TestClientCertificatesRequiredWithClientCA(t *testing.T) {
	certs := testCerts(t)
	ca := filepath.Join(certs, "ca.pem")
	cert, key := filepath.Join(certs, "node-2.pem"), filepath.Join(certs, "node-2-key.pem")
	n := startTLSNode(t, certs, true)
	if err := n.Ready(); err != nil {
		t.Errorf("the node's own connection: %v", err)
	}

	if code, body := get(httpsClient(t, ca, "", ""), "https://"+n.AdminAddr()+"/api/v1/actors"); code == http.StatusOK {
		t.Errorf("HTTPS without a client certificate answered: %d %s", code, body)
	}
	if code, body := get(httpsClient(t, ca, cert, key), "https://"+n.AdminAddr()+"/api/v1/actors"); code != http.StatusOK {
		t.Errorf("HTTPS with a client certificate: %d %s", code, body)
	}

	url := n.Queue.ClientURL()
	if nc, err := nats.Connect(url, nats.RootCAs(ca), nats.Timeout(5*time.Second)); err == nil {
		// TLS 1.3 may finish the handshake before the server's refusal.
		err = nc.Flush()
		nc.Close()
		if err == nil {
			t.Error("a NATS client without a client certificate connected")
		}
	}
	nc, err := nats.Connect(url, nats.RootCAs(ca), nats.ClientCert(cert, key), nats.Timeout(10*time.Second))
	if err != nil {
		t.Fatalf("a NATS client with a client certificate: %v", err)
	}
	nc.Close()
}

// The shipped cluster examples validate, with TLS on every listener, and
// stay valid when the admin API moves off loopback.
func TestDeployClusterExamplesValidate(t *testing.T) {
	certs := testCerts(t)
	policies, err := filepath.Abs("../testdata/policies")
	if err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"SLS_ENDPOINT": "https://cn-hangzhou.log.aliyuncs.com", "SLS_PROJECT": "p", "SLS_LOGSTORE": "audit",
		"SLS_AK_ID": "id", "SLS_AK_KEY": "key", "SPLUNK_HEC_URL": "https://splunk.example:8088", "SPLUNK_HEC_TOKEN": "t"}
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	files, _ := filepath.Glob("../deploy/cluster/node-*.yaml")
	if len(files) != 3 {
		t.Fatalf("deploy/cluster: %v", files)
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		src := strings.NewReplacer("/etc/sluice/certs", certs, "/etc/sluice/policies", policies).Replace(string(b))
		cfg, err := node.Parse([]byte(src), builtin.Registry(), lookup)
		if err != nil {
			t.Errorf("%s: %v", f, err)
			continue
		}
		if cfg.Node.TLS == nil || cfg.Node.Insecure {
			t.Errorf("%s: the admin API and the NATS client port serve cleartext", f)
		}
		off := strings.Replace(src, "admin_listen: 127.0.0.1:8686", "admin_listen: 10.0.0.11:8686\n  admin_token: t", 1)
		if _, err := node.Parse([]byte(off), builtin.Registry(), lookup); off == src || err != nil {
			t.Errorf("%s with the admin API off loopback: %v", f, err)
		}
	}
}
