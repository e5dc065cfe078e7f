package xds

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"os"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/structpb"
)

// Bootstrap is what a Client needs to reach its control plane: the subset
// of the bootstrap file of Envoy and gRPC that lbkit uses. Its JSON is
//
//	{
//	  "xds_servers": [{
//	    "server_uri": "xds.internal:18000",
//	    "channel_creds": [{"type": "insecure"}],
//	    "server_features": ["xds_v3"]
//	  }],
//	  "node": {
//	    "id": "lbkit-edge-1",
//	    "cluster": "edge",
//	    "locality": {"region": "eu", "zone": "eu-1a"},
//	    "metadata": {"role": "edge"}
//	  }
//	}
//
// Only the first server is used. Channel credentials are tried in order:
// "insecure", or "tls" with an optional "config": {"ca_certificate_file",
// "certificate_file", "private_key_file"} (system roots without a CA
// file); other types are skipped. Other fields are ignored.
type Bootstrap struct {
	// Servers are the control plane's servers; the first is used.
	Servers []Server `json:"xds_servers"`
	// Node identifies this load balancer to the control plane.
	Node Node `json:"node"`
}

// Server is one control-plane server of a Bootstrap.
type Server struct {
	// URI is the server's address, host:port.
	URI string `json:"server_uri"`
	// Creds are the channel credentials to try, in order.
	Creds []Creds `json:"channel_creds"`
	// Features are the server's features; "xds_v3" is assumed anyway.
	Features []string `json:"server_features,omitempty"`
}

// Creds is one entry of channel_creds.
type Creds struct {
	// Type is "insecure" or "tls".
	Type string `json:"type"`
	// Config configures "tls".
	Config *TLSConfig `json:"config,omitempty"`
}

// TLSConfig configures "tls" channel credentials with files.
type TLSConfig struct {
	// CACertificateFile holds the CAs that sign the server's certificate
	// (PEM). Default: the system's roots.
	CACertificateFile string `json:"ca_certificate_file,omitempty"`
	// CertificateFile and PrivateKeyFile are the client's certificate and
	// key (PEM), for servers that want one.
	CertificateFile string `json:"certificate_file,omitempty"`
	PrivateKeyFile  string `json:"private_key_file,omitempty"`
}

// Node is the node a Client says it is, sent on every stream.
type Node struct {
	// ID is the node's identifier; control planes key their snapshots by
	// it. Required.
	ID string `json:"id"`
	// Cluster is the service cluster the node belongs to.
	Cluster string `json:"cluster,omitempty"`
	// Locality is where the node runs.
	Locality *Locality `json:"locality,omitempty"`
	// Metadata is free-form, for the control plane.
	Metadata map[string]any `json:"metadata,omitempty"`
}

// Locality is a node's region, zone and sub-zone.
type Locality struct {
	// Region, Zone and SubZone name the place, coarsest first.
	Region  string `json:"region,omitempty"`
	Zone    string `json:"zone,omitempty"`
	SubZone string `json:"sub_zone,omitempty"`
}

// ParseBootstrap reads a bootstrap from JSON and checks it.
func ParseBootstrap(data []byte) (Bootstrap, error) {
	var b Bootstrap
	if err := json.Unmarshal(data, &b); err != nil {
		return Bootstrap{}, fmt.Errorf("xds bootstrap: %w", err)
	}
	return b, b.validate()
}

// LoadBootstrap reads a bootstrap file.
func LoadBootstrap(path string) (Bootstrap, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Bootstrap{}, fmt.Errorf("xds bootstrap: %w", err)
	}
	return ParseBootstrap(data)
}

// validate checks what a Client needs, every problem at once.
func (b Bootstrap) validate() error {
	var errs []error
	if len(b.Servers) == 0 {
		errs = append(errs, errors.New("xds bootstrap: xds_servers is empty"))
	} else {
		if b.Servers[0].URI == "" {
			errs = append(errs, errors.New("xds bootstrap: xds_servers[0].server_uri is empty"))
		}
		if _, err := b.Servers[0].dialOption(); err != nil {
			errs = append(errs, err)
		}
	}
	if b.Node.ID == "" {
		errs = append(errs, errors.New("xds bootstrap: node.id is empty"))
	}
	if _, err := structpb.NewStruct(b.Node.Metadata); err != nil {
		errs = append(errs, fmt.Errorf("xds bootstrap: node.metadata: %w", err))
	}
	return errors.Join(errs...)
}

// dialOption returns the transport credentials of the first usable
// channel credentials (insecure when none are listed).
func (s Server) dialOption() (grpc.DialOption, error) {
	if len(s.Creds) == 0 {
		return grpc.WithTransportCredentials(insecure.NewCredentials()), nil
	}
	for _, c := range s.Creds {
		switch c.Type {
		case "insecure":
			return grpc.WithTransportCredentials(insecure.NewCredentials()), nil
		case "tls":
			cfg, err := c.Config.tls()
			if err != nil {
				return nil, err
			}
			return grpc.WithTransportCredentials(credentials.NewTLS(cfg)), nil
		}
	}
	return nil, fmt.Errorf("xds bootstrap: xds_servers[0].channel_creds: none of the types is insecure or tls")
}

// tls builds a TLS configuration from the files.
func (c *TLSConfig) tls() (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if c == nil {
		return cfg, nil
	}
	if c.CACertificateFile != "" {
		pem, err := os.ReadFile(c.CACertificateFile)
		if err != nil {
			return nil, fmt.Errorf("xds bootstrap: tls: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("xds bootstrap: tls: no certificate in %s", c.CACertificateFile)
		}
		cfg.RootCAs = pool
	}
	if c.CertificateFile != "" || c.PrivateKeyFile != "" {
		cert, err := tls.LoadX509KeyPair(c.CertificateFile, c.PrivateKeyFile)
		if err != nil {
			return nil, fmt.Errorf("xds bootstrap: tls: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

// node returns the node as the protocol sends it.
func (n Node) node() *corev3.Node {
	out := &corev3.Node{Id: n.ID, Cluster: n.Cluster, UserAgentName: "lbkit"}
	if l := n.Locality; l != nil {
		out.Locality = &corev3.Locality{Region: l.Region, Zone: l.Zone, SubZone: l.SubZone}
	}
	if len(n.Metadata) > 0 {
		out.Metadata, _ = structpb.NewStruct(n.Metadata) // checked by validate
	}
	return out
}
