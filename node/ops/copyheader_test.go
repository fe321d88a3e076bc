package ops

import (
	"testing"

	"github.com/nats-io/nats.go"

	"github.com/sluicehq/sluice/queue"
	"github.com/sluicehq/sluice/queue/batch"
)

func TestCopyHeaderLeavesTheStoredOneAlone(t *testing.T) {
	orig := nats.Header{}
	orig.Set(batch.HeaderMsgID, "b-1/splunk")
	orig.Set(batch.HeaderCount, "3")
	s := queue.Stored{Seq: 7, Header: orig}
	h := copyHeader(s, queue.StreamOut, "move/splunk")
	h.Set(batch.HeaderSink, "splunk")
	if got := h.Get(batch.HeaderMsgID); got != "move/splunk/b-1/splunk" {
		t.Errorf("copy's message ID %q", got)
	}
	if h.Get(batch.HeaderCount) != "3" {
		t.Errorf("copy lost the record count: %v", h)
	}
	if orig.Get(batch.HeaderMsgID) != "b-1/splunk" || orig.Get(batch.HeaderSink) != "" || len(orig) != 2 {
		t.Errorf("the stored header changed: %v", orig)
	}
	// A batch stored without a message ID (or any header) is named by
	// its stream and sequence.
	h = copyHeader(queue.Stored{Seq: 7}, queue.StreamRaw, "replay/j1")
	if got := h.Get(batch.HeaderMsgID); got != "replay/j1/"+queue.StreamRaw+"-7" {
		t.Errorf("message ID of a copy of a batch without one: %q", got)
	}
}
