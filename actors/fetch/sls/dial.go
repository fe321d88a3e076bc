package sls

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// httpClient dials the configured endpoint's address for every request.
// The SDK addresses <project>.<endpoint host>, a name SLS's DNS resolves to
// the endpoint; a loopback or IP endpoint has no such name, so this does
// what that DNS would. TLS still checks the certificate for the name asked.
// Once stop is done, every request but a checkpoint's ends at once, and
// once flush is done, checkpoints' too (see sdkTransport); nil: never.
func httpClient(endpoint string, timeout time.Duration, stop, flush context.Context) (*http.Client, error) {
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
	if stop == nil {
		stop = context.Background()
	}
	if flush == nil {
		flush = context.Background()
	}
	return &http.Client{Transport: sdkTransport{next: t, timeout: timeout, stop: stop, flush: flush}}, nil
}

// sdkTransport bounds each request, body included, by timeout, and works
// around a leak in aliyun-log-go-sdk v0.1.131: Client.UpdateCheckpoint drops
// the response without closing its body, so every checkpoint held a
// connection (two goroutines, a file descriptor) until the server closed it
// — ~3 a second with four shards. A checkpoint answer is a few bytes: it is
// read and closed here, and the SDK gets a copy.
//
// It also lets the fetcher stop while SLS does not answer. The SDK's
// requests take no context, a read is retried for 90 s, and the consumer
// library retries its last checkpoint flush forever, so a stop used to
// wait for the network (issue 35: over 30 s). Once stop is done (the node
// is stopping), a request other than a checkpoint — a pull, a heartbeat,
// the start-up checks, whose answers no one needs any more — is cut short
// and answered with an SLS error the SDK does not retry. Checkpoint saves,
// which keep acked progress, go on until flush is done (a grace after
// stop); then they too are answered at once, with the code that makes the
// library give the save up (as it does when SLS says the consumer is gone).
type sdkTransport struct {
	next        http.RoundTripper
	timeout     time.Duration
	stop, flush context.Context
}

func (t sdkTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	checkpoint := req.URL.Query().Get("type") == "checkpoint"
	gate := t.stop
	if checkpoint {
		gate = t.flush
	}
	if gate.Err() != nil {
		return stoppedAnswer(req, checkpoint), nil
	}
	ctx, cancel := context.WithTimeout(req.Context(), t.timeout)
	unhook := context.AfterFunc(gate, cancel)
	resp, err := t.next.RoundTrip(req.WithContext(ctx))
	if err != nil {
		unhook()
		cancel()
		if gate.Err() != nil {
			return stoppedAnswer(req, checkpoint), nil
		}
		return nil, err
	}
	if !checkpoint {
		resp.Body = cancelOnClose{resp.Body, func() { unhook(); cancel() }}
		return resp, nil
	}
	defer cancel()
	defer unhook()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
	if err != nil {
		if gate.Err() != nil {
			return stoppedAnswer(req, checkpoint), nil
		}
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

// stoppedAnswer is what a request gets once the fetcher no longer waits for
// SLS: an SLS error (400, which the SDK does not retry). A checkpoint's
// carries ConsumerNotExsit (SLS's spelling), the one code on which the
// consumer library stops retrying a checkpoint save; the fetcher has said
// in its log that the save was given up.
func stoppedAnswer(req *http.Request, checkpoint bool) *http.Response {
	code, msg := "SluiceStopping", "sluice is stopping: request not sent"
	if checkpoint {
		code, msg = "ConsumerNotExsit", "sluice is stopping: SLS did not answer in time; checkpoint not saved"
	}
	body := fmt.Sprintf(`{"errorCode":%q,"errorMessage":%q}`, code, msg)
	return &http.Response{
		Status: "400 Bad Request", StatusCode: http.StatusBadRequest, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header:        http.Header{"Content-Type": {"application/json"}},
		Body:          io.NopCloser(strings.NewReader(body)),
		ContentLength: int64(len(body)), Request: req,
	}
}
