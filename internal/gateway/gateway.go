// Package gateway wires a validated configuration into a running gateway:
// the authbridge routes and pools, the pgwire server, and its listener.
// The serve and demo commands and the test harness all start gateways
// through it.
package gateway

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"go.uber.org/zap"

	"github.com/dsqlgate/dsqlgate/authbridge"
	"github.com/dsqlgate/dsqlgate/config"
	"github.com/dsqlgate/dsqlgate/pgwire"
)

// Options are what StartGateway needs beyond the configuration.
type Options struct {
	Logger      *zap.Logger
	Credentials aws.CredentialsProvider // nil: the AWS default chain
}

// Gateway is a running gateway: a bridge, a server and its listener.
type Gateway struct {
	Config *config.Config
	Bridge *authbridge.Bridge
	Server *pgwire.Server
	Addr   string // host:port it listens on
	served chan error
}

// Start validates cfg, builds the bridge and server, and serves on
// cfg.Listen (port 0 picks a free one). The caller must Close it.
func Start(ctx context.Context, cfg *config.Config, opts Options) (*Gateway, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if opts.Logger == nil {
		opts.Logger = zap.NewNop()
	}
	bridge, err := authbridge.New(ctx, cfg, authbridge.Options{Credentials: opts.Credentials, Logger: opts.Logger})
	if err != nil {
		return nil, err
	}
	srv, err := pgwire.NewServer(cfg, bridge, pgwire.Options{Logger: opts.Logger})
	if err != nil {
		bridge.Close()
		return nil, err
	}
	l, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		bridge.Close()
		return nil, fmt.Errorf("listen on %s: %w", cfg.Listen, err)
	}
	g := &Gateway{Config: cfg, Bridge: bridge, Server: srv, Addr: l.Addr().String(), served: make(chan error, 1)}
	go func() { g.served <- srv.Serve(l) }()
	return g, nil
}

// Close stops the gateway: listener, client sessions, then pools.
func (g *Gateway) Close() error {
	err := g.Server.Close()
	select {
	case serr := <-g.served:
		err = errors.Join(err, serr)
	case <-time.After(10 * time.Second):
	}
	g.Bridge.Close()
	return err
}
