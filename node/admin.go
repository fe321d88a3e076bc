package node

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

func (n *Node) startAdmin() error {
	l, err := net.Listen("tcp", n.Config.Node.AdminListen)
	if err != nil {
		return fmt.Errorf("admin listen %s: %w", n.Config.Node.AdminListen, err)
	}
	n.adminL = l
	n.mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	n.mux.HandleFunc("GET /readyz", n.serveReady)
	n.mux.Handle("GET /metrics", promhttp.HandlerFor(n.Registry, promhttp.HandlerOpts{}))
	n.mux.HandleFunc("GET /api/v1/actors", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, n.Runtime.Statuses())
	})
	n.admin = &http.Server{Handler: n.adminHandler(), ReadHeaderTimeout: 10 * time.Second, TLSConfig: n.tls}
	serve := n.admin.Serve
	if n.tls != nil {
		// The certificate is in TLSConfig; a cleartext request gets Go's
		// 400 "client sent an HTTP request to an HTTPS server" and nothing else.
		serve = func(l net.Listener) error { return n.admin.ServeTLS(l, "", "") }
	}
	go func() {
		if err := serve(l); err != nil && err != http.ErrServerClosed {
			n.Log.Error("admin server", "err", err)
		}
	}()
	return nil
}

func (n *Node) stopAdmin() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = n.admin.Shutdown(ctx)
}

// serveReady answers 200 "ready" or 503 with one reason a line.
func (n *Node) serveReady(w http.ResponseWriter, r *http.Request) {
	err := n.Ready()
	if err == nil {
		fmt.Fprintln(w, "ready")
		return
	}
	w.WriteHeader(http.StatusServiceUnavailable)
	fmt.Fprintln(w, "not ready:")
	for _, line := range strings.Split(err.Error(), "\n") {
		fmt.Fprintln(w, "- "+line)
	}
}

// authorize asks for the admin token on everything but /healthz and /readyz,
// when one is configured (required when the admin address is not loopback).
func (n *Node) authorize(next http.Handler) http.Handler {
	token := n.Config.Node.AdminToken
	if token.IsEmpty() {
		return next
	}
	want := []byte("Bearer " + token.Reveal())
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/healthz" && r.URL.Path != "/readyz" &&
			subtle.ConstantTimeCompare([]byte(r.Header.Get("Authorization")), want) != 1 {
			http.Error(w, "admin token required (Authorization: Bearer ...)", http.StatusUnauthorized)
			return
		}
		next.ServeHTTP(w, r)
	})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}
