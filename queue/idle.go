package queue

import (
	"context"
)

// Idle reports whether every durable consumer of RAW and OUT has nothing
// left: no message waiting and none delivered but unacked. With the sources
// done, an idle queue means the pipeline has drained.
func (q *Queue) Idle(ctx context.Context) (bool, error) {
	for _, name := range []string{StreamRaw, StreamOut} {
		s, err := q.js.Stream(ctx, name)
		if err != nil {
			return false, err
		}
		lister := s.ListConsumers(ctx)
		for ci := range lister.Info() {
			if ci.Config.Durable == "" {
				continue
			}
			if ci.NumPending > 0 || ci.NumAckPending > 0 {
				return false, nil
			}
		}
		if err := lister.Err(); err != nil {
			return false, err
		}
	}
	return true, nil
}
