package cmd

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/sluicehq/sluice/node/ops"
)

// adminFlags are how the operations commands reach a node. The token is
// never a flag: argv is visible to every user of the host (ps, /proc).
type adminFlags struct {
	addr      string
	tokenFile string
	// A node with node.tls: the CA that signed its certificate and, when
	// it asks for one (node.tls.client_ca_file), a client certificate.
	caFile, certFile, keyFile string
}

func (a *adminFlags) register(cmd *cobra.Command) {
	def := os.Getenv("SLUICE_ADMIN")
	if def == "" {
		def = "127.0.0.1:8686"
	}
	f := cmd.PersistentFlags()
	f.StringVar(&a.addr, "admin", def, "the node's admin address, host:port or a URL; https:// for a node with node.tls (env SLUICE_ADMIN)")
	f.StringVar(&a.tokenFile, "admin-token-file", "", "file holding the admin bearer token (else env SLUICE_ADMIN_TOKEN)")
	f.StringVar(&a.caFile, "admin-ca-file", os.Getenv("SLUICE_ADMIN_CA"), "CA certificate the node's node.tls certificate is signed by; makes a bare host:port https (env SLUICE_ADMIN_CA)")
	f.StringVar(&a.certFile, "admin-cert-file", os.Getenv("SLUICE_ADMIN_CERT"), "client certificate, for a node with node.tls.client_ca_file (env SLUICE_ADMIN_CERT)")
	f.StringVar(&a.keyFile, "admin-key-file", os.Getenv("SLUICE_ADMIN_KEY"), "the client certificate's key (env SLUICE_ADMIN_KEY)")
}

func (a *adminFlags) client() (*ops.Client, error) {
	token := os.Getenv("SLUICE_ADMIN_TOKEN")
	if a.tokenFile != "" {
		b, err := os.ReadFile(a.tokenFile)
		if err != nil {
			return nil, fmt.Errorf("--admin-token-file: %w", err)
		}
		token = strings.TrimSpace(string(b))
	}
	if a.caFile == "" && a.certFile == "" && a.keyFile == "" {
		return ops.NewClient(a.addr, token), nil
	}
	tc, err := ops.ClientTLS(a.caFile, a.certFile, a.keyFile)
	if err != nil {
		return nil, err
	}
	return ops.NewTLSClient(a.addr, token, tc), nil
}

// adminRun is a command's work once it has a client for the node.
type adminRun func(cmd *cobra.Command, c *ops.Client, args []string) error

// runE makes a cobra RunE that connects to the node first: what every
// operations command starts with.
func (a *adminFlags) runE(run adminRun) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		c, err := a.client()
		if err != nil {
			return err
		}
		return run(cmd, c, args)
	}
}

func isTerminal(w any) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// confirmDelete guards a deletion that cannot be undone: on a terminal the
// operator types word after the question ask; elsewhere only --yes (which
// skips this) lets it go on, and the error says what it would delete.
func confirmDelete(cmd *cobra.Command, word, what, ask string) error {
	if !isTerminal(cmd.InOrStdin()) {
		return fmt.Errorf("%s deletes %s for good: confirm with --yes", word, what)
	}
	fmt.Fprintf(cmd.OutOrStdout(), "%s Type '%s' to confirm: ", ask, word)
	line, _ := bufio.NewReader(cmd.InOrStdin()).ReadString('\n')
	if strings.TrimSpace(line) != word {
		return fmt.Errorf("not confirmed; nothing deleted")
	}
	return nil
}

// parseWhen reads RFC 3339, "now", or a duration before now ("-6h" or "6h").
func parseWhen(s string, now time.Time) (time.Time, error) {
	s = strings.TrimSpace(s)
	if s == "now" {
		return now, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	if d, err := time.ParseDuration(strings.TrimPrefix(s, "-")); err == nil && d >= 0 {
		return now.Add(-d), nil
	}
	return time.Time{}, fmt.Errorf("%q is not RFC 3339 (2026-11-24T10:00:00Z), now, or a time ago such as -6h", s)
}

func writeJSONTo(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
