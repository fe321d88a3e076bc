package cluster_test

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/cluster"
)

// A route listener on every address (not loopback) with the cluster's
// TLS: a connection without a certificate from the cluster CA, or without
// TLS at all, is refused before the server says anything; one with a
// node's certificate gets the route INFO.
func TestClusterOffLoopbackRefusesARouteWithoutACertificate(t *testing.T) {
	if testing.Short() {
		t.Skip("cluster test")
	}
	certs := t.TempDir()
	if err := cluster.GenerateCerts(cluster.CertOptions{Dir: certs, Nodes: []string{"node-1", "node-2", "node-3"}}); err != nil {
		t.Fatal(err)
	}
	var route string // 127.0.0.1, reaching node-1's 0.0.0.0 listener
	startClusterOpts(t, 3, func(i int) *cluster.TLS { return nodeTLS(certs, fmt.Sprintf("node-%d", i+1)) }, func(o *nodeOptions) {
		_, port, _ := net.SplitHostPort(o.cluster.Listen)
		o.cluster.Listen = net.JoinHostPort("0.0.0.0", port)
		if o.queue.ServerName == "node-1" { // each node's mod runs in its own goroutine
			route = o.cluster.Peers[0]
		}
	})
	ca, err := os.ReadFile(filepath.Join(certs, "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca)
	noCert := &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"}
	withCert := noCert.Clone()
	pair, err := tls.LoadX509KeyPair(filepath.Join(certs, "node-2.pem"), filepath.Join(certs, "node-2-key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	withCert.Certificates = []tls.Certificate{pair}

	if line, err := routeHello(route, withCert); err != nil || !strings.HasPrefix(line, "INFO ") {
		t.Fatalf("with node-2's certificate: %q, %v; want the route INFO", line, err)
	}
	for what, cfg := range map[string]*tls.Config{"no certificate": noCert, "no TLS": nil} {
		line, err := routeHello(route, cfg)
		if err == nil || strings.Contains(line, "INFO") {
			t.Errorf("%s: the route port answered %q (%v)", what, line, err)
		}
		t.Logf("%s: refused: %v", what, err)
	}
}

// routeHello connects to a route port (with TLS when cfg is set, as the
// server wants it first) and returns the server's first line.
func routeHello(addr string, cfg *tls.Config) (string, error) {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	conn := c
	if cfg != nil {
		tc := tls.Client(c, cfg)
		if err := tc.Handshake(); err != nil {
			return "", err
		}
		conn = tc
	} else if _, err := fmt.Fprint(c, "CONNECT {}\r\nPING\r\n"); err != nil {
		return "", err
	}
	return bufio.NewReader(conn).ReadString('\n')
}
