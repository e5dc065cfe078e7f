package kubernetes

import (
	"context"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/lbkit/lbkit/lb"
)

func ptr[T any](v T) *T { return &v }

// ep is an endpoint with the given conditions (nil: unset).
func ep(addr string, ready, serving, terminating *bool, zone string) discoveryv1.Endpoint {
	e := discoveryv1.Endpoint{Addresses: []string{addr}, Conditions: discoveryv1.EndpointConditions{Ready: ready, Serving: serving, Terminating: terminating}}
	if zone != "" {
		e.Zone = ptr(zone)
	}
	return e
}

func slice(ns, name, service string, at discoveryv1.AddressType, ports []discoveryv1.EndpointPort, eps ...discoveryv1.Endpoint) *discoveryv1.EndpointSlice {
	return &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{discoveryv1.LabelServiceName: service}},
		AddressType: at,
		Ports:       ports,
		Endpoints:   eps,
	}
}

var (
	yes, no  = ptr(true), ptr(false)
	webPorts = []discoveryv1.EndpointPort{{Name: ptr("http"), Port: ptr(int32(8080))}, {Name: ptr("metrics"), Port: ptr(int32(9090))}}
)

func TestTargetsMapping(t *testing.T) {
	c := fake.NewClientset(
		slice("shop", "web-a", "web", discoveryv1.AddressTypeIPv4, webPorts,
			ep("10.0.0.1", yes, yes, no, "zone-a"), // ready: serving
			ep("10.0.0.2", no, yes, yes, "zone-b"), // terminating, still serving: draining
			ep("10.0.0.3", no, no, yes, ""),        // terminating, not serving: left out
			ep("10.0.0.4", no, no, no, ""),         // not ready: left out
			ep("10.0.0.5", nil, nil, nil, "")),     // nothing known: ready
		slice("shop", "web-b", "web", discoveryv1.AddressTypeIPv6, webPorts,
			ep("fd00::1", yes, yes, nil, ""),
			ep("10.0.0.2", yes, yes, no, "zone-b")), // serving in another slice wins
		slice("shop", "web-c", "web", discoveryv1.AddressTypeFQDN, webPorts, ep("web.example", yes, yes, no, "")),
		slice("shop", "api-a", "api", discoveryv1.AddressTypeIPv4, webPorts, ep("10.9.9.9", yes, yes, no, "")),
		slice("other", "web-x", "web", discoveryv1.AddressTypeIPv4, webPorts, ep("10.8.8.8", yes, yes, no, "")),
	)
	byName, err := New("web", WithNamespace("shop"), WithPort("http"), WithClient(c))
	require.NoError(t, err)
	got, err := byName.Targets(context.Background())
	require.NoError(t, err)
	assert.Equal(t, []lb.Discovered{
		{Addr: "10.0.0.1:8080", Weight: 1, Zone: "zone-a"},
		{Addr: "10.0.0.2:8080", Weight: 1, Zone: "zone-b"},
		{Addr: "10.0.0.5:8080", Weight: 1},
		{Addr: "[fd00::1]:8080", Weight: 1},
	}, got)

	byNumber, err := New("web", WithNamespace("shop"), WithPort("9090"), WithClient(c))
	require.NoError(t, err)
	got, err = byNumber.Targets(context.Background())
	require.NoError(t, err)
	assert.Len(t, got, 4)
	assert.Equal(t, "10.0.0.1:9090", got[0].Addr)

	noPort, err := New("web", WithNamespace("shop"), WithClient(c))
	require.NoError(t, err)
	got, err = noPort.Targets(context.Background())
	require.NoError(t, err)
	assert.Empty(t, got, "two ports and none chosen: no targets")
	assert.Equal(t, "kubernetes shop/web port (the only one)", noPort.String())
}

func TestTargetsDraining(t *testing.T) {
	c := fake.NewClientset(slice("default", "web-a", "web", discoveryv1.AddressTypeIPv4, webPorts, ep("10.0.0.2", no, yes, yes, "")))
	s, err := New("web", WithPort("http"), WithClient(c))
	require.NoError(t, err)
	got, err := s.Targets(context.Background())
	require.NoError(t, err)
	assert.Equal(t, []lb.Discovered{{Addr: "10.0.0.2:8080", Weight: 1, State: lb.Draining}}, got)
}

// recorder collects a watch's updates.
type recorder struct {
	ch chan lb.Update
}

func (r *recorder) push(u lb.Update) { r.ch <- u }

func (r *recorder) next(t *testing.T) lb.Update {
	t.Helper()
	select {
	case u := <-r.ch:
		return u
	case <-time.After(10 * time.Second):
		t.Fatal("no update")
		return lb.Update{}
	}
}

func addrs(ds []lb.Discovered) map[string]lb.TargetState {
	m := map[string]lb.TargetState{}
	for _, d := range ds {
		m[d.Addr] = d.State
	}
	return m
}

func TestWatchFollowsSlices(t *testing.T) {
	c := fake.NewClientset(slice("default", "web-a", "web", discoveryv1.AddressTypeIPv4, webPorts, ep("10.0.0.1", yes, yes, no, "")))
	s, err := New("web", WithPort("http"), WithClient(c))
	require.NoError(t, err)
	rec := &recorder{ch: make(chan lb.Update, 16)}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { assert.NoError(t, s.Watch(ctx, rec.push)) })
	defer func() { cancel(); wg.Wait() }()

	assert.Equal(t, map[string]lb.TargetState{"10.0.0.1:8080": lb.Serving}, addrs(rec.next(t).Targets), "the first list")

	sl := c.DiscoveryV1().EndpointSlices("default")
	_, err = sl.Create(ctx, slice("default", "web-b", "web", discoveryv1.AddressTypeIPv4, webPorts, ep("10.0.0.2", yes, yes, no, "")), metav1.CreateOptions{})
	require.NoError(t, err)
	assert.Equal(t, map[string]lb.TargetState{"10.0.0.1:8080": lb.Serving, "10.0.0.2:8080": lb.Serving}, addrs(rec.next(t).Targets), "a second slice merged")

	_, err = sl.Update(ctx, slice("default", "web-a", "web", discoveryv1.AddressTypeIPv4, webPorts, ep("10.0.0.1", no, yes, yes, "")), metav1.UpdateOptions{})
	require.NoError(t, err)
	assert.Equal(t, map[string]lb.TargetState{"10.0.0.1:8080": lb.Draining, "10.0.0.2:8080": lb.Serving}, addrs(rec.next(t).Targets), "terminating: draining")

	_, err = sl.Create(ctx, slice("default", "api-a", "api", discoveryv1.AddressTypeIPv4, webPorts, ep("10.0.0.9", yes, yes, no, "")), metav1.CreateOptions{})
	require.NoError(t, err) // the fake's watch does not filter by label: the client does
	require.NoError(t, sl.Delete(ctx, "web-a", metav1.DeleteOptions{}))
	assert.Equal(t, map[string]lb.TargetState{"10.0.0.2:8080": lb.Serving}, addrs(rec.next(t).Targets), "deleted; the other service's slice never counts")
}

func TestFromConfig(t *testing.T) {
	dir := t.TempDir()
	kubeconfig := filepath.Join(dir, "kubeconfig")
	require.NoError(t, os.WriteFile(kubeconfig, []byte(`apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:1"}}]
users: [{name: u, user: {token: t}}]
contexts: [{name: x, context: {cluster: c, user: u}}]
current-context: x
`), 0o600))
	node := func(src string) *yaml.Node {
		var doc yaml.Node
		require.NoError(t, yaml.Unmarshal([]byte(src), &doc))
		return doc.Content[0]
	}
	src, err := FromConfig(node("{namespace: shop, service: web, port: http, kubeconfig: " + kubeconfig + "}"))
	require.NoError(t, err)
	assert.Equal(t, "kubernetes shop/web port http", src.String())
	again, err := FromConfig(node("{namespace: shop, service: web, port: http, kubeconfig: " + kubeconfig + "}"))
	require.NoError(t, err)
	assert.True(t, src.(*Source).Equal(again), "the same settings: a reload keeps the watch")

	_, err = FromConfig(node("{service: web,\n  prot: http}"))
	assert.ErrorContains(t, err, "line 2: prot: unknown field")
	_, err = FromConfig(node("{namespace: shop, kubeconfig: " + kubeconfig + "}"))
	assert.ErrorContains(t, err, "the service name is empty")
	_, err = FromConfig(node("{service: web, port: 70000, kubeconfig: " + kubeconfig + "}"))
	assert.ErrorContains(t, err, "port 70000 is out of range")
}
