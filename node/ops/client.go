package ops

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"
)

// Client talks to a node's operations API.
type Client struct {
	base  string
	token string
	http  *http.Client
}

// NewClient reaches the admin server at addr (host:port or a URL). The
// token is sent as a bearer token when set.
func NewClient(addr, token string) *Client { return NewTLSClient(addr, token, nil) }

// NewTLSClient is NewClient with the TLS configuration of an admin server
// that serves node.tls (see ClientTLS); a bare host:port then means https.
func NewTLSClient(addr, token string, tc *tls.Config) *Client {
	base := strings.TrimSuffix(addr, "/")
	if !strings.Contains(base, "://") {
		base = map[bool]string{true: "https://", false: "http://"}[tc != nil] + base
	}
	c := &Client{base: base, token: token, http: &http.Client{Timeout: 60 * time.Second}}
	if tc != nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.TLSClientConfig = tc.Clone() // the transport adds h2 to it; the caller's stays as it was
		c.http.Transport = tr
	}
	return c
}

// ClientTLS trusts the CA in caFile (empty: the system's roots) and, with
// certFile and keyFile, presents that client certificate (for a node whose
// node.tls.client_ca_file asks for one).
func ClientTLS(caFile, certFile, keyFile string) (*tls.Config, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if caFile != "" {
		b, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("admin CA: %w", err)
		}
		tc.RootCAs = x509.NewCertPool()
		if !tc.RootCAs.AppendCertsFromPEM(b) {
			return nil, fmt.Errorf("admin CA: %s holds no PEM certificate", caFile)
		}
	}
	if (certFile == "") != (keyFile == "") {
		return nil, fmt.Errorf("admin client certificate: give both the certificate and its key")
	}
	if certFile != "" {
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, fmt.Errorf("admin client certificate: %w", err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}

// APIError is an answer other than 2xx.
type APIError struct {
	Code    int
	Message string
}

func (e *APIError) Error() string { return e.Message }

func (c *Client) call(ctx context.Context, method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return err
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("admin API at %s: %w (%s)", c.base, err, connectHint(err))
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("admin API %s %s: %w", method, path, err)
	}
	if resp.StatusCode/100 != 2 {
		var e struct {
			Error string `json:"error"`
		}
		msg := strings.TrimSpace(string(data))
		if json.Unmarshal(data, &e) == nil && e.Error != "" {
			msg = e.Error
		}
		if strings.Contains(msg, "HTTP request to an HTTPS server") {
			msg += " (the node serves node.tls: use --admin https://HOST:PORT and --admin-ca-file)"
		}
		return &APIError{Code: resp.StatusCode, Message: msg}
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("admin API %s %s: %w", method, path, err)
	}
	return nil
}

// connectHint says what to change when the admin API cannot be reached.
func connectHint(err error) string {
	var unknown x509.UnknownAuthorityError
	var name x509.HostnameError
	switch {
	case errors.As(err, &unknown):
		return "--admin-ca-file or SLUICE_ADMIN_CA names the CA that signed the node's node.tls certificate"
	case errors.As(err, &name):
		return "the node's certificate does not hold this address: sluice cluster certs --node NAME=HOST"
	case strings.Contains(err.Error(), "HTTP response to HTTPS client"):
		return "the node serves cleartext: use --admin http://HOST:PORT"
	}
	return "is the node running? --admin sets the address"
}

// Status reads the node's status.
func (c *Client) Status(ctx context.Context) (*Status, error) {
	var st Status
	return &st, c.call(ctx, http.MethodGet, "/api/v1/status", nil, &st)
}

// Replay starts (or with DryRun plans) a replay.
func (c *Client) Replay(ctx context.Context, req ReplayRequest) (*StartResponse[ReplayPlan], error) {
	var out StartResponse[ReplayPlan]
	return &out, c.call(ctx, http.MethodPost, "/api/v1/replays", req, &out)
}

// Jobs lists the node's jobs.
func (c *Client) Jobs(ctx context.Context) ([]JobStatus, error) {
	var out []JobStatus
	return out, c.call(ctx, http.MethodGet, "/api/v1/jobs", nil, &out)
}

// Job reads one job.
func (c *Client) Job(ctx context.Context, id string) (*JobStatus, error) {
	var out JobStatus
	return &out, c.call(ctx, http.MethodGet, "/api/v1/jobs/"+url.PathEscape(id), nil, &out)
}

// Cancel stops a job.
func (c *Client) Cancel(ctx context.Context, id string) (*JobStatus, error) {
	var out JobStatus
	return &out, c.call(ctx, http.MethodDelete, "/api/v1/jobs/"+url.PathEscape(id), nil, &out)
}

// DLQGroups counts dead-lettered records by stage, name and reason.
func (c *Client) DLQGroups(ctx context.Context, f DLQFilter) ([]DLQGroup, error) {
	q := url.Values{}
	for k, v := range map[string]string{"stage": f.Stage, "name": f.Name, "reason": f.Reason} {
		if v != "" {
			q.Set(k, v)
		}
	}
	if !f.Since.IsZero() {
		q.Set("since", f.Since.UTC().Format(time.RFC3339Nano))
	}
	var out []DLQGroup
	return out, c.call(ctx, http.MethodGet, "/api/v1/dlq?"+q.Encode(), nil, &out)
}

// DLQShow reads one dead-lettered record.
func (c *Client) DLQShow(ctx context.Context, seq uint64) (*DeadEntry, error) {
	var out DeadEntry
	return &out, c.call(ctx, http.MethodGet, "/api/v1/dlq/"+strconv.FormatUint(seq, 10), nil, &out)
}

// Redrive starts (or with dryRun plans) a re-drive.
func (c *Client) Redrive(ctx context.Context, f DLQFilter, dryRun bool) (*StartResponse[RedrivePlan], error) {
	body := struct {
		DLQFilter
		DryRun bool `json:"dry_run"`
	}{f, dryRun}
	var out StartResponse[RedrivePlan]
	return &out, c.call(ctx, http.MethodPost, "/api/v1/dlq/redrive", body, &out)
}

// PurgeDLQ deletes the records f selects.
func (c *Client) PurgeDLQ(ctx context.Context, f DLQFilter) (int, error) {
	body := struct {
		DLQFilter
		Confirm bool `json:"confirm"`
	}{f, true}
	var out struct {
		Purged int `json:"purged"`
	}
	return out.Purged, c.call(ctx, http.MethodPost, "/api/v1/dlq/purge", body, &out)
}

// Backlog lists the backlogs of sinks and sources no longer configured.
func (c *Client) Backlog(ctx context.Context) ([]Orphan, error) {
	var out []Orphan
	return out, c.call(ctx, http.MethodGet, "/api/v1/backlog", nil, &out)
}

// MoveBacklog starts (or with DryRun plans) moving an unconfigured sink's
// backlog to a configured sink.
func (c *Client) MoveBacklog(ctx context.Context, req MoveRequest) (*StartResponse[MovePlan], error) {
	var out StartResponse[MovePlan]
	return &out, c.call(ctx, http.MethodPost, "/api/v1/backlog/move", req, &out)
}

// DropBacklog deletes an unconfigured sink's or source's backlog for good.
func (c *Client) DropBacklog(ctx context.Context, req DropRequest) (*Dropped, error) {
	req.Confirm = true
	var out Dropped
	return &out, c.call(ctx, http.MethodPost, "/api/v1/backlog/drop", req, &out)
}

// WaitJob polls a job until it ends, calling progress on each snapshot.
func (c *Client) WaitJob(ctx context.Context, id string, every time.Duration, progress func(JobStatus)) (*JobStatus, error) {
	for {
		j, err := c.Job(ctx, id)
		if err != nil {
			return nil, err
		}
		if progress != nil {
			progress(*j)
		}
		if j.State != JobRunning {
			return j, nil
		}
		select {
		case <-ctx.Done():
			return j, ctx.Err()
		case <-time.After(every):
		}
	}
}
