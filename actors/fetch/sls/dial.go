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
	// The timeout is the transport's, not http.Client's: the client's
	// keeps a goroutine per request until the body is closed, and the SDK
	// never closes some (below).
	return &http.Client{Transport: sdkTransport{next: t, timeout: timeout}}, nil
}

// sdkTransport bounds each request, body included, by timeout, and works
// around a leak in aliyun-log-go-sdk v0.1.131: Client.UpdateCheckpoint drops
// the response without closing its body, so every checkpoint held a
// connection (two goroutines, a file descriptor) until the server closed it
// — ~3 a second with four shards. A checkpoint answer is a few bytes: it is
// read and closed here, and the SDK gets a copy.
type sdkTransport struct {
	next    http.RoundTripper
	timeout time.Duration
}

func (t sdkTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	ctx, cancel := context.WithTimeout(req.Context(), t.timeout)
	resp, err := t.next.RoundTrip(req.WithContext(ctx))
	if err != nil {
		cancel()
		return nil, err
	}
	if req.URL.Query().Get("type") != "checkpoint" {
		resp.Body = cancelOnClose{resp.Body, cancel}
		return resp, nil
	}
	defer cancel()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
	if err != nil {
		return nil, fmt.Errorf("read the checkpoint answer: %w", err)
	}
	resp.Body = io.NopCloser(bytes.NewReader(body))
	return resp, nil
}

// cancelOnClose ends a request's context when its body is closed.
type cancelOnClose struct {
	io.ReadCloser
	cancel context.CancelFunc
}

func (b cancelOnClose) Close() error {
	err := b.ReadCloser.Close()
	b.cancel()
	return err
}
