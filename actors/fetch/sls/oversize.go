package sls

import (
	"fmt"

	"github.com/sluicehq/sluice/queue"
	"github.com/sluicehq/sluice/queue/batch"
)

// A JetStream message holds at most the queue's MaxPayload bytes, headers
// included (the client refuses more, the server and the stream's
// MaxMsgSize too). A log is at most a few MB in SLS, but its record can be
// much larger: JSON writes a control character as 6 bytes, and every record
// repeats its log group's tags. Such a record fails to publish on every
// retry, which would stall its shard for good, so it is found before
// publishing, by size, and dead-lettered.

func uvarintLen(x int) int {
	n := 1
	for ; x >= 0x80; x >>= 7 {
		n++
	}
	return n
}

// recordCost is a record's bytes in a batch body: its length and itself.
func recordCost(rec []byte) int { return uvarintLen(len(rec)) + len(rec) }

// recordRoom is how many bytes of records (recordCost) a RAW message of a
// log group with Meta m and ID id can carry within maxPayload: less its
// headers as batch writes them, with the longest part suffix and count (10
// digits each) a part adds, and the body's version and count. It depends
// on the log group alone, so parts are cut the same way on every read.
// maxPayload 0 (no queue) means no bound.
func recordRoom(maxPayload int, m batch.Meta, id string) int {
	if maxPayload <= 0 {
		return int(^uint(0) >> 1)
	}
	m.Count = 9_999_999_999
	widest := batch.Batch{ID: id + ".9999999999", Meta: m}
	return maxPayload - widest.HeaderSize() - 1 - 10
}

// deadPrefix bounds what the DLQ keeps of a record too large for RAW: its
// start, to see what it is (it cannot be re-driven whole anyway). The DLQ's
// share of a small buffer (10 % of 48 MiB) can be smaller than a message.
const deadPrefix = 64 << 10

// deadRecord is rec, which no RAW message can carry, for the DLQ. The DLQ
// has the same largest message, so it holds the record's start (at most
// deadPrefix), and the reason says where in SLS the whole record is.
func (f *Fetcher) deadRecord(m batch.Meta, recordID string, rec []byte, room, shard int, at place, group int) queue.DeadRecord {
	where := fmt.Sprintf("SLS shard %d, log group %s", shard, at.key(group))
	if c := at.cursor(group); c != "" {
		where += " (cursor " + c + ")"
	}
	reason := fmt.Sprintf("record of %d bytes does not fit in one buffer message: the queue's max message size is %d bytes, of which this log group's headers leave %d for records; the DLQ keeps its first %%d bytes; the whole record is at %s",
		len(rec), f.maxPayload, room, where)
	dead := queue.DeadRecord{Stage: queue.StageFetch, Name: f.cfg.Name, RecordID: recordID, Origin: queue.RawSubject(f.cfg.Name), Meta: m,
		Reason: fmt.Sprintf(reason, 9_999_999_999)} // the widest the kept size can be, for the header's size
	keep := min(len(rec), deadPrefix, f.maxPayload-queue.DeadLetterHeaderSize(dead)-1-1-10-1024) // 1 KiB to spare
	keep = max(keep, 0)
	dead.Reason = fmt.Sprintf(reason, keep)
	dead.Data = append([]byte(nil), rec[:keep]...) // rec is in messages' arena
	return dead
}
