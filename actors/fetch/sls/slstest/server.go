// Package slstest is an in-process stand-in for the Alibaba Cloud Log
// Service (SLS) API, close enough that the real aliyun-log-go-sdk client,
// consumer library and producer cannot tell: signature v1, protobuf bodies
// in lz4 blocks, cursors, shards, consumer groups with heartbeat-based
// shard assignment and timeouts, server-side checkpoints, the consumer
// group quota, and SLS-style error JSON. Faults can be injected.
package slstest

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	sls "github.com/aliyun/aliyun-log-go-sdk"
	"github.com/gogo/protobuf/proto"
)

// Options configure a stand-in.
type Options struct {
	Project, Logstore            string
	Shards                       int // default 2
	AccessKeyID, AccessKeySecret string
	Addr                         string // default 127.0.0.1:0
	ConsumerGroupQuota           int    // default 10
	// StateFile, when set, keeps consumer groups and checkpoints across
	// restarts of the stand-in, as SLS keeps them (dev mode uses it).
	StateFile string
	// TrimConsumed, when set, drops log groups that every consumer group
	// has checkpointed past once they are this old, so a long run does not
	// hold every log in memory (SLS's TTL, but never losing unread data).
	TrimConsumed time.Duration
}

// Server is a running stand-in.
type Server struct {
	// Endpoint is what a client is configured with: http://127.0.0.1:port.
	Endpoint string
	opts     Options
	srv      *http.Server
	l        net.Listener

	mu       sync.Mutex
	shards   []*shard
	groups   map[string]*group
	slowPull time.Duration
	failNext int          // answer the next n pulls with 500
	broken   map[int]bool // shards whose pulls fail
	pulls    int
	conns    int // client connections open now
}

type shard struct {
	base   int64 // position of groups[0]: earlier ones were trimmed
	groups []storedGroup
}

// end is the position after the shard's last log group.
func (sh *shard) end() int64 { return sh.base + int64(len(sh.groups)) }

type storedGroup struct {
	lg       *sls.LogGroup
	received time.Time
}

type group struct {
	timeout     time.Duration
	order       bool
	consumers   map[string]*consumer
	owner       map[int]string // shard → consumer
	checkpoints map[int]checkpoint
}

type consumer struct {
	last time.Time
	held map[int]bool // what it said it holds in its last heartbeat
}

type checkpoint struct {
	cursor   string
	updated  time.Time
	consumer string
}

// NewServer starts a stand-in.
func NewServer(opts Options) (*Server, error) {
	if opts.Shards <= 0 {
		opts.Shards = 2
	}
	if opts.ConsumerGroupQuota <= 0 {
		opts.ConsumerGroupQuota = 10
	}
	if opts.Addr == "" {
		opts.Addr = "127.0.0.1:0"
	}
	l, err := net.Listen("tcp", opts.Addr)
	if err != nil {
		return nil, fmt.Errorf("slstest: listen: %w", err)
	}
	s := &Server{opts: opts, l: l, groups: map[string]*group{}, broken: map[int]bool{}}
	for i := 0; i < opts.Shards; i++ {
		s.shards = append(s.shards, &shard{})
	}
	if err := s.loadState(); err != nil {
		l.Close()
		return nil, err
	}
	s.Endpoint = "http://" + l.Addr().String()
	s.srv = &http.Server{Handler: http.HandlerFunc(s.serve), ReadHeaderTimeout: 10 * time.Second, ConnState: s.connState}
	go s.srv.Serve(l)
	return s, nil
}

// Close stops the stand-in.
func (s *Server) Close() { _ = s.srv.Close() }

// HTTPClient dials the stand-in for every host: the SDK addresses
// <project>.<endpoint host>, a name only SLS's own DNS resolves.
func (s *Server) HTTPClient() *http.Client {
	addr := s.l.Addr().String()
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.Proxy = nil
	t.DialContext = func(ctx context.Context, network, _ string) (net.Conn, error) {
		return (&net.Dialer{Timeout: 10 * time.Second}).DialContext(ctx, network, addr)
	}
	t.MaxIdleConnsPerHost = 16
	return &http.Client{Transport: t, Timeout: time.Minute}
}

// Put appends a log group to a shard, received now.
func (s *Server) Put(shardID int, lg *sls.LogGroup) {
	s.PutAt(shardID, lg, time.Now())
}

// PutAt appends a log group received at t (cursors by time use it).
func (s *Server) PutAt(shardID int, lg *sls.LogGroup, t time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sh := s.shards[shardID%len(s.shards)]
	sh.groups = append(sh.groups, storedGroup{lg: lg, received: t})
}

// Checkpoint is a group's saved cursor for a shard ("" when none).
func (s *Server) Checkpoint(groupName string, shardID int) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if g := s.groups[groupName]; g != nil {
		return g.checkpoints[shardID].cursor
	}
	return ""
}

// CheckpointPosition decodes Checkpoint into a log group position (-1: none).
func (s *Server) CheckpointPosition(groupName string, shardID int) int64 {
	c := s.Checkpoint(groupName, shardID)
	if c == "" {
		return -1
	}
	p, _ := decodeCursor(c)
	return p
}

// Owners maps each assigned shard to its consumer.
func (s *Server) Owners(groupName string) map[int]string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[int]string{}
	if g := s.groups[groupName]; g != nil {
		for k, v := range g.owner {
			out[k] = v
		}
	}
	return out
}

// LogGroups is the number of log groups ever put into a shard.
func (s *Server) LogGroups(shardID int) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return int(s.shards[shardID].end())
}

// Logs counts every log held in every shard (all of them, unless
// TrimConsumed dropped some).
func (s *Server) Logs() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, sh := range s.shards {
		for _, g := range sh.groups {
			n += len(g.lg.Logs)
		}
	}
	return n
}

// connState counts open client connections, so tests can see a leak.
func (s *Server) connState(_ net.Conn, st http.ConnState) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch st {
	case http.StateNew:
		s.conns++
	case http.StateClosed, http.StateHijacked:
		s.conns--
	}
}

// OpenConns is the number of client connections open now.
func (s *Server) OpenConns() int { s.mu.Lock(); defer s.mu.Unlock(); return s.conns }

// Pulls counts PullLogs requests served.
func (s *Server) Pulls() int { s.mu.Lock(); defer s.mu.Unlock(); return s.pulls }

// SlowPulls delays every PullLogs answer by d.
func (s *Server) SlowPulls(d time.Duration) { s.mu.Lock(); s.slowPull = d; s.mu.Unlock() }

// FailPulls answers the next n PullLogs with 500 InternalServerError.
func (s *Server) FailPulls(n int) { s.mu.Lock(); s.failNext = n; s.mu.Unlock() }

// BreakShard makes every pull of a shard fail (or work again).
func (s *Server) BreakShard(id int, broken bool) { s.mu.Lock(); s.broken[id] = broken; s.mu.Unlock() }

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	if err := s.handle(w, r, body); err != nil {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("x-log-requestid", "slstest")
		w.WriteHeader(err.status)
		_ = json.NewEncoder(w).Encode(err)
	}
}

func (s *Server) handle(w http.ResponseWriter, r *http.Request, body []byte) *slsError {
	if err := checkSignature(r, body, s.opts.AccessKeyID, s.opts.AccessKeySecret); err != nil {
		return err
	}
	// SLS finds the project in the Host: <project>.<endpoint>.
	project, _, _ := strings.Cut(r.Host, ".")
	if project != s.opts.Project {
		return errorf(404, "ProjectNotExist", "The Project does not exist : %s", project)
	}
	parts := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
	if len(parts) < 2 || parts[0] != "logstores" {
		return errorf(404, "RequestURINotFound", "unknown path %s", r.URL.Path)
	}
	if parts[1] != s.opts.Logstore {
		return errorf(404, "LogStoreNotExist", "logstore %s does not exist", parts[1])
	}
	q := r.URL.Query()
	switch {
	case len(parts) == 2 && r.Method == http.MethodPost,
		len(parts) == 4 && parts[2] == "shards" && r.Method == http.MethodPost:
		return s.putLogs(w, r, body)
	case len(parts) == 4 && parts[2] == "shards" && q.Get("type") == "cursor":
		return s.getCursor(w, parts[3], q.Get("from"))
	case len(parts) == 4 && parts[2] == "shards" && q.Get("type") == "logs":
		return s.pullLogs(w, parts[3], q)
	case len(parts) == 3 && parts[2] == "consumergroups" && r.Method == http.MethodGet:
		return s.listGroups(w)
	case len(parts) == 3 && parts[2] == "consumergroups" && r.Method == http.MethodPost:
		return s.createGroup(w, body)
	case len(parts) == 4 && parts[2] == "consumergroups":
		switch {
		case r.Method == http.MethodPut:
			return s.updateGroup(w, parts[3], body)
		case r.Method == http.MethodPost && q.Get("type") == "heartbeat":
			return s.heartbeat(w, parts[3], q.Get("consumer"), body)
		case r.Method == http.MethodPost && q.Get("type") == "checkpoint":
			return s.updateCheckpoint(w, parts[3], q.Get("consumer"), q.Get("forceSuccess") == "true", body)
		case r.Method == http.MethodGet:
			return s.getCheckpoints(w, parts[3])
		}
	}
	return errorf(404, "RequestURINotFound", "%s %s is not an SLS API this stand-in knows", r.Method, r.URL.Path)
}

func writeJSON(w http.ResponseWriter, v any) *slsError {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("x-log-requestid", "slstest")
	w.WriteHeader(200)
	_ = json.NewEncoder(w).Encode(v)
	return nil
}

func (s *Server) shardOf(id string) (*shard, int, *slsError) {
	n, err := strconv.Atoi(id)
	if err != nil || n < 0 || n >= len(s.shards) {
		return nil, 0, errorf(404, "ShardNotExist", "shard %s does not exist", id)
	}
	return s.shards[n], n, nil
}

func (s *Server) putLogs(w http.ResponseWriter, r *http.Request, body []byte) *slsError {
	lg, serr := decodeLogGroup(body, r.Header.Get("x-log-compresstype"), r.Header.Get("x-log-bodyrawsize"))
	if serr != nil {
		return serr
	}
	s.mu.Lock()
	// Spread over shards: a hash key picks one, else the shortest.
	target := 0
	if key := r.URL.Query().Get("key"); key != "" {
		target = int(fnv32(key)) % len(s.shards)
	} else {
		for i, sh := range s.shards {
			if sh.end() < s.shards[target].end() {
				target = i
			}
		}
	}
	s.shards[target].groups = append(s.shards[target].groups, storedGroup{lg: lg, received: time.Now()})
	s.mu.Unlock()
	w.Header().Set("x-log-requestid", "slstest")
	w.WriteHeader(200)
	return nil
}

// decodeLogGroup reads a PutLogs body: a LogGroup in protobuf, lz4'd
// when the compress type says so, with its raw size in a header.
func decodeLogGroup(body []byte, compressType, rawSize string) (*sls.LogGroup, *slsError) {
	raw := body
	if compressType == "lz4" {
		size, err := strconv.Atoi(rawSize)
		if err != nil || size < 0 || size > maxRawBody {
			return nil, errorf(400, "InvalidCompressType", "x-log-bodyrawsize %q: want 0 to %d", rawSize, maxRawBody)
		}
		out, err := decompressLZ4(body, size)
		if err != nil {
			return nil, errorf(400, "InvalidCompressType", "%v", err)
		}
		raw = out
	}
	lg := &sls.LogGroup{}
	if err := proto.Unmarshal(raw, lg); err != nil {
		return nil, errorf(400, "PostBodyInvalid", "bad LogGroup: %v", err)
	}
	return lg, nil
}

// maxRawBody bounds what a PutLogs body may claim to decompress to (SLS
// takes at most 10 MB per request).
const maxRawBody = 64 << 20

func fnv32(s string) uint32 {
	h := uint32(2166136261)
	for i := 0; i < len(s); i++ {
		h = (h ^ uint32(s[i])) * 16777619
	}
	return h
}

func (s *Server) getCursor(w http.ResponseWriter, id, from string) *slsError {
	s.mu.Lock()
	defer s.mu.Unlock()
	sh, _, err := s.shardOf(id)
	if err != nil {
		return err
	}
	var pos int
	switch from {
	case "begin":
		pos = int(sh.base)
	case "end":
		pos = int(sh.end())
	default:
		t, perr := strconv.ParseInt(from, 10, 64)
		if perr != nil {
			return errorf(400, "ParameterInvalid", "from %q: want begin, end or unix seconds", from)
		}
		pos = int(sh.base) + sort.Search(len(sh.groups), func(i int) bool { return sh.groups[i].received.Unix() >= t })
	}
	return writeJSON(w, map[string]string{"cursor": encodeCursor(int64(pos))})
}

func (s *Server) pullLogs(w http.ResponseWriter, id string, q map[string][]string) *slsError {
	get := func(k string) string {
		if v := q[k]; len(v) > 0 {
			return v[0]
		}
		return ""
	}
	s.mu.Lock()
	s.pulls++
	slow, fail := s.slowPull, s.failNext > 0
	if fail {
		s.failNext--
	}
	sh, n, err := s.shardOf(id)
	if err == nil && s.broken[n] {
		fail = true
	}
	s.mu.Unlock()
	if err != nil {
		return err
	}
	if slow > 0 {
		time.Sleep(slow)
	}
	if fail {
		return errorf(500, "InternalServerError", "injected failure pulling shard %s", id)
	}
	pos, perr := decodeCursor(get("cursor"))
	if perr != nil || pos < 0 {
		return errorf(400, "InvalidCursor", "cursor %q is invalid", get("cursor"))
	}
	count, _ := strconv.Atoi(get("count"))
	if count <= 0 || count > 1000 {
		count = 1000
	}
	s.mu.Lock()
	end := sh.end()
	if ec := get("end_cursor"); ec != "" {
		if e, err := decodeCursor(ec); err == nil && e < end {
			end = e
		}
	}
	if pos > sh.end() {
		s.mu.Unlock()
		return errorf(400, "InvalidCursor", "cursor %q is beyond the shard's end", get("cursor"))
	}
	if pos < sh.base {
		s.mu.Unlock()
		return errorf(400, "InvalidCursor", "cursor %q points at trimmed log groups (the shard starts at %d)", get("cursor"), sh.base)
	}
	list := &sls.LogGroupList{}
	next := pos
	for ; next < end && len(list.LogGroups) < count; next++ {
		list.LogGroups = append(list.LogGroups, sh.groups[next-sh.base].lg)
	}
	s.mu.Unlock()
	h := w.Header()
	h.Set("x-log-requestid", "slstest")
	h.Set("x-log-cursor", encodeCursor(next))
	h.Set("x-log-count", strconv.Itoa(len(list.LogGroups)))
	if len(list.LogGroups) > 0 {
		// As SLS does: the last log group's position, in decimal (not a
		// cursor); the SDK numbers the pull's log groups back from it.
		h.Set("x-log-read-last-cursor", strconv.FormatInt(next-1, 10))
	}
	if len(list.LogGroups) == 0 {
		h.Set("x-log-bodyrawsize", "0")
		h.Set("x-log-compresstype", "lz4")
		w.WriteHeader(200)
		return nil
	}
	raw, merr := proto.Marshal(list)
	if merr != nil {
		return errorf(500, "InternalServerError", "%v", merr)
	}
	h.Set("x-log-bodyrawsize", strconv.Itoa(len(raw)))
	h.Set("x-log-compresstype", "lz4")
	h.Set("Content-Type", "application/x-protobuf")
	w.WriteHeader(200)
	_, _ = w.Write(compressLZ4(raw))
	return nil
}

func (s *Server) listGroups(w http.ResponseWriter) *slsError {
	s.mu.Lock()
	type item struct {
		Name    string `json:"name"`
		Timeout int    `json:"timeout"`
		Order   bool   `json:"order"`
	}
	out := []item{}
	for name, g := range s.groups {
		out = append(out, item{name, int(g.timeout / time.Second), g.order})
	}
	s.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return writeJSON(w, out)
}

func (s *Server) createGroup(w http.ResponseWriter, body []byte) *slsError {
	var req struct {
		Name    string `json:"consumerGroup"`
		Timeout int    `json:"timeout"`
		Order   bool   `json:"order"`
	}
	if err := json.Unmarshal(body, &req); err != nil || req.Name == "" {
		return errorf(400, "ParameterInvalid", "bad consumer group: %s", body)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.groups[req.Name]; ok {
		return errorf(400, "ConsumerGroupAlreadyExist", "consumer group %s already exist", req.Name)
	}
	if len(s.groups) >= s.opts.ConsumerGroupQuota {
		return errorf(400, "ExceedQuota", "consumer group quota exceed: logstore %s already has %d consumer groups", s.opts.Logstore, len(s.groups))
	}
	s.groups[req.Name] = newGroup(time.Duration(max(req.Timeout, 1))*time.Second, req.Order)
	if err := s.saveStateLocked(); err != nil {
		return errorf(500, "InternalServerError", "saving state: %v", err)
	}
	return writeJSON(w, struct{}{})
}

func (s *Server) updateGroup(w http.ResponseWriter, name string, body []byte) *slsError {
	var req struct {
		Timeout int  `json:"timeout"`
		Order   bool `json:"order"`
	}
	_ = json.Unmarshal(body, &req)
	s.mu.Lock()
	defer s.mu.Unlock()
	g := s.groups[name]
	if g == nil {
		return errorf(404, "ConsumerGroupNotExist", "consumer group %s does not exist", name)
	}
	if req.Timeout > 0 {
		g.timeout = time.Duration(req.Timeout) * time.Second
	}
	g.order = req.Order
	return writeJSON(w, struct{}{})
}

// heartbeat records the consumer's held shards and answers the shards it
// should hold: an even share, keeping what it has, freeing the shards of
// consumers that stopped heart-beating. A shard moves to another consumer
// only once its holder stops listing it (it finished) or timed out.
func (s *Server) heartbeat(w http.ResponseWriter, name, who string, body []byte) *slsError {
	var held []int
	if err := json.Unmarshal(body, &held); err != nil {
		return errorf(400, "ParameterInvalid", "heartbeat body: %v", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	g := s.groups[name]
	if g == nil {
		return errorf(404, "ConsumerGroupNotExist", "consumer group %s does not exist", name)
	}
	now := time.Now()
	c := g.consumers[who]
	if c == nil {
		c = &consumer{}
		g.consumers[who] = c
	}
	c.last, c.held = now, map[int]bool{}
	for _, id := range held {
		c.held[id] = true
	}
	for other, oc := range g.consumers {
		if now.Sub(oc.last) > g.timeout {
			delete(g.consumers, other)
		}
	}
	for id, owner := range g.owner {
		// Free the shards of consumers that timed out. (A shard handed to
		// this consumer but not yet in its heartbeat stays its own.)
		if !strings.HasPrefix(owner, "-released-by-") && g.consumers[owner] == nil {
			delete(g.owner, id)
		}
	}
	names := make([]string, 0, len(g.consumers))
	for n := range g.consumers {
		names = append(names, n)
	}
	sort.Strings(names)
	share := len(s.shards) / len(names)
	if extra := len(s.shards) % len(names); indexOf(names, who) < extra {
		share++
	}
	mine := []int{}
	for id := 0; id < len(s.shards); id++ {
		if g.owner[id] == who {
			mine = append(mine, id)
		}
	}
	// Give up what is over the share (the consumer stops it, then stops
	// listing it, then it is free); take free shards up to the share.
	for len(mine) > share {
		id := mine[len(mine)-1]
		mine = mine[:len(mine)-1]
		if !c.held[id] {
			delete(g.owner, id)
		} else {
			g.owner[id] = "-released-by-" + who
		}
	}
	for id := 0; id < len(s.shards) && len(mine) < share; id++ {
		if _, taken := g.owner[id]; !taken {
			g.owner[id] = who
			mine = append(mine, id)
		}
	}
	// A released shard is free once its old holder no longer lists it.
	for id, owner := range g.owner {
		if prev, ok := strings.CutPrefix(owner, "-released-by-"); ok {
			if pc := g.consumers[prev]; pc == nil || !pc.held[id] {
				delete(g.owner, id)
			}
		}
	}
	sort.Ints(mine)
	return writeJSON(w, mine)
}

func indexOf(names []string, n string) int {
	for i, x := range names {
		if x == n {
			return i
		}
	}
	return len(names)
}

func (s *Server) updateCheckpoint(w http.ResponseWriter, name, who string, force bool, body []byte) *slsError {
	var req struct {
		Shard      int    `json:"shard"`
		Checkpoint string `json:"checkpoint"`
	}
	if err := json.Unmarshal(body, &req); err != nil {
		return errorf(400, "ParameterInvalid", "checkpoint body: %v", err)
	}
	if _, err := decodeCursor(req.Checkpoint); err != nil {
		return errorf(400, "InvalidCursor", "checkpoint %q is not a cursor", req.Checkpoint)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	g := s.groups[name]
	if g == nil {
		return errorf(404, "ConsumerGroupNotExist", "consumer group %s does not exist", name)
	}
	if req.Shard < 0 || req.Shard >= len(s.shards) {
		return errorf(400, "ShardNotExsit", "shard %d does not exist", req.Shard)
	}
	if _, ok := g.consumers[who]; !ok {
		return errorf(400, "ConsumerNotExsit", "consumer %s does not exist", who)
	}
	if owner := g.owner[req.Shard]; !force && owner != who {
		return errorf(400, "ConsumerNotMatch", "shard %d is held by %q, not %s", req.Shard, owner, who)
	}
	g.checkpoints[req.Shard] = checkpoint{cursor: req.Checkpoint, updated: time.Now(), consumer: who}
	s.trimLocked(req.Shard)
	if err := s.saveStateLocked(); err != nil {
		return errorf(500, "InternalServerError", "saving state: %v", err)
	}
	return writeJSON(w, struct{}{})
}

func (s *Server) getCheckpoints(w http.ResponseWriter, name string) *slsError {
	s.mu.Lock()
	defer s.mu.Unlock()
	g := s.groups[name]
	if g == nil {
		return errorf(404, "ConsumerGroupNotExist", "consumer group %s does not exist", name)
	}
	type item struct {
		Shard      int    `json:"shard"`
		Checkpoint string `json:"checkpoint"`
		UpdateTime int64  `json:"updateTime"`
		Consumer   string `json:"consumer"`
	}
	out := []item{}
	for id, cp := range g.checkpoints {
		out = append(out, item{id, cp.cursor, cp.updated.UnixMicro(), cp.consumer})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Shard < out[j].Shard })
	return writeJSON(w, out)
}

// trimLocked drops a shard's log groups that every consumer group has
// checkpointed past and that are older than TrimConsumed.
func (s *Server) trimLocked(shardID int) {
	if s.opts.TrimConsumed <= 0 || len(s.groups) == 0 {
		return
	}
	floor := int64(-1)
	for _, g := range s.groups {
		c, ok := g.checkpoints[shardID]
		if !ok {
			return // a group that never checkpointed may still read from the start
		}
		pos, err := decodeCursor(c.cursor)
		if err != nil {
			return
		}
		if floor < 0 || pos < floor {
			floor = pos
		}
	}
	sh := s.shards[shardID]
	old := time.Now().Add(-s.opts.TrimConsumed)
	n := 0
	for n < len(sh.groups) && sh.base+int64(n) < floor && sh.groups[n].received.Before(old) {
		n++
	}
	if n > 0 {
		sh.groups = append([]storedGroup(nil), sh.groups[n:]...)
		sh.base += int64(n)
	}
}
