// Command l4bench compares lbkit's TCP and UDP proxies with a minimal Go
// io.Copy proxy, HAProxy (with splice) and nginx stream, on 127.0.0.1 only,
// with bounded runs:
//
//   - bulk TCP: iperf3, one stream;
//   - short connections per second: connect, one small request and
//     response, close, from concurrent workers;
//   - UDP goodput and loss: iperf3 -u at unlimited offered load.
//
// run.sh installs the peers from Debian's packages and runs "l4bench run".
// The other subcommands are the programs the run starts: the lbkit proxy
// (built from lbkit's public API only), the minimal proxy, and the
// short-connection server and client.
package main
