package slstest

import (
	"crypto/hmac"
	"crypto/md5"
	"crypto/sha1"
	"encoding/base64"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"strings"

	"github.com/pierrec/lz4/v4"
)

// slsError is SLS's error body.
type slsError struct {
	status  int
	Code    string `json:"errorCode"`
	Message string `json:"errorMessage"`
}

func errorf(status int, code, format string, args ...any) *slsError {
	return &slsError{status: status, Code: code, Message: fmt.Sprintf(format, args...)}
}

// checkSignature verifies signature v1: "LOG <ak>:base64(HMAC-SHA1(secret,
// METHOD\nMD5\nContent-Type\nDate\n<x-log-/x-acs- headers>\n<path>?<query>))".
func checkSignature(r *http.Request, body []byte, akID, akSecret string) *slsError {
	auth := r.Header.Get("Authorization")
	id, sig, ok := strings.Cut(strings.TrimPrefix(auth, "LOG "), ":")
	if !strings.HasPrefix(auth, "LOG ") || !ok {
		return errorf(401, "Unauthorized", "no valid Authorization header")
	}
	if id != akID {
		return errorf(401, "Unauthorized", "AccessKeyId is not found: %s", id)
	}
	md5hex := r.Header.Get("Content-MD5")
	if len(body) > 0 && md5hex != fmt.Sprintf("%X", md5.Sum(body)) {
		return errorf(400, "InvalidContentMD5", "Content-MD5 does not match the body")
	}
	var keys []string
	headers := map[string]string{}
	for k, v := range r.Header {
		l := strings.ToLower(k)
		if strings.HasPrefix(l, "x-log-") || strings.HasPrefix(l, "x-acs-") {
			headers[l] = strings.TrimSpace(v[0])
			keys = append(keys, l)
		}
	}
	sort.Strings(keys)
	lines := make([]string, len(keys))
	for i, k := range keys {
		lines[i] = k + ":" + headers[k]
	}
	resource := r.URL.EscapedPath()
	if q := r.URL.Query(); len(q) > 0 {
		qk := make([]string, 0, len(q))
		for k := range q {
			qk = append(qk, k)
		}
		sort.Strings(qk)
		parts := make([]string, len(qk))
		for i, k := range qk {
			parts[i] = k + "=" + strings.Join(q[k], "")
		}
		resource += "?" + strings.Join(parts, "&")
	}
	signed := r.Method + "\n" + md5hex + "\n" + r.Header.Get("Content-Type") + "\n" + r.Header.Get("Date") + "\n" + strings.Join(lines, "\n") + "\n" + resource
	mac := hmac.New(sha1.New, []byte(akSecret))
	mac.Write([]byte(signed))
	if !hmac.Equal([]byte(sig), []byte(base64.StdEncoding.EncodeToString(mac.Sum(nil)))) {
		return errorf(401, "SignatureNotMatch", "signature %s not match", sig)
	}
	return nil
}

// Cursors are base64 of a decimal position: the index of a log group in
// its shard.
func encodeCursor(pos int64) string {
	return base64.StdEncoding.EncodeToString([]byte(strconv.FormatInt(pos, 10)))
}

func decodeCursor(c string) (int64, error) {
	b, err := base64.StdEncoding.DecodeString(c)
	if err != nil {
		return 0, err
	}
	return strconv.ParseInt(string(b), 10, 64)
}

// compressLZ4 makes an lz4 block; data lz4 cannot shrink still needs a
// valid block, made of one literal run.
func compressLZ4(src []byte) []byte {
	dst := make([]byte, lz4.CompressBlockBound(len(src)))
	n, err := lz4.CompressBlock(src, dst, nil)
	if err == nil && n > 0 {
		return dst[:n]
	}
	return literalBlock(src)
}

// literalBlock is an lz4 block holding src as a single literal sequence.
func literalBlock(src []byte) []byte {
	out := make([]byte, 0, len(src)+len(src)/255+2)
	n := len(src)
	if n < 15 {
		out = append(out, byte(n<<4))
	} else {
		out = append(out, 0xF0)
		for n -= 15; n >= 255; n -= 255 {
			out = append(out, 255)
		}
		out = append(out, byte(n))
	}
	return append(out, src...)
}

func decompressLZ4(src []byte, rawSize int) ([]byte, error) {
	out := make([]byte, rawSize)
	n, err := lz4.UncompressBlock(src, out)
	if err != nil {
		return nil, err
	}
	if n != rawSize {
		return nil, fmt.Errorf("lz4: got %d bytes, x-log-bodyrawsize says %d", n, rawSize)
	}
	return out, nil
}
