package sls

import (
	"context"
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
	return &http.Client{Transport: t, Timeout: timeout}, nil
}
