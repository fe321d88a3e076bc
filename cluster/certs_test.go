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

// "name=host,..." puts the addresses of that node's admin API and NATS
// client port in its certificate only, valid for a TLS server.
func TestNodeCertificateHoldsItsOwnListenAddresses(t *testing.T) {
	dir := t.TempDir()
	err := GenerateCerts(CertOptions{Dir: dir, Nodes: []string{"node-1=10.0.1.11,sluice-1.example", "node-2"}, Hosts: []string{"10.0.0.11"}})
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(readCert(t, filepath.Join(dir, "ca.pem")))
	one := readCert(t, filepath.Join(dir, "node-1.pem"))
	for _, host := range []string{"10.0.1.11", "sluice-1.example", "10.0.0.11", "node-1", "127.0.0.1"} {
		if _, err := one.Verify(x509.VerifyOptions{Roots: pool, DNSName: host, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
			t.Errorf("node-1 as a server at %s: %v", host, err)
		}
	}
	two := readCert(t, filepath.Join(dir, "node-2.pem"))
	if two.VerifyHostname("10.0.1.11") == nil || two.VerifyHostname("sluice-1.example") == nil {
		t.Errorf("node-2's certificate holds node-1's own addresses: %v %v", two.IPAddresses, two.DNSNames)
	}
	if _, err := os.Stat(filepath.Join(dir, "node-1=10.0.1.11,sluice-1.example.pem")); err == nil {
		t.Error("the file name kept the hosts")
	}
	if err := GenerateCerts(CertOptions{Dir: dir, Nodes: []string{"../node-9"}}); err == nil {
		t.Error("a node name with a path was accepted")
	}
}
