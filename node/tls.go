package node

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/sluicehq/sluice/internal/conf"
)

// ListenerTLS is the server certificate of the admin API and the NATS
// client port (`sluice cluster certs` makes one per node). With
// ClientCAFile both listeners also require a client certificate it signed.
type ListenerTLS struct {
	CertFile     string `yaml:"cert_file"`
	KeyFile      string `yaml:"key_file"`
	ClientCAFile string `yaml:"client_ca_file"` // optional
}

// validateTLS requires node.tls when a client-facing listener is off
// loopback, unless node.insecure says otherwise, and checks its files.
func (n *NodeConfig) validateTLS() error {
	if n.TLS == nil {
		for _, l := range []struct{ field, addr string }{{"node.admin_listen", n.AdminListen}, {"node.nats_listen", n.NATSListen}} {
			if !n.Insecure && !isLoopback(l.addr) {
				return conf.Errorf("node.tls", "required when %s (%s) is not a loopback address: tokens and records would cross the network in cleartext (sluice cluster certs makes a certificate; node.insecure: true allows cleartext)", l.field, l.addr)
			}
		}
		return nil
	}
	if n.Insecure {
		return conf.Errorf("node.insecure", "true contradicts node.tls: remove one")
	}
	_, err := n.TLS.serverConfig()
	return err
}

// serverConfig loads the certificate (and the client CA) into a server
// configuration both listeners share, through nats-server's own loader so
// that the two listeners cannot differ; errors name the field.
func (t *ListenerTLS) serverConfig() (*tls.Config, error) {
	if t.CertFile == "" {
		return nil, conf.Errorf("node.tls.cert_file", "required with node.tls")
	}
	if t.KeyFile == "" {
		return nil, conf.Errorf("node.tls.key_file", "required with node.tls")
	}
	for _, f := range []struct{ field, path string }{{"cert_file", t.CertFile}, {"key_file", t.KeyFile}, {"client_ca_file", t.ClientCAFile}} {
		if f.path == "" {
			continue
		}
		if _, err := os.Stat(f.path); err != nil {
			return nil, conf.Errorf("node.tls."+f.field, "%v", err)
		}
	}
	if t.ClientCAFile != "" {
		// GenTLSConfig says only "failed to parse root ca certificate".
		b, err := os.ReadFile(t.ClientCAFile)
		if err != nil {
			return nil, conf.Errorf("node.tls.client_ca_file", "%v", err)
		}
		if !x509.NewCertPool().AppendCertsFromPEM(b) {
			return nil, conf.Errorf("node.tls.client_ca_file", "%s holds no PEM certificate", t.ClientCAFile)
		}
	}
	tc, err := server.GenTLSConfig(&server.TLSConfigOpts{
		CertFile: t.CertFile, KeyFile: t.KeyFile, CaFile: t.ClientCAFile,
		Verify: t.ClientCAFile != "", // require and check a client certificate
	})
	if err != nil {
		// The loader's errors say which pair failed to parse, never its bytes.
		return nil, conf.Errorf("node.tls.cert_file", "%s with %s: %v", t.CertFile, t.KeyFile, err)
	}
	return tc, nil
}

// listenerTLS is the TLS configuration of the client-facing listeners, or
// nil when node.tls is not set.
func (c *Config) listenerTLS() (*tls.Config, error) {
	if c.Node.TLS == nil {
		return nil, nil
	}
	tc, err := c.Node.TLS.serverConfig()
	if err != nil {
		return nil, fmt.Errorf("node %s: %w", c.Node.Name, err)
	}
	return tc, nil
}
