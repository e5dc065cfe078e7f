package chromium

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/net/websocket"
)

// Path is where Debian's chromium package installs the browser.
const Path = "/usr/bin/chromium"

// Available reports whether the browser is installed, and why not.
func Available() error {
	_, err := os.Stat(Path)
	return err
}

// Browser is a headless Chromium process driven over the DevTools
// protocol. Close it.
type Browser struct {
	cmd  *exec.Cmd
	dir  string
	ws   *websocket.Conn
	mu   sync.Mutex // guards next and the connection's writes
	next int
}

// Start launches headless Chromium with a fresh profile in dir (a
// directory the caller removes), a window of width×height CSS pixels, and
// the flags that keep it from reaching the network on its own; it
// connects to its first page. ctx bounds the start.
func Start(ctx context.Context, dir string, width, height int) (*Browser, error) {
	cmd := exec.Command(Path,
		"--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-quic",
		"--hide-scrollbars", "--force-device-scale-factor=1",
		fmt.Sprintf("--window-size=%d,%d", width, height),
		"--remote-debugging-port=0", "--remote-allow-origins=*",
		"--user-data-dir="+dir, "about:blank")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	b := &Browser{cmd: cmd, dir: dir}
	// Chromium prints "DevTools listening on ws://127.0.0.1:PORT/..." on
	// stderr once it listens.
	found := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		sent := false
		for sc.Scan() {
			if i := strings.Index(sc.Text(), "ws://"); i >= 0 && !sent {
				found <- sc.Text()[i:]
				sent = true
			}
		}
		if !sent {
			close(found)
		}
	}()
	var browserURL string
	select {
	case u, ok := <-found:
		if !ok {
			b.Close()
			return nil, errors.New("chromium exited before it listened")
		}
		browserURL = u
	case <-ctx.Done():
		b.Close()
		return nil, ctx.Err()
	}
	// The page's own endpoint, from the browser's /json list.
	host := strings.TrimPrefix(browserURL, "ws://")
	host = host[:strings.IndexByte(host, '/')]
	var pageURL string
	for pageURL == "" {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+host+"/json/list", nil)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			var targets []struct{ Type, WebSocketDebuggerURL string }
			err = json.NewDecoder(resp.Body).Decode(&targets)
			resp.Body.Close()
			for _, t := range targets {
				if t.Type == "page" {
					pageURL = t.WebSocketDebuggerURL
					break
				}
			}
		}
		if pageURL == "" {
			if ctx.Err() != nil {
				b.Close()
				return nil, fmt.Errorf("no page target: %v", err)
			}
			select {
			case <-ctx.Done():
			case <-time.After(20 * time.Millisecond): // polling a process's own HTTP endpoint
			}
		}
	}
	ws, err := websocket.Dial(pageURL, "", "http://127.0.0.1/")
	if err != nil {
		b.Close()
		return nil, err
	}
	b.ws = ws
	if _, err := b.Call(ctx, "Emulation.setDeviceMetricsOverride", map[string]any{
		"width": width, "height": height, "deviceScaleFactor": 1, "mobile": false,
	}); err != nil {
		b.Close()
		return nil, err
	}
	return b, nil
}

// Call sends a DevTools command and returns its result.
func (b *Browser) Call(ctx context.Context, method string, params any) (json.RawMessage, error) {
	b.mu.Lock()
	b.next++
	id := b.next
	err := websocket.JSON.Send(b.ws, map[string]any{"id": id, "method": method, "params": params})
	b.mu.Unlock()
	if err != nil {
		return nil, err
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = b.ws.SetReadDeadline(dl)
	}
	for {
		var msg struct {
			ID     int             `json:"id"`
			Result json.RawMessage `json:"result"`
			Error  *struct {
				Message string `json:"message"`
			} `json:"error"`
		}
		if err := websocket.JSON.Receive(b.ws, &msg); err != nil {
			return nil, err
		}
		if msg.ID != id {
			continue // an event, or another call's answer
		}
		if msg.Error != nil {
			return nil, fmt.Errorf("%s: %s", method, msg.Error.Message)
		}
		return msg.Result, nil
	}
}

// Navigate loads url and waits for its load event.
func (b *Browser) Navigate(ctx context.Context, url string) error {
	if _, err := b.Call(ctx, "Page.enable", nil); err != nil {
		return err
	}
	if _, err := b.Call(ctx, "Page.navigate", map[string]any{"url": url}); err != nil {
		return err
	}
	// Wait for the document to be complete.
	for {
		var s string
		if err := b.Eval(ctx, "document.readyState", &s); err != nil {
			return err
		}
		if s == "complete" {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Millisecond): // polling the page's own state
		}
	}
}

// Eval evaluates a JavaScript expression in the page and decodes its value
// (returned by value) into out.
func (b *Browser) Eval(ctx context.Context, expr string, out any) error {
	res, err := b.Call(ctx, "Runtime.evaluate", map[string]any{"expression": expr, "returnByValue": true})
	if err != nil {
		return err
	}
	var r struct {
		Result struct {
			Value json.RawMessage `json:"value"`
		} `json:"result"`
		ExceptionDetails *struct {
			Text string `json:"text"`
		} `json:"exceptionDetails"`
	}
	if err := json.Unmarshal(res, &r); err != nil {
		return err
	}
	if r.ExceptionDetails != nil {
		return fmt.Errorf("evaluate %q: %s", expr, r.ExceptionDetails.Text)
	}
	return json.Unmarshal(r.Result.Value, out)
}

// Screenshot saves a PNG of the viewport to path.
func (b *Browser) Screenshot(ctx context.Context, path string) error {
	res, err := b.Call(ctx, "Page.captureScreenshot", map[string]any{"format": "png"})
	if err != nil {
		return err
	}
	var r struct{ Data []byte }
	if err := json.Unmarshal(res, &r); err != nil {
		return err
	}
	return os.WriteFile(filepath.Clean(path), r.Data, 0o644)
}

// VisibleText returns the text of the elements matching a CSS selector
// whose top edge is within the first height pixels of the page: what a
// person sees without scrolling. Each is paired with the element's class
// and its computed text colour.
func (b *Browser) VisibleText(ctx context.Context, selector string, height int) ([]Element, error) {
	var out []Element
	expr := fmt.Sprintf(`Array.from(document.querySelectorAll(%q)).filter(e => e.getBoundingClientRect().top < %d && e.getBoundingClientRect().height > 0).map(e => ({text: e.innerText, class: e.className, color: getComputedStyle(e).color, top: e.getBoundingClientRect().top}))`, selector, height)
	err := b.Eval(ctx, expr, &out)
	return out, err
}

// Element is an element as a person sees it.
type Element struct {
	Text  string  `json:"text"`
	Class string  `json:"class"`
	Color string  `json:"color"`
	Top   float64 `json:"top"`
}

// Close ends the browser and every process of its group.
func (b *Browser) Close() error {
	if b.ws != nil {
		b.ws.Close()
	}
	if b.cmd.Process != nil {
		_ = syscall.Kill(-b.cmd.Process.Pid, syscall.SIGKILL)
		_ = b.cmd.Wait()
	}
	return nil
}
