package plan

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// keyOrder puts a record's members in the order sortMembers does, whether
// its keys repeat the last record's (in order or not, with repeated keys,
// keys alike in their first eight bytes, and more than the 64 members
// insertion sort handles) or not.
func TestKeyOrderSortsAsSortMembers(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 5))
	pool := []string{"a", "b", "user", "user_type", "user_agent", "__tag__:__hostname__", "__tag__:__receive_time__", "__time__", "request_id", "request_params", ""}
	for i := range 80 {
		pool = append(pool, "field"+strconv.Itoa(i))
	}
	var order keyOrder
	var keys []string
	for n := range 3000 {
		switch r.IntN(5) {
		case 0, 1: // the last record's keys, in the same order
		case 2: // the same keys, another order
			r.Shuffle(len(keys), func(i, j int) { keys[i], keys[j] = keys[j], keys[i] })
		case 3: // one key another
			if len(keys) > 0 {
				keys[r.IntN(len(keys))] = pool[r.IntN(len(pool))]
			}
		default:
			keys = keys[:0]
			for range 1 + r.IntN(90) {
				keys = append(keys, pool[r.IntN(len(pool))])
			}
		}
		var b strings.Builder
		b.WriteByte('{')
		for i, k := range keys {
			if i > 0 {
				b.WriteByte(',')
			}
			fmt.Fprintf(&b, "%q:%d", k, i)
		}
		b.WriteByte('}')
		raw := []byte(b.String())
		want, ok, canonical := scanMembers(raw, nil, nil)
		got, gotOK, gotCanonical := scanMembers(raw, nil, &order)
		if !ok || ok != gotOK || canonical != gotCanonical || !slices.Equal(got, want) {
			t.Fatalf("record %d %s: members %v (ok %v, canonical %v), sortMembers gives %v (%v, %v)", n, raw, got, gotOK, gotCanonical, want, ok, canonical)
		}
	}
}
