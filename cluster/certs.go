package cluster

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// CertOptions say which certificates to make.
type CertOptions struct {
	Dir string // written here: ca.pem, ca-key.pem, <node>.pem, <node>-key.pem
	// Nodes are node names, each also a DNS name in its certificate;
	// "name=host,host" adds DNS names or IPs to that node's certificate
	// only (the addresses its admin API and NATS client port listen on).
	Nodes []string
	// Hosts are extra DNS names or IP addresses every node certificate holds
	// (the addresses in cluster.peers); 127.0.0.1 and localhost always are.
	Hosts    []string
	Validity time.Duration // default 2 years
}

// GenerateCerts makes one certificate per node, valid for both ends of a
// route (server and client auth) and as the server certificate of the
// node's admin API and NATS client port, signed by the cluster CA in Dir — a new
// one when Dir has none. The CA key stays in Dir: keep it off the nodes; it
// is needed again only to add a node later.
func GenerateCerts(o CertOptions) error {
	if len(o.Nodes) == 0 {
		return fmt.Errorf("cluster certs: no node names")
	}
	if o.Validity <= 0 {
		o.Validity = 2 * 365 * 24 * time.Hour
	}
	if err := os.MkdirAll(o.Dir, 0o700); err != nil {
		return fmt.Errorf("cluster certs: %w", err)
	}
	now := time.Now()
	ca, caKey, err := loadCA(o.Dir)
	if err != nil {
		return err
	}
	if ca != nil {
		return writeNodeCerts(o, ca, caKey, now)
	}
	caKey, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	caTmpl := &x509.Certificate{
		SerialNumber: serial(), Subject: pkix.Name{CommonName: "sluice cluster CA", Organization: []string{"sluice"}},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(o.Validity),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return fmt.Errorf("cluster certs: CA: %w", err)
	}
	ca, err = x509.ParseCertificate(caDER)
	if err != nil {
		return err
	}
	if err := writePEM(filepath.Join(o.Dir, "ca.pem"), "CERTIFICATE", caDER, 0o644); err != nil {
		return err
	}
	if err := writeKey(filepath.Join(o.Dir, "ca-key.pem"), caKey); err != nil {
		return err
	}
	return writeNodeCerts(o, ca, caKey, now)
}

// loadCA reads the CA of an earlier run from dir, so that a node added
// later gets a certificate the cluster already trusts; nil when none.
func loadCA(dir string) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	certPEM, err := os.ReadFile(filepath.Join(dir, "ca.pem"))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, fmt.Errorf("cluster certs: %w", err)
	}
	keyPEM, err := os.ReadFile(filepath.Join(dir, "ca-key.pem"))
	if err != nil {
		return nil, nil, fmt.Errorf("cluster certs: %s has ca.pem but not its key: %w", dir, err)
	}
	cb, kb := firstBlock(certPEM), firstBlock(keyPEM)
	if cb == nil || kb == nil {
		return nil, nil, fmt.Errorf("cluster certs: %s: ca.pem or ca-key.pem is not PEM", dir)
	}
	ca, err := x509.ParseCertificate(cb.Bytes)
	if err != nil {
		return nil, nil, fmt.Errorf("cluster certs: ca.pem: %w", err)
	}
	k, err := x509.ParsePKCS8PrivateKey(kb.Bytes)
	if err != nil {
		return nil, nil, fmt.Errorf("cluster certs: ca-key.pem: %w", err)
	}
	key, ok := k.(*ecdsa.PrivateKey)
	if !ok {
		return nil, nil, fmt.Errorf("cluster certs: ca-key.pem is not an ECDSA key")
	}
	return ca, key, nil
}

func firstBlock(b []byte) *pem.Block {
	blk, _ := pem.Decode(b)
	return blk
}

func writeNodeCerts(o CertOptions, ca *x509.Certificate, caKey *ecdsa.PrivateKey, now time.Time) error {
	for _, entry := range o.Nodes {
		name, own := SplitNode(entry)
		if name == "" || strings.ContainsAny(name, `/\`) {
			return fmt.Errorf("cluster certs: node %q: want a node.name, then =host,host if any", entry)
		}
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return err
		}
		tmpl := &x509.Certificate{
			SerialNumber: serial(), Subject: pkix.Name{CommonName: name, Organization: []string{"sluice"}},
			NotBefore: now.Add(-time.Hour), NotAfter: now.Add(o.Validity),
			KeyUsage:    x509.KeyUsageDigitalSignature,
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
			DNSNames:    []string{name, "localhost"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		}
		for _, h := range append(own, o.Hosts...) {
			if ip := net.ParseIP(h); ip != nil {
				tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
			} else {
				tmpl.DNSNames = append(tmpl.DNSNames, h)
			}
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		if err != nil {
			return fmt.Errorf("cluster certs: %s: %w", name, err)
		}
		if err := writePEM(filepath.Join(o.Dir, name+".pem"), "CERTIFICATE", der, 0o644); err != nil {
			return err
		}
		if err := writeKey(filepath.Join(o.Dir, name+"-key.pem"), key); err != nil {
			return err
		}
	}
	return nil
}

// SplitNode parses a CertOptions.Nodes entry: "node-1=10.0.0.11,n1.example"
// is node-1 with its own two hosts.
func SplitNode(entry string) (name string, hosts []string) {
	name, list, _ := strings.Cut(entry, "=")
	for _, h := range strings.Split(list, ",") {
		if h = strings.TrimSpace(h); h != "" {
			hosts = append(hosts, h)
		}
	}
	return strings.TrimSpace(name), hosts
}

func serial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	return n
}

func writeKey(path string, key *ecdsa.PrivateKey) error {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	return writePEM(path, "PRIVATE KEY", der, 0o600)
}

func writePEM(path, kind string, der []byte, mode os.FileMode) error {
	b := pem.EncodeToMemory(&pem.Block{Type: kind, Bytes: der})
	if err := os.WriteFile(path, b, mode); err != nil {
		return fmt.Errorf("cluster certs: %w", err)
	}
	return nil
}
