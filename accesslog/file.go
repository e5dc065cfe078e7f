package accesslog

import (
	"fmt"
	"os"
	"sync"
)

// File is a log file that can be reopened by name, for logrotate: after
// the file was moved away, Reopen makes the next writes go to a new file of
// the same name. Writes are serialised, so each record of a handler that
// writes a record in one Write call stays whole. It is safe for concurrent
// use.
type File struct {
	path string
	mode os.FileMode

	mu sync.Mutex // serialises writes and reopening; guards f
	f  *os.File
}

// Open opens (creating it with mode 0644, or appending to it) the file at
// path.
func Open(path string) (*File, error) {
	lf := &File{path: path, mode: 0o644}
	f, err := lf.open()
	if err != nil {
		return nil, err
	}
	lf.f = f
	return lf, nil
}

func (lf *File) open() (*os.File, error) {
	f, err := os.OpenFile(lf.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, lf.mode)
	if err != nil {
		return nil, fmt.Errorf("accesslog: %w", err)
	}
	return f, nil
}

// Path returns the file's name.
func (lf *File) Path() string { return lf.path }

// Write appends p to the file.
func (lf *File) Write(p []byte) (int, error) {
	lf.mu.Lock()
	defer lf.mu.Unlock()
	if lf.f == nil {
		return 0, os.ErrClosed
	}
	return lf.f.Write(p)
}

// Reopen closes the file and opens the file now at its path (a new one
// when it was moved away). If that fails, writes go on to the old file and
// the error is returned.
func (lf *File) Reopen() error {
	f, err := lf.open()
	if err != nil {
		return err
	}
	lf.mu.Lock()
	old := lf.f
	lf.f = f
	lf.mu.Unlock()
	if old != nil {
		return old.Close()
	}
	return nil
}

// Close closes the file; later writes fail with os.ErrClosed.
func (lf *File) Close() error {
	lf.mu.Lock()
	defer lf.mu.Unlock()
	if lf.f == nil {
		return nil
	}
	err := lf.f.Close()
	lf.f = nil
	return err
}
