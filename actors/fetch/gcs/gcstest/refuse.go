package gcstest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
)

// Refusal is an answer GCS gives every time for a bucket, as both of its
// APIs word it: the storage client reads objects over the XML API and
// their attributes over the JSON API.
type Refusal struct {
	Status     int    // HTTP status, e.g. 403
	XMLCode    string // <Code> of the XML API's error, e.g. AccessDenied
	JSONReason string // errors[0].reason of the JSON API's, e.g. forbidden
	Message    string
}

// Refusals GCS gives that retrying will not change.
var (
	// Forbidden: the service account lacks storage.objects.get on the bucket.
	Forbidden = Refusal{http.StatusForbidden, "AccessDenied", "forbidden",
		"sluice@sluice-dev.iam.gserviceaccount.com does not have storage.objects.get access to the Google Cloud Storage object. Permission 'storage.objects.get' denied on resource (or it may not exist)."}
	// RequesterPays: a requester-pays bucket read without a user project.
	RequesterPays = Refusal{http.StatusBadRequest, "UserProjectMissing", "required",
		"Bucket is a requester pays bucket but no user project provided."}
	// CustomerKey: an object encrypted with a customer-supplied key, read without it.
	CustomerKey = Refusal{http.StatusBadRequest, "ResourceIsEncryptedWithCustomerEncryptionKey", "resourceIsEncryptedWithCustomerEncryptionKey",
		"The target object is encrypted by a customer-supplied encryption key."}
)

// Refuse makes every read of bucket answer r, the way GCS does, in front
// of fake-gcs-server (which cannot play it); a zero Refusal lifts it.
// Uploads still pass, so objects can be stored and announced first.
func (s *Server) Refuse(bucket string, r Refusal) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.refused == nil {
		s.refused = map[string]Refusal{}
	}
	if r.Status == 0 {
		delete(s.refused, bucket)
		return
	}
	s.refused[bucket] = r
}

// refusal answers a read of a refused bucket; false when it is not one.
func (s *Server) refusal(w http.ResponseWriter, req *http.Request) bool {
	if req.Method != http.MethodGet || strings.HasPrefix(req.URL.Path, "/upload/") {
		return false
	}
	p := strings.TrimPrefix(req.URL.Path, "/")
	jsonAPI := strings.HasPrefix(p, "storage/v1/b/") || strings.HasPrefix(p, "download/storage/v1/b/")
	if jsonAPI {
		p = p[strings.Index(p, "/b/")+3:]
	}
	bucket, _, _ := strings.Cut(p, "/")
	s.mu.Lock()
	r, ok := s.refused[bucket]
	s.mu.Unlock()
	if !ok {
		return false
	}
	if jsonAPI {
		type item struct {
			Message string `json:"message"`
			Domain  string `json:"domain"`
			Reason  string `json:"reason"`
		}
		var body struct {
			Error struct {
				Code    int    `json:"code"`
				Message string `json:"message"`
				Errors  []item `json:"errors"`
			} `json:"error"`
		}
		body.Error.Code, body.Error.Message = r.Status, r.Message
		body.Error.Errors = []item{{Message: r.Message, Domain: "global", Reason: r.JSONReason}}
		w.Header().Set("Content-Type", "application/json; charset=UTF-8")
		w.WriteHeader(r.Status)
		_ = json.NewEncoder(w).Encode(body)
		return true
	}
	w.Header().Set("Content-Type", "application/xml; charset=UTF-8")
	w.WriteHeader(r.Status)
	_, _ = fmt.Fprintf(w, "<?xml version='1.0' encoding='UTF-8'?><Error><Code>%s</Code><Message>%s</Message></Error>", r.XMLCode, r.Message)
	return true
}
