package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = ""

// streams are the process's standard streams, replaceable in tests.
type streams struct {
	in       io.Reader
	out, err io.Writer
}

// exitError carries a process exit code through cobra.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// execute runs the command line args and returns the exit code.
func execute(args []string, st streams) int {
	cmd := newRootCommand(st)
	cmd.SetArgs(args)
	if err := cmd.Execute(); err != nil {
		fmt.Fprintln(st.err, "dsqlgate:", err)
		var ee *exitError
		if errors.As(err, &ee) {
			return ee.code
		}
		return 1
	}
	return 0
}

// newRootCommand builds the whole command tree.
func newRootCommand(st streams) *cobra.Command {
	root := &cobra.Command{
		Use:   "dsqlgate",
		Short: "A PostgreSQL gateway for Amazon Aurora DSQL with password logins and pooled IAM-token connections",
		Long: `dsqlgate accepts ordinary PostgreSQL connections (user name and password, TLS,
SCRAM-SHA-256) and serves them from its own pooled connections to Amazon Aurora
DSQL, each authenticated with a freshly minted IAM token. Client sessions move
between upstream connections at safe points, carrying their settings and
prepared statements, so clients never see a token expire or DSQL's 60-minute
connection cap.

Start with 'dsqlgate demo' (no AWS needed), then 'dsqlgate serve -c dsqlgate.yaml'.`,
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       versionString(),
	}
	root.SetVersionTemplate("{{/* the whole line comes from versionLine */}}" + versionLine())
	root.SetIn(st.in)
	root.SetOut(st.out)
	root.SetErr(st.err)
	root.AddCommand(
		newServeCommand(st),
		newCheckCommand(st),
		newDemoCommand(st),
		newEmulateCommand(st),
		newPasswdCommand(st),
		newCertCommand(st),
		newTokenCommand(st),
		newVersionCommand(st),
	)
	return root
}

// versionString is the version of this binary: the one the build stamped
// (make build, the image: -ldflags "-X main.version=..."), else the module
// version go install recorded (v1.2.3), else "dev"; then, when the build
// recorded its VCS state, the revision and whether the tree was modified:
// "v1.2.3", "dev (rev 4e980ad3c2b1, modified)".
func versionString() string {
	bi, _ := debug.ReadBuildInfo()
	return describeVersion(version, bi)
}

// describeVersion is versionString for a stamped version and build info
// (nil when the binary has none).
func describeVersion(stamped string, bi *debug.BuildInfo) string {
	v := stamped
	if v == "" && bi != nil && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		v = bi.Main.Version
	}
	if v == "" {
		v = "dev"
	}
	if bi == nil {
		return v
	}
	var rev string
	var modified bool
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			modified = s.Value == "true"
		}
	}
	if rev == "" || strings.Contains(v, rev[:min(len(rev), 7)]) {
		// No VCS stamp (go install of a module version, -buildvcs=false),
		// or the stamped version already names the commit (git describe).
		return v
	}
	rev = rev[:min(len(rev), 12)]
	if modified {
		return fmt.Sprintf("%s (rev %s, modified)", v, rev)
	}
	return fmt.Sprintf("%s (rev %s)", v, rev)
}

// versionLine is what --version and the version command print.
func versionLine() string {
	goVersion := runtime.Version()
	return fmt.Sprintf("dsqlgate %s %s %s/%s\n", versionString(), goVersion, runtime.GOOS, runtime.GOARCH)
}

func newVersionCommand(st streams) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version (the same as --version)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			fmt.Fprint(st.out, versionLine())
			return nil
		},
	}
}

// newLogger builds the process logger: level debug|info|warn|error, format
// console|json, to w. The level can be changed later through the returned
// AtomicLevel (a reload).
func newLogger(level, format string, w io.Writer) (*zap.Logger, zap.AtomicLevel, error) {
	lvl := zap.NewAtomicLevel()
	if err := lvl.UnmarshalText([]byte(level)); err != nil {
		return nil, lvl, fmt.Errorf("log level %q: %w", level, err)
	}
	encCfg := zap.NewProductionEncoderConfig()
	encCfg.TimeKey = "ts"
	encCfg.EncodeTime = zapcore.ISO8601TimeEncoder
	var enc zapcore.Encoder
	switch format {
	case "json":
		enc = zapcore.NewJSONEncoder(encCfg)
	case "console", "":
		encCfg.EncodeLevel = zapcore.CapitalLevelEncoder
		enc = zapcore.NewConsoleEncoder(encCfg)
	default:
		return nil, lvl, fmt.Errorf("log format %q: want console or json", format)
	}
	return zap.New(zapcore.NewCore(enc, zapcore.AddSync(w), lvl)), lvl, nil
}

// signalContext is cancelled at the first SIGINT or SIGTERM. A second
// SIGINT exits at once.
func signalContext(parent context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(parent)
	ch := make(chan os.Signal, 2)
	signal.Notify(ch, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		defer signal.Stop(ch)
		select {
		case <-ch:
			cancel()
		case <-ctx.Done():
			return
		}
		select {
		case sig := <-ch:
			if sig == syscall.SIGINT {
				os.Exit(130)
			}
		case <-parent.Done():
		}
	}()
	return ctx, cancel
}
