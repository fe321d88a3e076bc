package cmd

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/spf13/cobra"

	"github.com/sluicehq/sluice/cluster"
)

// tlsAdmin is an admin API serving node-1's certificate that answers
// /api/v1/status to the bearer token "s3cret"; with clientCA it also asks
// for a client certificate the CA signed.
func tlsAdmin(t *testing.T, certs string, clientCA bool) string {
	t.Helper()
	cert, err := tls.LoadX509KeyPair(filepath.Join(certs, "node-1.pem"), filepath.Join(certs, "node-1-key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer s3cret" {
			http.Error(w, "admin token required", http.StatusUnauthorized)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"node":"node-1"}`)
	}))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	if clientCA {
		b, err := os.ReadFile(filepath.Join(certs, "ca.pem"))
		if err != nil {
			t.Fatal(err)
		}
		srv.TLS.ClientCAs = x509.NewCertPool()
		srv.TLS.ClientCAs.AppendCertsFromPEM(b)
		srv.TLS.ClientAuth = tls.RequireAndVerifyClientCert
	}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv.Listener.Addr().String()
}

// The operations commands reach an admin API that serves node.tls: the CA
// from --admin-ca-file or SLUICE_ADMIN_CA (a bare host:port is then
// https), the token from the environment.
func TestOpsCommandsSpeakTLSToTheAdminAPI(t *testing.T) {
	certs := t.TempDir()
	if err := cluster.GenerateCerts(cluster.CertOptions{Dir: certs, Nodes: []string{"node-1", "node-2"}}); err != nil {
		t.Fatal(err)
	}
	ca := filepath.Join(certs, "ca.pem")
	addr := tlsAdmin(t, certs, false)
	t.Setenv("SLUICE_ADMIN_TOKEN", "s3cret")
	t.Setenv("SLUICE_ADMIN_CA", "")

	if out, err := runCLI("status", "--json", "--admin", addr, "--admin-ca-file", ca); err != nil || !strings.Contains(out, `"node-1"`) {
		t.Errorf("--admin-ca-file with a bare host:port: %v\n%s", err, out)
	}
	if _, err := runCLI("status", "--json", "--admin", "https://"+addr); err == nil || !strings.Contains(err.Error(), "--admin-ca-file") {
		t.Errorf("without the CA: %v; want a failure naming --admin-ca-file", err)
	}
	if _, err := runCLI("status", "--json", "--admin", addr); err == nil || !strings.Contains(err.Error(), "node.tls") {
		t.Errorf("cleartext to a TLS admin API: %v; want a failure naming node.tls", err)
	}
	t.Setenv("SLUICE_ADMIN_CA", ca)
	if out, err := runCLI("status", "--json", "--admin", "https://"+addr); err != nil || !strings.Contains(out, `"node-1"`) {
		t.Errorf("SLUICE_ADMIN_CA: %v\n%s", err, out)
	}

	// A node with node.tls.client_ca_file wants a client certificate too.
	mtls := tlsAdmin(t, certs, true)
	if _, err := runCLI("status", "--json", "--admin", mtls); err == nil {
		t.Error("no client certificate, and the admin API answered")
	}
	t.Setenv("SLUICE_ADMIN_KEY", filepath.Join(certs, "node-2-key.pem"))
	if out, err := runCLI("status", "--json", "--admin", mtls, "--admin-cert-file", filepath.Join(certs, "node-2.pem")); err != nil || !strings.Contains(out, `"node-1"`) {
		t.Errorf("with a client certificate: %v\n%s", err, out)
	}
}

// No operations command takes the admin token in argv, where every user
// of the host can read it (ps, /proc/PID/cmdline).
func TestNoOpsCommandTakesATokenFlag(t *testing.T) {
	flag := regexp.MustCompile(`--([\w-]*token[\w-]*)`)
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		for _, usage := range []string{c.Flags().FlagUsages(), c.PersistentFlags().FlagUsages()} {
			for _, m := range flag.FindAllStringSubmatch(usage, -1) {
				if !strings.HasSuffix(m[1], "-file") {
					t.Errorf("sluice %s --%s: a token in argv", c.CommandPath(), m[1])
				}
			}
		}
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	for _, c := range []*cobra.Command{newStatusCmd(), newReplayCmd(), newDLQCmd(), newBacklogCmd()} {
		walk(c)
	}
}
