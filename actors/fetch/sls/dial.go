package sls

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"time"
)

// httpClient dials the configured endpoint's address for every request.
// The SDK addresses <project>.<endpoint host>, a name SLS's DNS resolves to
// the endpoint; a loopback or IP endpoint has no such name, so this does
// what that DNS would. TLS still checks the certificate for the name asked.
func httpClient(endpoint string, timeout time.Duration) (*http.Client, error) {
	u, err := url.Parse(endpoint)
	if err != nil {
		return nil, err
	}
	addr := u.Host
	if u.Port() == "" {
		if u.Scheme == "https" {
			addr = net.JoinHostPort(u.Hostname(), "443")
		} else {
			addr = net.JoinHostPort(u.Hostname(), "80")
		}
	}
	d := &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.Proxy = nil
	t.DialContext = func(ctx context.Context, network, _ string) (net.Conn, error) {
		return d.DialContext(ctx, network, addr)
	}
	t.MaxIdleConnsPerHost = 16
	return &http.Client{Transport: readsCheckpointAnswers{t}, Timeout: timeout}, nil
}

// readsCheckpointAnswers works around a leak in aliyun-log-go-sdk v0.1.131:
// Client.UpdateCheckpoint drops the response without closing its body, so
// every checkpoint kept a connection (two goroutines, a file descriptor)
// until the server closed it — ~3 a second with four shards. The answer is
// a few bytes: read it here and close the body, so the SDK holds a copy.
type readsCheckpointAnswers struct{ next http.RoundTripper }

func (t readsCheckpointAnswers) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.next.RoundTrip(req)
	if err != nil || req.URL.Query().Get("type") != "checkpoint" {
		return resp, err
	}
	body, rerr := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
	if rerr != nil {
		return nil, fmt.Errorf("read the checkpoint answer: %w", rerr)
	}
	resp.Body = io.NopCloser(bytes.NewReader(body))
	return resp, nil
}
