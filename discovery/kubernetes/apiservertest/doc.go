// Package apiservertest tests the Kubernetes discovery source of lbkit
// against a real kube-apiserver, started in the test process with an
// embedded etcd, and real traffic through an lbkit listener.
//
// It is its own module so that the Kubernetes discovery module's users
// never download k8s.io/kubernetes (whose staging modules need replace
// directives, kept here). It holds tests only. The first build compiles
// the API server and takes several minutes; see docs/guides/kubernetes.md
// for the times measured.
package apiservertest
