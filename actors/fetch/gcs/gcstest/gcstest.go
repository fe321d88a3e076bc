// Package gcstest stands in for Google Cloud Storage and the Pub/Sub
// notifications of a bucket, so that the real storage and pubsub clients
// cannot tell them from Google: Pub/Sub is the official fake (pstest)
// served on TCP, GCS is fake-gcs-server, and every finished upload is
// announced in the format real GCS uses (JSON_API_V1), which differs from
// fake-gcs-server's own notifications.
package gcstest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"cloud.google.com/go/pubsub/v2/pstest"
	"cloud.google.com/go/storage"
	"github.com/fsouza/fake-gcs-server/fakestorage"
	"google.golang.org/api/option"
)

// Options names what the stand-in creates at start.
type Options struct {
	Project      string // default "sluice-dev"
	Bucket       string // default "audit-logs"
	Topic        string // default "gcs-notifications"
	Subscription string // default "sluice": a pull subscription on Topic, ack deadline 10s
	Listen       string // GCS HTTP address, default "127.0.0.1:0"
	PubSubListen string // Pub/Sub gRPC address, default "127.0.0.1:0"
}

func (o *Options) setDefaults() {
	def := func(s *string, v string) {
		if *s == "" {
			*s = v
		}
	}
	def(&o.Project, "sluice-dev")
	def(&o.Bucket, "audit-logs")
	def(&o.Topic, "gcs-notifications")
	def(&o.Subscription, "sluice")
	def(&o.Listen, "127.0.0.1:0")
	def(&o.PubSubListen, "127.0.0.1:0")
}

// Server is the running stand-in.
type Server struct {
	opts      Options
	ps        *pstest.Server
	gcs       *fakestorage.Server
	http      *http.Server
	host      string
	client    *storage.Client
	published atomic.Int64
	readDelay atomic.Int64 // nanoseconds before each media download answers
	mu        sync.Mutex   // orders notifications after their upload; guards refused
	refused   map[string]Refusal
}

// Start runs both stand-ins and creates the bucket, topic and subscription.
func Start(opts Options) (*Server, error) {
	opts.setDefaults()
	s := &Server{opts: opts}
	s.ps = pstest.NewServerWithAddress(opts.PubSubListen)
	ctx := context.Background()
	topic := "projects/" + opts.Project + "/topics/" + opts.Topic
	if _, err := s.ps.GServer.CreateTopic(ctx, &pubsubpb.Topic{Name: topic}); err != nil {
		s.ps.Close()
		return nil, fmt.Errorf("gcstest: create topic: %w", err)
	}
	if _, err := s.ps.GServer.CreateSubscription(ctx, &pubsubpb.Subscription{
		Name: "projects/" + opts.Project + "/subscriptions/" + opts.Subscription, Topic: topic, AckDeadlineSeconds: 10,
	}); err != nil {
		s.ps.Close()
		return nil, fmt.Errorf("gcstest: create subscription: %w", err)
	}

	ln, err := net.Listen("tcp", opts.Listen)
	if err != nil {
		s.ps.Close()
		return nil, fmt.Errorf("gcstest: listen: %w", err)
	}
	s.host = ln.Addr().String()
	// PublicHost must be the address clients use, or the storage client's
	// (XML API) reads fail with "object doesn't exist".
	s.gcs, err = fakestorage.NewServerWithOptions(fakestorage.Options{NoListener: true, Scheme: "http", PublicHost: s.host, Writer: io.Discard})
	if err != nil {
		ln.Close()
		s.ps.Close()
		return nil, fmt.Errorf("gcstest: fake-gcs-server: %w", err)
	}
	s.gcs.CreateBucketWithOpts(fakestorage.CreateBucketOpts{Name: opts.Bucket, VersioningEnabled: true})
	s.http = &http.Server{Handler: s.wrap(s.gcs.HTTPHandler()), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = s.http.Serve(ln) }()

	s.client, err = storage.NewClient(ctx, option.WithEndpoint("http://"+s.host+"/storage/v1/"), option.WithoutAuthentication())
	if err != nil {
		s.Close()
		return nil, fmt.Errorf("gcstest: storage client: %w", err)
	}
	return s, nil
}

// StorageHost is the value for STORAGE_EMULATOR_HOST.
func (s *Server) StorageHost() string { return s.host }

// PubSubHost is the value for PUBSUB_EMULATOR_HOST.
func (s *Server) PubSubHost() string { return s.ps.Addr }

// Options are the options in effect.
func (s *Server) Options() Options { return s.opts }

// Published counts the notifications published.
func (s *Server) Published() int { return int(s.published.Load()) }

// SetReadDelay makes each object download wait d before answering, to
// play a slow object.
func (s *Server) SetReadDelay(d time.Duration) { s.readDelay.Store(int64(d)) }

// Close stops both stand-ins.
func (s *Server) Close() {
	if s.client != nil {
		_ = s.client.Close()
	}
	_ = s.http.Close()
	s.gcs.Stop()
	_ = s.ps.Close()
}

// wrap serves GCS and announces each finished upload, as a bucket
// notification would, once the upload's answer is known.
func (s *Server) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if d := time.Duration(s.readDelay.Load()); d > 0 && r.Method == http.MethodGet && isDownload(r) {
			time.Sleep(d)
		}
		if s.refusal(w, r) {
			return
		}
		if !strings.HasPrefix(r.URL.Path, "/upload/") || r.Method == http.MethodGet {
			h.ServeHTTP(w, r)
			return
		}
		rec := &recorder{ResponseWriter: w, status: http.StatusOK}
		s.mu.Lock()
		defer s.mu.Unlock()
		h.ServeHTTP(rec, r)
		if rec.status/100 != 2 {
			return
		}
		var obj struct {
			Bucket     string `json:"bucket"`
			Name       string `json:"name"`
			Generation string `json:"generation"`
		}
		if json.Unmarshal(rec.body.Bytes(), &obj) != nil || obj.Name == "" {
			return // a resumable upload's first step: nothing finished yet
		}
		gen, _ := strconv.ParseInt(obj.Generation, 10, 64)
		_ = s.notify(obj.Bucket, obj.Name, gen, "OBJECT_FINALIZE", true)
	})
}

// isDownload is a media read: the XML API path /<bucket>/<object> or the
// JSON API with alt=media.
func isDownload(r *http.Request) bool {
	if r.URL.Query().Get("alt") == "media" {
		return true
	}
	return !strings.HasPrefix(r.URL.Path, "/storage/") && !strings.HasPrefix(r.URL.Path, "/upload/") && strings.Count(r.URL.Path, "/") >= 2
}

type recorder struct {
	http.ResponseWriter
	status int
	body   bytes.Buffer
}

func (r *recorder) WriteHeader(code int) { r.status = code; r.ResponseWriter.WriteHeader(code) }
func (r *recorder) Write(p []byte) (int, error) {
	r.body.Write(p)
	return r.ResponseWriter.Write(p)
}

// Upload writes an object through the real storage client, so it takes the
// path a user's upload takes and is announced. contentEncoding "gzip"
// stores it with Content-Encoding: gzip (data is stored as given).
func (s *Server) Upload(ctx context.Context, name string, data []byte, contentEncoding string) (int64, error) {
	return s.UploadTo(ctx, s.opts.Bucket, name, data, contentEncoding)
}

// UploadTo is Upload into another bucket (see CreateBucket); its
// notification goes to the same topic, as when several buckets' notifications
// share one.
func (s *Server) UploadTo(ctx context.Context, bucket, name string, data []byte, contentEncoding string) (int64, error) {
	w := s.client.Bucket(bucket).Object(name).NewWriter(ctx)
	w.ContentEncoding = contentEncoding
	w.ContentType = "application/octet-stream"
	if _, err := w.Write(data); err != nil {
		_ = w.Close()
		return 0, fmt.Errorf("gcstest: upload %s: %w", name, err)
	}
	if err := w.Close(); err != nil {
		return 0, fmt.Errorf("gcstest: upload %s: %w", name, err)
	}
	return w.Attrs().Generation, nil
}

// CreateBucket creates another (versioned) bucket.
func (s *Server) CreateBucket(name string) {
	s.gcs.CreateBucketWithOpts(fakestorage.CreateBucketOpts{Name: name, VersioningEnabled: true})
}

// AddSubscription creates another pull subscription (ack deadline 10s) on
// the notification topic, as a second source on the same bucket has.
func (s *Server) AddSubscription(ctx context.Context, name string) error {
	_, err := s.ps.GServer.CreateSubscription(ctx, &pubsubpb.Subscription{
		Name:  "projects/" + s.opts.Project + "/subscriptions/" + name,
		Topic: "projects/" + s.opts.Project + "/topics/" + s.opts.Topic, AckDeadlineSeconds: 10,
	})
	if err != nil {
		return fmt.Errorf("gcstest: create subscription %s: %w", name, err)
	}
	return nil
}

// Delete removes an object without announcing it.
func (s *Server) Delete(ctx context.Context, name string) error {
	return s.client.Bucket(s.opts.Bucket).Object(name).Delete(ctx)
}

// Notify publishes a notification of eventType for an object of the
// stand-in's bucket: again for one already announced, or for one that no
// longer exists (its payload then holds only what is given).
func (s *Server) Notify(_ context.Context, name string, generation int64, eventType string) error {
	return s.notify(s.opts.Bucket, name, generation, eventType, true)
}

// NotifyIn is Notify for an object of any bucket, one that does not exist
// included.
func (s *Server) NotifyIn(_ context.Context, bucket, name string, generation int64, eventType string) error {
	return s.notify(bucket, name, generation, eventType, true)
}

// NotifyNone publishes an OBJECT_FINALIZE of payload format NONE: the
// attributes alone name the object.
func (s *Server) NotifyNone(_ context.Context, name string) error {
	obj, err := s.gcs.GetObject(s.opts.Bucket, name)
	if err != nil {
		return fmt.Errorf("gcstest: %s: %w", name, err)
	}
	return s.notify(s.opts.Bucket, name, obj.Generation, "OBJECT_FINALIZE", false)
}

func (s *Server) notify(bucket, name string, generation int64, eventType string, payload bool) error {
	attrs := map[string]string{
		"bucketId":           bucket,
		"objectId":           name,
		"objectGeneration":   strconv.FormatInt(generation, 10),
		"eventType":          eventType,
		"eventTime":          time.Now().UTC().Format("2006-01-02T15:04:05.000000Z"),
		"payloadFormat":      "NONE",
		"notificationConfig": "projects/_/buckets/" + bucket + "/notificationConfigs/1",
	}
	var data []byte
	if payload {
		attrs["payloadFormat"] = "JSON_API_V1"
		res, err := s.resource(bucket, name, generation)
		if err != nil {
			return err
		}
		data = res
	}
	s.ps.Publish("projects/"+s.opts.Project+"/topics/"+s.opts.Topic, data, attrs)
	s.published.Add(1)
	return nil
}

// resource is the object resource as GCS's JSON API gives it: size and
// generation as strings, times with milliseconds.
func (s *Server) resource(bucket, name string, generation int64) ([]byte, error) {
	res := map[string]any{
		"kind": "storage#object", "name": name, "bucket": bucket,
		"id":             fmt.Sprintf("%s/%s/%d", bucket, name, generation),
		"generation":     strconv.FormatInt(generation, 10),
		"metageneration": "1",
		"storageClass":   "STANDARD",
	}
	obj, err := s.gcs.GetObjectWithGeneration(bucket, name, generation)
	if err == nil {
		const ms = "2006-01-02T15:04:05.000Z07:00"
		res["selfLink"] = fmt.Sprintf("https://www.googleapis.com/storage/v1/b/%s/o/%s", bucket, urlPath(name))
		res["mediaLink"] = fmt.Sprintf("https://storage.googleapis.com/download/storage/v1/b/%s/o/%s?generation=%d&alt=media", bucket, urlPath(name), generation)
		res["contentType"] = obj.ContentType
		if obj.ContentEncoding != "" {
			res["contentEncoding"] = obj.ContentEncoding
		}
		res["size"] = strconv.FormatInt(int64(len(obj.Content)), 10)
		res["md5Hash"] = obj.Md5Hash
		res["crc32c"] = obj.Crc32c
		res["etag"] = obj.Etag
		res["timeCreated"] = obj.Created.UTC().Format(ms)
		res["updated"] = obj.Updated.UTC().Format(ms)
	}
	// A deleted object: the payload holds only what was given.
	return json.Marshal(res)
}

func urlPath(name string) string { return strings.ReplaceAll(name, "/", "%2F") }
