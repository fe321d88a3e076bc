package node

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// LockFileName is the file in a data dir whose flock says which process
// owns the data dir.
const LockFileName = "sluice.lock"

// ErrDataDirInUse means another process holds a data dir's lock
// (errors.Is matches a *DataDirInUseError).
var ErrDataDirInUse = errors.New("data dir in use")

// DataDirInUseError names the data dir and the process that holds it.
type DataDirInUseError struct {
	Dir    string
	Holder string // "sluice pid 1234 (node node-1, started …)"
}

func (e *DataDirInUseError) Error() string {
	return fmt.Sprintf("data_dir %s is in use by %s; one process per data dir", e.Dir, e.Holder)
}

func (e *DataDirInUseError) Is(target error) bool { return target == ErrDataDirInUse }

// DataDirLock is a process's exclusive hold on a data dir: an flock on
// <data_dir>/sluice.lock, which also records the holder. Two JetStream
// servers on one store corrupt it (each caches and rewrites the same
// message blocks), so a node refuses to start while another holds it. The
// kernel drops the lock when its holder exits, however it exits, so a lock
// file left by a dead process never blocks; only its (stale) text remains.
type DataDirLock struct {
	f    *os.File
	path string
}

// lockHolder is what the lock file says about its holder.
type lockHolder struct {
	PID     int       `json:"pid"`
	Node    string    `json:"node"`
	Started time.Time `json:"started"`
}

// LockDataDir takes the data dir's lock for node nodeName, creating the
// directory if needed. While another process holds it, the error (which
// matches ErrDataDirInUse) names that process. flock locks belong to an
// open file, so a second LockDataDir in the same process is refused too
// until the first is released.
func LockDataDir(dir, nodeName string) (*DataDirLock, error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("data_dir %s: %w", dir, err)
	}
	path := filepath.Join(dir, LockFileName)
	// Not O_TRUNC: until the lock is ours, the text is the holder's.
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o640)
	if err != nil {
		return nil, fmt.Errorf("data_dir %s: lock file: %w", dir, err)
	}
	if err := flock(f); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, &DataDirInUseError{Dir: dir, Holder: describeHolder(path)}
		}
		return nil, fmt.Errorf("data_dir %s: lock %s: %w", dir, path, err)
	}
	b, _ := json.Marshal(lockHolder{PID: os.Getpid(), Node: nodeName, Started: time.Now().UTC().Truncate(time.Second)})
	// A failed write leaves the lock held without its text: a refused
	// process then says less about the holder, nothing worse.
	if f.Truncate(0) == nil {
		_, _ = f.WriteAt(append(b, '\n'), 0)
	}
	return &DataDirLock{f: f, path: path}, nil
}

func flock(f *os.File) error {
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if !errors.Is(err, syscall.EINTR) {
			return err
		}
	}
}

// describeHolder reads the holder's record from the lock file.
func describeHolder(path string) string {
	b, err := os.ReadFile(path)
	var h lockHolder
	if err != nil || json.Unmarshal(b, &h) != nil || h.PID == 0 {
		// It took the lock a moment ago and has not written it yet.
		return "another sluice process (" + path + " is locked)"
	}
	return fmt.Sprintf("sluice pid %d (node %s, started %s)", h.PID, h.Node, h.Started.Format(time.RFC3339))
}

// Path is the lock file.
func (l *DataDirLock) Path() string { return l.path }

// Release empties the lock file and lets go of the lock. The file stays:
// removing it would let a process that opened it a moment ago lock a file
// no one else can see.
func (l *DataDirLock) Release() error {
	if l == nil || l.f == nil {
		return nil
	}
	_ = l.f.Truncate(0)
	err := l.f.Close() // closing the last descriptor releases the flock
	l.f = nil
	if err != nil {
		return fmt.Errorf("release %s: %w", l.path, err)
	}
	return nil
}
