package queue

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// Which records are delivered, for the trimmer: a record is delivered once
// every durable consumer whose filter matches its subject has acked past it.
// That includes consumers sluice did not create (an operator's `nats
// consumer add` on the NATS port, unfiltered or with wildcards or a list of
// filters). Whatever the trimmer cannot reason about makes it keep more,
// never less.

// reader is what the trimmer knows of one durable consumer.
type reader struct {
	name    string
	filters []string // never empty; ">" for a consumer without a filter
	floor   uint64   // every message on filters at or below it is acked
}

// durableReaders keeps the durable consumers, the ones that hold records.
// Ephemeral readers (replays, ordered consumers) do not.
func durableReaders(consumers []*server.ConsumerInfo) []reader {
	var rs []reader
	for _, ci := range consumers {
		if ci == nil {
			continue
		}
		if ci.Config == nil { // cannot tell what it reads nor whether it is durable
			rs = append(rs, reader{name: ci.Name, filters: []string{">"}})
			continue
		}
		if ci.Config.Durable == "" {
			continue
		}
		r := reader{name: ci.Name, filters: ci.Config.FilterSubjects}
		if len(r.filters) == 0 && ci.Config.FilterSubject != "" {
			r.filters = []string{ci.Config.FilterSubject}
		}
		for _, f := range r.filters {
			if !server.IsValidSubject(f) {
				r.filters = nil // a filter we cannot read: it may match anything
				break
			}
		}
		if len(r.filters) == 0 {
			r.filters = []string{">"}
		}
		switch ci.Config.AckPolicy {
		case server.AckExplicit, server.AckAll, server.AckNone:
			// The ack floor is the last stream sequence below which every
			// message this consumer reads is acked (AckNone: delivered).
			r.floor = ci.AckFloor.Stream
		default:
			// An ack policy whose floor we do not know to mean "done":
			// it holds everything it reads.
			r.floor = 0
		}
		rs = append(rs, r)
	}
	return rs
}

// deliveredFloors is, for each stored subject that some durable consumer
// reads, the lowest ack floor over every durable consumer whose filters
// match it. Subjects no durable consumer reads are left out: the trimmer
// leaves them alone.
func deliveredFloors(subjects map[string]uint64, readers []reader) map[string]uint64 {
	floors := map[string]uint64{}
	for subj := range subjects {
		for _, r := range readers {
			if !reads(r, subj) {
				continue
			}
			if f, ok := floors[subj]; !ok || r.floor < f {
				floors[subj] = r.floor
			}
		}
	}
	return floors
}

// reads tells whether any of r's filters matches subj. SubjectsCollide
// (rather than a literal match) errs towards matching, should a stored
// subject ever not be literal.
func reads(r reader, subj string) bool {
	for _, f := range r.filters {
		if server.SubjectsCollide(f, subj) {
			return true
		}
	}
	return false
}

// apiTimeout bounds one JetStream API request of the trimmer's.
const apiTimeout = 5 * time.Second

// listConsumers is the info of every consumer on stream. It asks the
// JetStream API itself rather than through nats.go's lister, because in a
// cluster the answer names consumers whose info did not come back in time
// ("missing"), which that lister drops: a consumer left out would let the
// trimmer purge what it has not acked, so any missing one is an error.
func (q *Queue) listConsumers(ctx context.Context, stream string) ([]*server.ConsumerInfo, error) {
	var all []*server.ConsumerInfo
	for {
		req, err := json.Marshal(server.JSApiConsumersRequest{ApiPagedRequest: server.ApiPagedRequest{Offset: len(all)}})
		if err != nil {
			return nil, fmt.Errorf("consumer list: %w", err)
		}
		var resp server.JSApiConsumerListResponse
		if err := q.apiRequest(ctx, fmt.Sprintf(server.JSApiConsumerListT, stream), req, &resp); err != nil {
			return nil, fmt.Errorf("consumer list from %d: %w", len(all), err)
		}
		if resp.Error != nil {
			return nil, fmt.Errorf("consumer list from %d: %w", len(all), resp.Error)
		}
		if len(resp.Missing) > 0 {
			return nil, fmt.Errorf("consumer list: no info from %s: cannot tell what they have acked", strings.Join(resp.Missing, ", "))
		}
		all = append(all, resp.Consumers...)
		if len(resp.Consumers) == 0 || len(all) >= resp.Total {
			return all, nil
		}
	}
}

// apiRequest sends a JetStream API request and decodes its answer into
// resp, within apiTimeout unless ctx ends sooner.
func (q *Queue) apiRequest(ctx context.Context, subject string, req []byte, resp any) error {
	ctx, cancel := context.WithTimeout(ctx, apiTimeout)
	defer cancel()
	m, err := q.nc.RequestWithContext(ctx, subject, req)
	if err != nil {
		return fmt.Errorf("%s: %w", subject, err)
	}
	if err := json.Unmarshal(m.Data, resp); err != nil {
		return fmt.Errorf("%s: answer %.200q: %w", subject, m.Data, err)
	}
	return nil
}
