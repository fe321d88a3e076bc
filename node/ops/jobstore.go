package ops

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Jobs run in the node's process and end with it. So that a restart does
// not erase them without a trace, each job's state is saved (at its start,
// every jobSaveEvery while it runs, and at its end) in a small key-value
// bucket, replicated like the streams, as the trim marks are. A node that
// starts finds its own jobs of its last life there: one still saved as
// running was cut off by a crash or a kill, and shows as lost with what it
// had sent by its last save.
const (
	jobBucket    = "sluice_jobs"
	jobKeep      = 7 * 24 * time.Hour
	jobSaveEvery = 2 * time.Second
	jobSaveWait  = 5 * time.Second
)

// JobLost is a job the node's stop or crash cut off; Error says what it
// had sent. Run it again if the rest is wanted.
const JobLost = "lost"

// savedJob is a job as the bucket keeps it.
type savedJob struct {
	Node string `json:"node"`
	JobStatus
}

func (m *Manager) jobStore(ctx context.Context) (jetstream.KeyValue, error) {
	m.mu.Lock()
	kv := m.jobKV
	m.mu.Unlock()
	if kv != nil {
		return kv, nil
	}
	kv, err := m.deps.Queue.JetStream().CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket: jobBucket, Description: "sluice: the state of replay, re-drive and move jobs, per node, so that a restart leaves a trace",
		History: 1, TTL: jobKeep, Storage: jetstream.FileStorage, Replicas: m.deps.Queue.Options().Replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("job store %s: %w", jobBucket, err)
	}
	m.mu.Lock()
	m.jobKV = kv
	m.mu.Unlock()
	return kv, nil
}

// saveJob writes j's state; a failure is logged, never fatal to the job.
func (m *Manager) saveJob(st JobStatus) {
	if m.deps.Queue == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), jobSaveWait)
	defer cancel()
	err := func() error {
		kv, err := m.jobStore(ctx)
		if err != nil {
			return err
		}
		value, err := json.Marshal(savedJob{Node: m.deps.Node, JobStatus: st})
		if err != nil {
			return err
		}
		_, err = kv.Put(ctx, st.ID, value)
		return err
	}()
	if err != nil {
		m.deps.Logger.Warn("saving a job's state failed: a restart now may leave no trace of it", "job", st.ID, "state", st.State, "err", err)
	}
}

// keepSaving saves j every jobSaveEvery until done is closed.
func (m *Manager) keepSaving(j *Job, done <-chan struct{}) {
	t := time.NewTicker(jobSaveEvery)
	defer t.Stop()
	for {
		select {
		case <-done:
			return
		case <-t.C:
			m.saveJob(j.Status())
		}
	}
}

// loadPastJobs reads this node's jobs of its earlier lives. One saved as
// running was cut off without a chance to say so: it is saved again as
// lost.
func (m *Manager) loadPastJobs() ([]JobStatus, error) {
	ctx, cancel := context.WithTimeout(m.ctx, jobSaveWait)
	defer cancel()
	kv, err := m.deps.Queue.JetStream().KeyValue(ctx, jobBucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("job store %s: %w", jobBucket, err)
	}
	keys, err := kv.ListKeys(ctx)
	if err != nil {
		return nil, fmt.Errorf("job store %s: %w", jobBucket, err)
	}
	var out []JobStatus
	for key := range keys.Keys() {
		e, err := kv.Get(ctx, key)
		if err != nil {
			continue // expired or deleted meanwhile
		}
		var s savedJob
		if err := json.Unmarshal(e.Value(), &s); err != nil || s.Node != m.deps.Node {
			continue
		}
		if s.State == JobRunning {
			s.State = JobLost
			s.Error = fmt.Sprintf("the node stopped (a crash or a kill) while the job ran: it had sent %d of %d records by its last save (up to %s before it stopped); run it again for the rest",
				s.Done.Records, s.Total.Records, jobSaveEvery)
			m.saveJob(s.JobStatus)
		}
		out = append(out, s.JobStatus)
	}
	return out, nil
}
