// Command example serves HTTPS with a certificate obtained and renewed
// automatically from an ACME CA: the guide docs/guides/automatic-certificates.md
// quotes it, and its test runs it against Pebble.
//
//	go run . -domain shop.example.com -email ops@example.com -ca https://acme-staging-v02.api.letsencrypt.org/directory
package main
