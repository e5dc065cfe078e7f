package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/debug"
	"strings"

	"github.com/lbkit/lbkit/config"
)

func main() {
	os.Exit(lbd(context.Background(), os.Args[1:], os.Stdout, os.Stderr))
}

const usage = `lbd is a load balancer configured by a YAML file.

Usage:

	lbd run -config FILE [flags]      run it (lbd run -h lists the flags)
	lbd validate -config FILE         check a file: every problem, exit status 1 if any
	lbd upgrade [-admin ADDR]         replace the running lbd by this binary, refusing no client
	lbd version                       the version, the commit and the Go release it was built with

Signals to a running lbd: SIGHUP reloads the file, SIGUSR1 reopens the log
files, SIGUSR2 upgrades the binary, SIGTERM and SIGINT stop it gracefully.
`

// lbd runs the command line args and returns the exit status: 0 for
// success, 1 when the command failed, 2 for a bad command line.
func lbd(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	switch cmd, rest := args[0], args[1:]; cmd {
	case "run":
		return run(ctx, rest, stderr)
	case "validate":
		return validate(rest, stdout, stderr)
	case "upgrade":
		return upgradeCommand(ctx, rest, stdout, stderr)
	case "version":
		if len(rest) > 0 {
			fmt.Fprintln(stderr, "lbd version takes no arguments")
			return 2
		}
		fmt.Fprint(stdout, versionText())
		return 0
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		if strings.HasPrefix(cmd, "-") {
			// lbd -config FILE: the form of the first releases.
			return run(ctx, args, stderr)
		}
		fmt.Fprintf(stderr, "lbd: unknown command %q\n\n%s", cmd, usage)
		return 2
	}
}

// validate checks a configuration file as run would before starting:
// syntax, every object and field, the certificates and keys it names, and
// what the load balancer itself refuses (addresses, names, references). It
// starts nothing: no socket is opened.
func validate(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("validate", stderr)
	path := fs.String("config", "", "the configuration file to check (required)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *path == "" || fs.NArg() > 0 {
		fmt.Fprintln(stderr, "lbd validate: -config is required, and nothing else is taken")
		return 2
	}
	if _, err := loadOptions(*path, nil); err != nil {
		fmt.Fprintf(stderr, "%s: the configuration is invalid:\n", *path)
		for _, p := range problemList(err) {
			fmt.Fprintf(stderr, "  %s\n", p)
		}
		return 1
	}
	fmt.Fprintf(stdout, "%s: the configuration is valid\n", *path)
	return 0
}

// versionText describes the build: the module's version (a tag when built
// by go install …@version, "(devel)" from a checkout), the VCS revision,
// its time and whether the tree had changes, and the Go release.
func versionText() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "lbd: no build information (built without module support)\n"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "lbd %s\n", bi.Main.Version)
	settings := map[string]string{}
	for _, s := range bi.Settings {
		settings[s.Key] = s.Value
	}
	if rev := settings["vcs.revision"]; rev != "" {
		dirty := ""
		if settings["vcs.modified"] == "true" {
			dirty = " (with uncommitted changes)"
		}
		fmt.Fprintf(&b, "commit %s%s\n", rev, dirty)
		if at := settings["vcs.time"]; at != "" {
			fmt.Fprintf(&b, "committed %s\n", at)
		}
	}
	for _, d := range bi.Deps {
		if d.Path == "github.com/lbkit/lbkit" {
			v := d.Version
			if d.Replace != nil {
				v += " => " + d.Replace.Path
				if d.Replace.Version != "" {
					v += " " + d.Replace.Version
				}
			}
			fmt.Fprintf(&b, "lbkit %s\n", v)
		}
	}
	fmt.Fprintf(&b, "built with %s for %s/%s\n", bi.GoVersion, runtime.GOOS, runtime.GOARCH)
	return b.String()
}

// problemList returns an error's problems one per entry.
func problemList(err error) []string {
	var ce *config.Error
	if errors.As(err, &ce) {
		out := make([]string, len(ce.Problems))
		for i, p := range ce.Problems {
			out[i] = p.Error()
		}
		return out
	}
	return strings.Split(err.Error(), "\n")
}
