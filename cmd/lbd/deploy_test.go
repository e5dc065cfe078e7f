package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestSystemdUnitVerifies: deploy/lbd.service passes systemd-analyze
// verify (with the binary where the unit expects it), and every flag its
// command lines give lbd is one lbd defines.
func TestSystemdUnitVerifies(t *testing.T) {
	bin := lbdBinary(t)
	unit, err := os.ReadFile("../../deploy/lbd.service")
	require.NoError(t, err)

	// The flags of ExecStartPre and ExecStart, checked against lbd's own
	// usage of the subcommand.
	execLine := regexp.MustCompile(`(?m)^ExecStart(?:Pre)?=/usr/local/bin/lbd (\w+) (.*)$`)
	lines := execLine.FindAllStringSubmatch(string(unit), -1)
	require.Len(t, lines, 2, "ExecStartPre and ExecStart run lbd")
	for _, l := range lines {
		usage, _ := exec.Command(bin, l[1], "-h").CombinedOutput()
		for _, f := range regexp.MustCompile(`(?:^| )-([a-z-]+)`).FindAllStringSubmatch(l[2], -1) {
			assert.Contains(t, string(usage), "  -"+f[1]+" ", "lbd %s has no flag -%s", l[1], f[1])
		}
	}

	sa, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze is not installed (Debian: systemd)")
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "lbd.service")
	require.NoError(t, os.WriteFile(path, []byte(strings.ReplaceAll(string(unit), "/usr/local/bin/lbd", bin)), 0o644))
	out, err := exec.Command(sa, "verify", path).CombinedOutput()
	assert.NoError(t, err, "systemd-analyze verify:\n%s", out)
	assert.NotContains(t, string(out), "lbd.service", "systemd-analyze has something to say about the unit")
}

// TestContainerfileBuildStep runs the build stage's RUN command of
// deploy/Containerfile in a copy of the checkout, as `docker build` would
// after `COPY . .`, and checks the binary it makes runs.
func TestContainerfileBuildStep(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the daemon")
	}
	cf, err := os.ReadFile("../../deploy/Containerfile")
	require.NoError(t, err)
	text := strings.ReplaceAll(string(cf), "\\\n", " ")
	run := regexp.MustCompile(`(?m)^RUN (.*)$`).FindStringSubmatch(text)
	require.NotNil(t, run, "no RUN line")
	cmd := run[1]
	require.Contains(t, cmd, "-o /lbd ")

	// The checkout's files as COPY . . takes them: tracked and untracked,
	// not ignored.
	src := t.TempDir()
	files, err := exec.Command("git", "-C", "../..", "ls-files", "--cached", "--others", "--exclude-standard").Output()
	require.NoError(t, err)
	for _, f := range strings.Split(strings.TrimSpace(string(files)), "\n") {
		b, err := os.ReadFile(filepath.Join("../..", f))
		if os.IsNotExist(err) {
			continue // deleted in the work tree
		}
		require.NoError(t, err)
		require.NoError(t, os.MkdirAll(filepath.Join(src, filepath.Dir(f)), 0o755))
		require.NoError(t, os.WriteFile(filepath.Join(src, f), b, 0o644))
	}
	out := filepath.Join(t.TempDir(), "lbd")
	sh := exec.Command("bash", "-ec", strings.Replace(cmd, "-o /lbd ", "-o "+out+" ", 1))
	sh.Dir = src
	sh.Env = append(os.Environ(), "GOWORK=", "GOFLAGS=")
	b, err := sh.CombinedOutput()
	require.NoError(t, err, "%s", b)
	v, err := exec.Command(out, "version").CombinedOutput()
	require.NoError(t, err, "%s", v)
	assert.Contains(t, string(v), "lbd ")
}
