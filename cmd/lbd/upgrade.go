package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"
)

// upgradeCommand is `lbd upgrade`: it asks the running lbd, over its admin
// endpoint, to start the binary now installed on its listening sockets,
// and says how that went (the old and new process IDs, or why it failed:
// the running lbd serves on then). systemd users may instead send SIGUSR2
// (systemctl kill -s USR2 lbd), which says nothing back but the log.
func upgradeCommand(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("upgrade", stderr)
	addr := fs.String("admin", "127.0.0.1:9900", "the running lbd's admin address")
	tokenFile := fs.String("admin-token-file", "", "file holding its admin token, if it has one")
	timeout := fs.Duration("timeout", 2*time.Minute, "how long to wait for the upgrade")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintln(stderr, "lbd upgrade: no arguments are taken besides the flags")
		return 2
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+*addr+"/upgrade", nil)
	if err != nil {
		fmt.Fprintln(stderr, "lbd upgrade:", err)
		return 2
	}
	if *tokenFile != "" {
		b, err := os.ReadFile(*tokenFile)
		if err != nil {
			fmt.Fprintln(stderr, "lbd upgrade:", err)
			return 1
		}
		req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(b)))
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		fmt.Fprintln(stderr, "lbd upgrade: cannot reach the running lbd:", err)
		return 1
	}
	defer resp.Body.Close()
	var body struct {
		Message string `json:"message"`
		Error   string `json:"error"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		fmt.Fprintf(stderr, "lbd upgrade: %s, and an answer that is not JSON: %v\n", resp.Status, err)
		return 1
	}
	if resp.StatusCode != http.StatusOK {
		fmt.Fprintf(stderr, "lbd upgrade failed (%s): %s\n", resp.Status, body.Error)
		return 1
	}
	fmt.Fprintf(stdout, "lbd upgraded: %s\n", body.Message)
	return 0
}
