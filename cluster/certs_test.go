package cluster

import (
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"testing"
)

func readCert(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(b)
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// A node added later is signed by the CA the cluster already trusts.
func TestCertsForANewNodeUseTheExistingCA(t *testing.T) {
	dir := t.TempDir()
	if err := GenerateCerts(CertOptions{Dir: dir, Nodes: []string{"node-1", "node-2", "node-3"}, Hosts: []string{"10.0.0.11"}}); err != nil {
		t.Fatal(err)
	}
	ca := readCert(t, filepath.Join(dir, "ca.pem"))
	if err := GenerateCerts(CertOptions{Dir: dir, Nodes: []string{"node-4"}, Hosts: []string{"10.0.0.14"}}); err != nil {
		t.Fatal(err)
	}
	if again := readCert(t, filepath.Join(dir, "ca.pem")); !again.Equal(ca) {
		t.Fatal("adding a node replaced the CA")
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	for _, n := range []string{"node-1", "node-4"} {
		c := readCert(t, filepath.Join(dir, n+".pem"))
		if _, err := c.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
			t.Errorf("%s: %v", n, err)
		}
	}
	if c := readCert(t, filepath.Join(dir, "node-4.pem")); c.VerifyHostname("10.0.0.14") != nil || c.VerifyHostname("node-4") != nil {
		t.Errorf("node-4's certificate lacks its address or name: %v %v", c.IPAddresses, c.DNSNames)
	}
	if fi, err := os.Stat(filepath.Join(dir, "node-4-key.pem")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("node-4's key: %v, mode %v; want 0600", err, fi.Mode())
	}
}
