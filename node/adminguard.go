package node

import (
	"fmt"
	"mime"
	"net"
	"net/http"
	"strings"
)

// The admin API's guard against what a web browser can be made to send.
//
// A page the operator opens can make the browser send requests to the
// admin address (loopback included: the browser runs on the node or next
// to it), and a page on a name the attacker re-points at the node (DNS
// rebinding) can even read the answers. What the browser sends gives both
// away, so the guard refuses:
//   - a Host that is neither an IP address, localhost, the name the listener
//     was given nor one of node.admin_hosts, on every request: after a
//     rebinding it still carries the attacker's name;
//   - on writes (any method but GET and HEAD), what a browser says is a
//     cross-origin request (Sec-Fetch-Site, or an Origin that is not the
//     Host: Go's CrossOriginProtection decides);
//   - on writes, a Content-Type other than application/json: a cross-origin
//     request can carry one only after a CORS preflight, which this server
//     never grants;
//   - on writes without node.admin_token, everything, unless
//     node.admin_loopback_writes says otherwise.
//
// The token check (authorize) comes after it, so a refusal here never
// depends on a secret and never shows one.

// adminHandler is the admin server's handler chain.
func (n *Node) adminHandler() http.Handler {
	cfg := n.Config.Node
	if cfg.AdminToken.IsEmpty() && cfg.AdminLoopbackWrites {
		n.Log.Warn("node.admin_loopback_writes is on: any process or user of this machine can replay, re-drive, purge and drop through the admin API without a token; set node.admin_token instead",
			"admin", cfg.AdminListen)
	}
	return guardAdmin(cfg, n.authorize(n.mux))
}

type adminGuard struct {
	names    map[string]bool // host names besides IP addresses and localhost
	readOnly bool            // no token and no admin_loopback_writes
	origins  *http.CrossOriginProtection
	next     http.Handler
}

func guardAdmin(cfg NodeConfig, next http.Handler) http.Handler {
	g := &adminGuard{names: map[string]bool{"localhost": true}, next: next,
		readOnly: cfg.AdminToken.IsEmpty() && !cfg.AdminLoopbackWrites, origins: http.NewCrossOriginProtection()}
	if host, _, err := net.SplitHostPort(cfg.AdminListen); err == nil && host != "" {
		g.names[hostName(host)] = true
	}
	for _, h := range cfg.AdminHosts {
		g.names[hostName(h)] = true
	}
	return g
}

func (g *adminGuard) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !g.hostAllowed(r.Host) {
		refuse(w, http.StatusForbidden, fmt.Sprintf("Host %s is not a name of this node: refused, as a DNS rebinding would be (use its IP address or localhost, or list the name in node.admin_hosts)", clip(r.Host)))
		return
	}
	if r.Method == http.MethodGet || r.Method == http.MethodHead {
		g.next.ServeHTTP(w, r)
		return
	}
	if err := g.origins.Check(r); err != nil {
		from := "Origin " + clip(r.Header.Get("Origin"))
		if r.Header.Get("Origin") == "" {
			from = "Sec-Fetch-Site " + clip(r.Header.Get("Sec-Fetch-Site"))
		}
		refuse(w, http.StatusForbidden, fmt.Sprintf("%s %s from %s refused: %v; a web page of another origin cannot change this node", r.Method, r.URL.Path, from, err))
		return
	}
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		refuse(w, http.StatusUnsupportedMediaType, fmt.Sprintf("%s %s with Content-Type %s refused: send application/json (what a browser form cannot send)", r.Method, r.URL.Path, clip(r.Header.Get("Content-Type"))))
		return
	}
	if g.readOnly {
		refuse(w, http.StatusForbidden, fmt.Sprintf("%s %s refused: without node.admin_token the admin API is read-only; set one (the CLI reads SLUICE_ADMIN_TOKEN or --admin-token-file)", r.Method, r.URL.Path))
		return
	}
	g.next.ServeHTTP(w, r)
}

// hostAllowed looks at the name in Host, not the port: port forwarding
// (docker -p, kubectl port-forward) changes the port, and a rebinding
// attacker controls the name, not the port. An IP address cannot be
// rebound, so any is fine.
func (g *adminGuard) hostAllowed(hostport string) bool {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	host = hostName(host)
	if host == "" {
		return false
	}
	return net.ParseIP(host) != nil || g.names[host]
}

// hostName is a host as compared: lower case, no brackets, no final dot.
func hostName(h string) string {
	return strings.TrimSuffix(strings.ToLower(strings.Trim(h, "[]")), ".")
}

// refuse answers like the /api/v1 routes do, so the CLI prints the reason.
func refuse(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("X-Content-Type-Options", "nosniff")
	writeJSON(w, code, map[string]string{"error": msg})
}

// clip quotes a header value for an answer, cut short: it is the sender's
// text.
func clip(s string) string {
	if len(s) > 80 {
		s = s[:80] + "…"
	}
	return fmt.Sprintf("%q", s)
}
