package gcs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"

	"cloud.google.com/go/storage"
	"google.golang.org/api/googleapi"
	"google.golang.org/api/iterator"
)

// refusal says why GCS's answer to a read will be the same on every retry
// — a missing permission, a requester-pays bucket, an object under a
// customer-supplied key, a bucket that is gone — and what would fix it;
// false for what may clear by itself (5xx, 429, 408, 401, the network),
// which is nacked and read again. A refused notification goes to the DLQ
// and is re-driven once the cause is fixed: nacked, it would come back
// forever, each time holding an in-flight slot through its backoff.
func refusal(bucket string, err error) (string, bool) {
	if errors.Is(err, errNoBucket) {
		return fmt.Sprintf("GCS: bucket %s does not exist (404)", bucket), true
	}
	var e *googleapi.Error
	if !errors.As(err, &e) || e.Code < 400 || e.Code >= 500 ||
		e.Code == http.StatusUnauthorized || e.Code == http.StatusRequestTimeout || e.Code == http.StatusTooManyRequests {
		// 401 is the credentials of the whole source, not this object's:
		// nacked, with the source unhealthy, rather than every object
		// dead-lettered.
		return "", false
	}
	reason := apiReason(e)
	var hint string
	switch {
	case e.Code == http.StatusForbidden:
		hint = "grant the source's service account roles/storage.objectViewer on bucket " + bucket
	case reason == "UserProjectMissing" || reason == "required" && bytes.Contains([]byte(e.Message), []byte("requester pays")):
		hint = "bucket " + bucket + " is requester-pays, and sluice names no user project to bill"
	case reason == "ResourceIsEncryptedWithCustomerEncryptionKey" || reason == "resourceIsEncryptedWithCustomerEncryptionKey":
		hint = "the object is encrypted with a customer-supplied key, which sluice does not hold"
	default:
		hint = "GCS refuses it the same way on every retry"
	}
	return fmt.Sprintf("GCS answered %d %s: %s; not retried: re-drive once fixed", e.Code, reason, hint), true
}

// apiReason is the reason GCS gave: errors[0].reason of the JSON API, or
// the <Code> of the XML API's body (the storage client reads objects over
// XML and keeps that body as it came).
func apiReason(e *googleapi.Error) string {
	if len(e.Errors) > 0 && e.Errors[0].Reason != "" {
		return e.Errors[0].Reason
	}
	b := []byte(e.Body)
	if i := bytes.Index(b, []byte("<Code>")); i >= 0 {
		b = b[i+len("<Code>"):]
		if j := bytes.Index(b, []byte("</Code>")); j >= 0 && j < 128 {
			return string(b[:j])
		}
	}
	return http.StatusText(e.Code)
}

// errNoBucket: the notification's bucket does not exist.
var errNoBucket = errors.New("bucket does not exist")

// missing tells an object that is gone (errDeleted: acked) from a bucket
// that is gone (errNoBucket: to the DLQ). The storage client says "object
// doesn't exist" for both; listing the object's name (objects.list is in
// roles/storage.objectViewer) says which.
func (r *reader) missing(ctx context.Context, n notice) error {
	it := r.gcs.Bucket(n.Bucket).Objects(ctx, &storage.Query{Prefix: n.Name})
	it.PageInfo().MaxSize = 1
	_, err := it.Next()
	var e *googleapi.Error
	if errors.Is(err, storage.ErrBucketNotExist) || errors.As(err, &e) && e.Code == http.StatusNotFound {
		return errNoBucket
	}
	if err != nil && !errors.Is(err, iterator.Done) {
		r.f.log.Debug("could not tell a deleted object from a deleted bucket", "object", n.String(), "err", err)
	}
	return errDeleted
}
