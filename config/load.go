package config

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/lbkit/lbkit/lb"
)

// Load reads and checks the configuration file at path. Relative file
// names inside it (certificates, keys) are read from the file's directory.
// An invalid file returns an *Error listing every problem by path. Options
// register discovery kinds (WithSourceFactory).
func Load(path string, opts ...Option) (*File, error) {
	data, err := readFile("", path)
	if err != nil {
		return nil, &Error{File: path, Problems: []Problem{{Message: err.Error()}}}
	}
	return parse(data, path, filepath.Dir(path), newExtensions(opts))
}

// Parse reads and checks a configuration from data. Relative file names in
// it are read from the working directory. An invalid configuration returns
// an *Error listing every problem by path. Options register discovery
// kinds (WithSourceFactory).
func Parse(data []byte, opts ...Option) (*File, error) {
	return parse(data, "", "", newExtensions(opts))
}

func parse(data []byte, name, dir string, ext *extensions) (*File, error) {
	f := &File{dir: dir, ext: ext}
	probs := &problems{}
	lines := map[string]int{}
	decode(data, f, probs, lines, ext)
	if !probs.syntax {
		f.check(probs, lines, nil)
	}
	if err := probs.err(name, f); err != nil {
		return nil, err
	}
	return f, nil
}

// Validate checks the file as Load and Parse do: every field, then the
// whole configuration as lb.New would, including reading the certificate
// and key files it names. It returns an *Error listing every problem, or
// nil.
func (f *File) Validate() error {
	probs := &problems{}
	f.check(probs, nil, nil)
	return probs.err("", f)
}

// Options returns the lb options the file describes, to give to lb.New or
// LoadBalancer.Reconfigure together with the caller's own (lb.WithLogger,
// lb.WithHooks). It reads the certificate and key files again, so a reload
// picks up renewed certificates. Listeners with access_log set log to
// accessLog (nil: slog.Default()); give the same logger on every reload,
// or the listeners are restarted to take the new one.
//
// If the file is invalid (or a file it names has become unreadable) it
// returns an *Error listing every problem.
func (f *File) Options(accessLog *slog.Logger) ([]lb.Option, error) {
	probs := &problems{}
	opts := f.check(probs, nil, accessLog)
	if err := probs.err("", f); err != nil {
		return nil, err
	}
	return opts, nil
}

// check compiles the file into options, checking every field, then lets lb
// check the result, and records every problem.
func (f *File) check(probs *problems, lines map[string]int, accessLog *slog.Logger) []lb.Option {
	c := newCompiler(f, probs, lines, accessLog)
	opts := c.compile()
	if _, err := lb.New(opts...); err != nil {
		c.lbProblems(err)
	}
	return opts
}

// readFile reads a file named in a configuration: a regular file, at most
// MaxFileSize bytes (a device or a FIFO would block or never end).
func readFile(dir, name string) ([]byte, error) {
	if dir != "" && !filepath.IsAbs(name) {
		name = filepath.Join(dir, name)
	}
	fh, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer fh.Close()
	st, err := fh.Stat()
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file", name)
	}
	data, err := io.ReadAll(io.LimitReader(fh, MaxFileSize+1))
	if err != nil {
		return nil, err
	}
	if len(data) > MaxFileSize {
		return nil, fmt.Errorf("%s is over the limit of %d bytes", name, MaxFileSize)
	}
	return data, nil
}
