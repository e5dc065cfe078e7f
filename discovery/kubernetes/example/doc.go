// Command example runs lbkit in front of a Kubernetes Service: an HTTP
// listener whose target group follows the Service's EndpointSlices.
//
//	go run . -kubeconfig ~/.kube/config -namespace shop -service web -port http
//	go run .    # a demonstration against client-go's in-memory fake API
//
// See docs/guides/kubernetes.md.
package main
