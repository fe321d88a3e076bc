package gcs

import (
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strconv"
	"time"
)

// notice is what one bucket notification says about one object.
type notice struct {
	EventType  string
	Bucket     string
	Name       string
	Generation int64
	Size       int64 // stored bytes; -1 when the payload did not say
	Resource   json.RawMessage
	created    time.Time
	md5        string // hex
}

// String names the object the way gsutil does.
func (n notice) String() string { return fmt.Sprintf("gs://%s/%s#%d", n.Bucket, n.Name, n.Generation) }

// objectResource is the part of GCS's object resource that sluice reads.
// size and generation arrive as strings.
type objectResource struct {
	Bucket      string `json:"bucket"`
	Name        string `json:"name"`
	Generation  string `json:"generation"`
	Size        string `json:"size"`
	TimeCreated string `json:"timeCreated"`
	MD5Hash     string `json:"md5Hash"`
}

// parseNotice reads a notification's attributes and payload. A payload of
// NONE (or an empty one) falls back to the attributes alone.
func parseNotice(attrs map[string]string, data []byte) (notice, error) {
	n := notice{EventType: attrs["eventType"], Bucket: attrs["bucketId"], Name: attrs["objectId"], Size: -1}
	if g := attrs["objectGeneration"]; g != "" {
		gen, err := strconv.ParseInt(g, 10, 64)
		if err != nil {
			return n, fmt.Errorf("attribute objectGeneration %q: %w", g, err)
		}
		n.Generation = gen
	}
	if attrs["payloadFormat"] != "NONE" && len(data) > 0 {
		var r objectResource
		if err := json.Unmarshal(data, &r); err != nil {
			return n, fmt.Errorf("payload is not a JSON object resource: %w", err)
		}
		n.Resource = data
		if n.Bucket == "" {
			n.Bucket = r.Bucket
		}
		if n.Name == "" {
			n.Name = r.Name
		}
		if n.Generation == 0 && r.Generation != "" {
			gen, err := strconv.ParseInt(r.Generation, 10, 64)
			if err != nil {
				return n, fmt.Errorf("payload generation %q: %w", r.Generation, err)
			}
			n.Generation = gen
		}
		if r.Size != "" {
			size, err := strconv.ParseInt(r.Size, 10, 64)
			if err != nil {
				return n, fmt.Errorf("payload size %q: %w", r.Size, err)
			}
			n.Size = size
		}
		if r.TimeCreated != "" {
			// Milli- or microseconds: RFC 3339 with any fraction.
			t, err := time.Parse(time.RFC3339Nano, r.TimeCreated)
			if err != nil {
				return n, fmt.Errorf("payload timeCreated %q: %w", r.TimeCreated, err)
			}
			n.created = t
		}
		if r.MD5Hash != "" {
			if b, err := base64.StdEncoding.DecodeString(r.MD5Hash); err == nil {
				n.md5 = hex.EncodeToString(b)
			}
		}
	}
	if n.Bucket == "" || n.Name == "" {
		return n, fmt.Errorf("notification names no object (attributes bucketId/objectId, payload bucket/name)")
	}
	return n, nil
}

// eventInput is the input of data.event.src for an object, exactly as
// Swarm builds it.
func (n notice) eventInput() []byte {
	type digest struct {
		Alg   string `json:"alg"`
		Value string `json:"value"`
	}
	in := struct {
		CS struct {
			Bucket string `json:"bucket"`
			Name   string `json:"name"`
		} `json:"cs"`
		Size      int64           `json:"size"`
		CreatedAt int64           `json:"created_at"`
		Digests   []digest        `json:"digests"`
		Data      json.RawMessage `json:"data"`
	}{Size: max(n.Size, 0), Digests: []digest{}, Data: n.Resource}
	in.CS.Bucket, in.CS.Name = n.Bucket, n.Name
	if !n.created.IsZero() {
		in.CreatedAt = n.created.Unix()
	}
	if n.md5 != "" {
		in.Digests = append(in.Digests, digest{Alg: "md5", Value: n.md5})
	}
	if in.Data == nil {
		in.Data = json.RawMessage(`{}`)
	}
	b, _ := json.Marshal(in)
	return b
}
