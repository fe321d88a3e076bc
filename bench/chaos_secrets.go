package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// chaosSecrets are the credentials every chaos node runs with, by what
// they are; none may appear in a log line, an error, a metric, the status
// or a DLQ header, under any fault.
var chaosSecrets = map[string]string{
	"HEC token":              benchToken,
	"SLS access key secret":  benchAKKey,
	"admin token":            benchAdminToken,
	"NATS operator password": benchNATSPassword,
}

// operatorLogin is how the run reads the buffer on a node's NATS port:
// as an operator's nats CLI does, with the operator user's password.
var operatorLogin = nats.UserInfo("operator", benchNATSPassword)

// scanSecrets looks for every secret in the nodes' logs (in --out), each
// running node's /metrics and /api/v1/status, and every DLQ message's
// headers; each find is a violation naming where.
func (c *chaosRun) scanSecrets() {
	finds := 0
	found := func(where, what string) {
		finds++
		if finds <= 10 {
			c.violation("secret scan: the %s is in %s", what, where)
		}
	}
	look := func(where, text string) {
		for what, secret := range chaosSecrets {
			if strings.Contains(text, secret) {
				found(where, what)
			}
		}
	}
	logs, _ := filepath.Glob(filepath.Join(c.opts.out, "*.log"))
	for _, path := range logs {
		if err := scanFile(path, look); err != nil {
			c.eventf("secret scan: %v", err)
		}
	}
	for _, n := range c.nodes {
		if n.pid() == 0 {
			continue
		}
		for _, p := range []string{"/metrics", "/api/v1/status", "/readyz"} {
			body, err := c.adminGet(n, p)
			if err != nil {
				c.eventf("secret scan: %s%s: %v", n.name, p, err)
				continue
			}
			look(n.name+" "+p, body)
		}
	}
	if err := c.scanDLQHeaders(look); err != nil {
		c.eventf("secret scan: DLQ: %v", err)
	}
	c.eventf("secret scan: %d logs, the nodes' metrics and status, the DLQ's headers: %d secrets found", len(logs), finds)
}

// scanFile hands look each line of a file, named by file and line number.
func scanFile(path string, look func(where, text string)) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	r := bufio.NewReaderSize(f, 1<<20)
	for line := 1; ; line++ {
		text, err := r.ReadString('\n')
		if text != "" {
			look(fmt.Sprintf("%s line %d", filepath.Base(path), line), text)
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// adminGet reads an admin endpoint of node n with the admin token.
func (c *chaosRun) adminGet(n *chaosNode, path string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+n.admin+path, nil)
	if err != nil {
		return "", err
	}
	req.Header.Set("Authorization", "Bearer "+benchAdminToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

// scanDLQHeaders reads every DLQ message's headers through a node's NATS
// port.
func (c *chaosRun) scanDLQHeaders(look func(where, text string)) error {
	return c.eachDLQMessage(2*time.Minute, func(m jetstream.Msg) {
		var b strings.Builder
		for k, vs := range m.Headers() {
			fmt.Fprintf(&b, "%s: %s\n", k, strings.Join(vs, ", "))
		}
		look("the DLQ headers of "+m.Headers().Get("Nats-Msg-Id"), b.String())
	})
}
