package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"sync"
	"syscall"

	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"github.com/dsqlgate/dsqlgate/config"
	"github.com/dsqlgate/dsqlgate/internal/gateway"
)

// serveFlags are serve's flags. overrides are the flags that set a
// configuration key, as given on the command line.
type serveFlags struct {
	configPath string
	configEnv  string // the variable holding the configuration, instead of a file
	overrides  []config.Flag
}

// keyFlags are serve's flags that set a configuration key: each overrides
// the file and the environment.
var keyFlags = []struct{ name, key, usage string }{
	{"listen", "listen", "client listen address host:port"},
	{"log-level", "log.level", "debug, info, warn or error"},
	{"log-format", "log.format", "console or json"},
}

func newServeCommand(st streams) *cobra.Command {
	var f serveFlags
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the gateway with a configuration file",
		Long: `Run the gateway: listen for PostgreSQL clients, authenticate them against the
configured users, and serve each route from pooled upstream connections
(Aurora DSQL with IAM tokens, or a plain PostgreSQL for kind postgres).

Each setting is resolved in this order, each source overriding the ones
before it:

  1. the defaults (docs/CONFIG.md lists them)
  2. the configuration file (--config), or the YAML document held in the
     environment variable that --config-env names
  3. DSQLGATE_* environment variables (DSQLGATE_LISTEN, DSQLGATE_LOG_LEVEL,
     ...: DSQLGATE_ and the key in upper case, dots as underscores)
  4. the flags below

The result is validated as a whole, so a flag may correct the file. The
secrets that verifier_env, password_env and users_env name are read when the gateway
starts and at each reload; the users file then too, and whenever it
changes. AWS credentials come from the default chain (environment, shared
config and profile, SSO, web identity, ECS/EC2 metadata), or the profile in
aws.profile; with a kind dsql route they are retrieved once at start-up,
and the gateway refuses to start without them, naming the sources tried.

Signals: SIGTERM or SIGINT drains (no new clients; each client is closed at
its next safe point, after its transaction, for up to shutdown_timeout; with
peers and without reuse_port the client port stays open for cancel requests
until the last session ends, refusing new clients with 57P03); a second
SIGINT exits at once. The admin console's SHUTDOWN drains the same way.
SIGHUP reloads the configuration (users, routes and pool sizes, client TLS,
limits, log settings, peers' addresses and DNS) without dropping sessions,
and logs what changed or why it refused. With reuse_port: true (unix systems),
the client and metrics ports are shared with another dsqlgate process that
sets it too, so a new process can start on them before the old one drains
(a rolling restart on one host); without it, a port in use is an error.

A DSQLGATE_ variable that sets no key is logged as a warning and ignored
(those Kubernetes injects for a Service named dsqlgate, silently).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, cancel := signalContext(cmd.Context())
			defer cancel()
			return runServe(ctx, f, st)
		},
	}
	addServeFlags(cmd, &f)
	return cmd
}

// addServeFlags defines serve's flags on cmd, to be parsed into f.
func addServeFlags(cmd *cobra.Command, f *serveFlags) {
	fs := cmd.Flags()
	fs.StringVarP(&f.configPath, "config", "c", "", "configuration file (YAML; see examples/dsqlgate.yaml and docs/CONFIG.md)")
	fs.StringVar(&f.configEnv, "config-env", "", "environment variable holding the whole YAML configuration, instead of --config (containers with no file, such as ECS on Fargate)")
	cmd.MarkFlagsOneRequired("config", "config-env")
	cmd.MarkFlagsMutuallyExclusive("config", "config-env")
	for _, kf := range keyFlags {
		usage := fmt.Sprintf("%s (overrides %s and %s)", kf.usage, kf.key, config.EnvVar(kf.key))
		fs.Var(&keyFlag{f: f, name: "--" + kf.name, key: kf.key}, kf.name, usage)
	}
}

// keyFlag is a flag that sets a configuration key: it records the value
// for config.Load, which applies it over the file and the environment.
type keyFlag struct {
	f         *serveFlags
	name, key string
	value     string
}

func (k *keyFlag) String() string { return k.value }
func (k *keyFlag) Type() string   { return "string" }

func (k *keyFlag) Set(v string) error {
	k.value = v
	k.f.overrides = append(k.f.overrides, config.Flag{Name: k.name, Key: k.key, Value: v})
	return nil
}

// loadConfig reads the configuration: the defaults, the file, the
// environment, then the flags, each over the ones before; the result is
// validated.
func loadConfig(f serveFlags) (*config.Config, error) {
	if f.configEnv != "" {
		return config.LoadEnv(f.configEnv, f.overrides...)
	}
	return config.Load(f.configPath, f.overrides...)
}

// logWarnings logs what the configuration's sources hold that it ignored.
func logWarnings(log *zap.Logger, cfg *config.Config) {
	for _, w := range cfg.Warnings() {
		log.Warn("ignoring an environment variable that sets no configuration key", zap.String("variable", w.Env), zap.String("problem", w.Message))
	}
}

// runServe validates everything before anything listens, serves until ctx
// ends, then drains.
func runServe(ctx context.Context, f serveFlags, st streams) error {
	cfg, err := loadConfig(f)
	if err != nil {
		return err
	}
	log, level, err := newLogger(cfg.Log.Level, cfg.Log.Format, st.err)
	if err != nil {
		return err
	}
	defer log.Sync()
	logWarnings(log, cfg)

	var gw *gateway.Gateway
	var reloadMu sync.Mutex
	reload := func() error {
		reloadMu.Lock()
		defer reloadMu.Unlock()
		next, err := loadConfig(f)
		if err != nil {
			gw.ReloadFailed()
			log.Warn("reload refused: the configuration does not validate; the previous one stays", zap.Error(err))
			return err
		}
		logWarnings(log, next)
		changes, err := gw.Reload(ctx, next)
		if err != nil {
			log.Warn("reload refused; the previous configuration stays", zap.Error(err))
			return err
		}
		level.UnmarshalText([]byte(next.Log.Level)) // validated already
		if len(changes) == 0 {
			log.Info("reloaded: nothing changed")
		}
		for _, c := range changes {
			log.Info("reloaded", zap.String("change", c))
		}
		return nil
	}
	// SIGHUP is caught before the start, which can take minutes (ACME's
	// first certificate): one that comes meanwhile reloads once started,
	// rather than killing the process (Go's default).
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	// The console's SHUTDOWN takes SIGTERM's path: it ends the loop below.
	stop := make(chan struct{})
	var stopOnce sync.Once
	shutdown := func() { stopOnce.Do(func() { close(stop) }) }
	gw, err = gateway.Start(ctx, cfg, gateway.Options{Logger: log, Version: versionString(), Reload: reload, Shutdown: shutdown})
	if err != nil {
		return fmt.Errorf("start gateway: %w", err)
	}
	log.Info("dsqlgate listening", zap.String("address", gw.Addr), zap.String("metrics", gw.OpsAddr),
		zap.String("version", versionString()), zap.Int("routes", len(cfg.Routes)))
	for {
		select {
		case <-ctx.Done():
		case <-stop:
			log.Info("shutdown requested from the admin console")
		case <-hup:
			reload()
			continue
		}
		timeout := gw.Config().ShutdownTimeout.D()
		log.Info("draining", zap.Duration("shutdown_timeout", timeout))
		sctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		if err := gw.Shutdown(sctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
			return err
		}
		log.Info("stopped")
		return nil
	}
}
