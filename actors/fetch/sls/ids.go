package sls

import (
	"encoding/base64"
	"reflect"
	"strconv"

	sdk "github.com/aliyun/aliyun-log-go-sdk"
)

// place is where a pull's log groups sit in their shard, which names
// them: a RAW batch ID is sls/<source>/<project>/<logstore>/<shard>/<key>.
//
// SLS numbers a shard's log groups consecutively; a cursor is base64 of
// a decimal position, and a pull answers with X-Log-Read-Last-Cursor, the
// position (in decimal) of the last log group it read. The SDK numbers a
// pull's groups back from it (model.go addCursorIfPossible), as place
// does: log group i of n is at last-n+1+i. A group's key is then its
// position alone, whatever pulls it was read in, so a re-read from an
// older checkpoint, cut into other pulls, gives the same IDs.
//
// With a query (SPL), SLS filters server-side and may leave log groups
// out of a pull, so positions cannot be told (the SDK does not number
// them either): the key is then the pull's start position and the group's
// index in the pull, <start>+<index>. Such IDs repeat when a pull is
// repeated from the same cursor (a crash before the checkpoint), but a
// re-read cut into other pulls stores those groups again.
type place struct {
	first    int64  // position of the pull's first log group, when numbered
	numbered bool   // whether first is known
	start    string // the pull's start cursor, decoded when it decodes
}

// placeOf places a pull of n log groups read from cursor. readLast is the
// answer's X-Log-Read-Last-Cursor ("" when absent): the start cursor says
// the same when it is a position, and is used when readLast is missing.
func placeOf(cursor, query, readLast string, n int) place {
	p := place{start: cursor}
	pos, err := decodeCursor(cursor)
	if err == nil {
		p.start = strconv.FormatInt(pos, 10)
	}
	if query != "" {
		return p
	}
	if last, lerr := strconv.ParseInt(readLast, 10, 64); lerr == nil && n > 0 {
		p.first, p.numbered = last-int64(n)+1, true
	} else if err == nil {
		p.first, p.numbered = pos, true
	}
	return p
}

// placeOfSDKList places a list the SDK decoded itself (decodePulls could
// not hook the client): the SDK has numbered its groups when it could.
func placeOfSDKList(cursor, query string, groups []*sdk.LogGroup) place {
	p := placeOf(cursor, query, "", len(groups))
	if query == "" && len(groups) > 0 {
		if pos, err := decodeCursor(groups[0].GetCursor()); err == nil {
			p.first, p.numbered = pos, true
		}
	}
	return p
}

// key names log group i of the pull.
func (p place) key(i int) string {
	if p.numbered {
		return strconv.FormatInt(p.first+int64(i), 10)
	}
	return p.start + "+" + strconv.Itoa(i)
}

// cursor is log group i's own cursor, when its position is known.
func (p place) cursor(i int) string {
	if !p.numbered {
		return ""
	}
	return base64.StdEncoding.EncodeToString([]byte(strconv.FormatInt(p.first+int64(i), 10)))
}

func decodeCursor(c string) (int64, error) {
	b, err := base64.StdEncoding.DecodeString(c)
	if err != nil {
		return 0, err
	}
	return strconv.ParseInt(string(b), 10, 64)
}

// readLastCursor is the X-Log-Read-Last-Cursor the SDK kept in an
// unexported field of PullLogMeta (v0.1.131), "" if the layout changed.
// reflect reads an unexported string field (it only may not set it).
func readLastCursor(meta *sdk.PullLogMeta) string {
	if meta == nil {
		return ""
	}
	f := reflect.ValueOf(meta).Elem().FieldByName("readLastCursor")
	if !f.IsValid() || f.Kind() != reflect.String {
		return ""
	}
	return f.String()
}
