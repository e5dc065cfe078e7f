// Package chromium drives headless Chromium over the DevTools protocol for
// tests that check what a person sees on a page lbkit serves (the admin
// status page): it starts the browser with a fresh profile and no network
// of its own, loads a page at a given window size, evaluates expressions in
// it and takes screenshots. It uses golang.org/x/net/websocket and no other
// dependency. It is imported by tests only.
package chromium
