// Package pgtest starts a private PostgreSQL cluster in a temporary
// directory for tests, the demo and the benchmarks, and finds free loopback
// ports. It depends on no other package of the project, so any package's
// tests can use it.
//
// Nothing here is a mock. A PostgreSQL started by StartPostgres is a real
// server (initdb into a fresh directory, a free port, its unix socket in the
// same directory) that is removed again by Close. When the process runs as
// root, initdb and postgres run as the "postgres" user through runuser, because
// both refuse to run as root.
//
// Production code other than the demo command must not import this package.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// PostgresOptions tunes StartPostgres. The zero value is usable.
type PostgresOptions struct {
	// BinDir holds initdb and postgres. Empty means $PG_BIN, then the newest
	// /usr/lib/postgresql/*/bin, then $PATH.
	BinDir string
	// MaxConnections is postgres' max_connections; 0 means 300.
	MaxConnections int
	// ExtraConfig is appended to postgresql.conf, one setting per entry
	// ("log_statement = 'all'").
	ExtraConfig []string
	// LogOutput receives the server's log; nil discards it.
	LogOutput *os.File
}

// Postgres is a running private PostgreSQL cluster. Its superuser is
// "postgres" with the random password Password; TCP connections from loopback
// need that password (scram-sha-256), unix socket connections are trusted.
type Postgres struct {
	Host       string // "127.0.0.1"
	Port       int
	SocketDir  string // holds .s.PGSQL.<Port>
	User       string // "postgres"
	Password   string
	DataDir    string
	dir        string
	binDir     string
	cmd        *exec.Cmd
	done       chan struct{}
	waitErr    error
	closeOnce  sync.Once
	asPostgres bool
}

// StartPostgres initialises and starts a new cluster and waits until it
// accepts connections. The caller owns the result and must Close it.
func StartPostgres(ctx context.Context, opts PostgresOptions) (*Postgres, error) {
	binDir, err := findBinDir(opts.BinDir)
	if err != nil {
		return nil, err
	}
	p := &Postgres{Host: "127.0.0.1", User: "postgres", binDir: binDir, done: make(chan struct{})}
	p.asPostgres = os.Geteuid() == 0

	p.dir, err = os.MkdirTemp("", "dsqlgate-pg-")
	if err != nil {
		return nil, fmt.Errorf("make temp dir: %w", err)
	}
	ok := false
	defer func() {
		if !ok {
			os.RemoveAll(p.dir)
		}
	}()
	if p.asPostgres {
		u, err := user.Lookup("postgres")
		if err != nil {
			return nil, fmt.Errorf("running as root needs a postgres user: %w", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		if err := os.Chown(p.dir, uid, gid); err != nil {
			return nil, fmt.Errorf("chown temp dir: %w", err)
		}
	}
	p.DataDir = filepath.Join(p.dir, "data")
	p.SocketDir = p.dir
	p.Password = RandomHex(16)

	pwFile := filepath.Join(p.dir, "pwfile")
	if err := p.writeOwned(pwFile, p.Password+"\n"); err != nil {
		return nil, err
	}
	initdb := p.command(ctx, "initdb", "-D", p.DataDir, "-U", "postgres", "--pwfile="+pwFile,
		"--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8", "--locale=C", "--no-sync")
	if out, err := initdb.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("initdb: %w\n%s", err, out)
	}
	os.Remove(pwFile)

	maxConns := opts.MaxConnections
	if maxConns == 0 {
		maxConns = 300
	}
	conf := []string{
		"listen_addresses = '127.0.0.1'",
		fmt.Sprintf("unix_socket_directories = '%s'", p.SocketDir),
		fmt.Sprintf("max_connections = %d", maxConns),
		"fsync = off",
		"synchronous_commit = off",
		"full_page_writes = off",
		"shared_buffers = 64MB",
		"password_encryption = 'scram-sha-256'",
	}
	conf = append(conf, opts.ExtraConfig...)
	f, err := os.OpenFile(filepath.Join(p.DataDir, "postgresql.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return nil, fmt.Errorf("open postgresql.conf: %w", err)
	}
	_, err = f.WriteString("\n" + strings.Join(conf, "\n") + "\n")
	f.Close()
	if err != nil {
		return nil, fmt.Errorf("write postgresql.conf: %w", err)
	}

	// A free port can be taken by someone else between FreePort and the
	// server's bind; retry a few times when that happens.
	for attempt := 0; ; attempt++ {
		p.Port, err = FreePort()
		if err != nil {
			return nil, err
		}
		err = p.start(ctx, opts.LogOutput)
		if err == nil {
			break
		}
		if attempt == 4 || ctx.Err() != nil {
			return nil, err
		}
	}
	ok = true
	return p, nil
}

func (p *Postgres) start(ctx context.Context, logOut *os.File) error {
	p.done = make(chan struct{})
	cmd := p.command(context.Background(), "postgres", "-D", p.DataDir, "-p", strconv.Itoa(p.Port))
	if logOut != nil { // a nil *os.File in an io.Writer is not a nil Writer
		cmd.Stdout = logOut
		cmd.Stderr = logOut
	}
	ownGroup(cmd)
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start postgres: %w", err)
	}
	p.cmd = cmd
	go func() {
		p.waitErr = cmd.Wait()
		close(p.done)
	}()
	sock := filepath.Join(p.SocketDir, fmt.Sprintf(".s.PGSQL.%d", p.Port))
	deadline := time.Now().Add(60 * time.Second)
	for {
		if _, err := os.Stat(sock); err == nil {
			if c, err := net.DialTimeout("tcp", p.Addr(), time.Second); err == nil {
				c.Close()
				if p.ready(ctx) {
					return nil
				}
			}
		}
		select {
		case <-p.done:
			return fmt.Errorf("postgres exited during start: %v", p.waitErr)
		case <-ctx.Done():
			p.stop()
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			p.stop()
			return errors.New("postgres did not become ready within 60s")
		}
	}
}

// ready asks pg_isready, which reports "accepting connections" only after
// recovery has finished.
func (p *Postgres) ready(ctx context.Context) bool {
	cmd := exec.CommandContext(ctx, filepath.Join(p.binDir, "pg_isready"), "-h", p.SocketDir, "-p", strconv.Itoa(p.Port), "-U", "postgres", "-q")
	return cmd.Run() == nil
}

// Addr is host:port for TCP clients.
func (p *Postgres) Addr() string { return net.JoinHostPort(p.Host, strconv.Itoa(p.Port)) }

// SocketDSN is a libpq keyword/value string that connects over the unix
// socket as the superuser (trusted, no password).
func (p *Postgres) SocketDSN(database string) string {
	return fmt.Sprintf("host=%s port=%d user=postgres dbname=%s sslmode=disable", p.SocketDir, p.Port, database)
}

// URL is a postgres:// URL that connects over TCP with the superuser's password.
func (p *Postgres) URL(database string) string {
	return fmt.Sprintf("postgres://postgres:%s@%s/%s?sslmode=disable", p.Password, p.Addr(), database)
}

// Psql runs psql over the unix socket as the superuser with the given
// arguments and returns its combined output. ON_ERROR_STOP is set.
func (p *Postgres) Psql(ctx context.Context, database string, args ...string) (string, error) {
	all := append([]string{"-X", "-v", "ON_ERROR_STOP=1", "-h", p.SocketDir, "-p", strconv.Itoa(p.Port), "-U", "postgres", "-d", database}, args...)
	out, err := exec.CommandContext(ctx, filepath.Join(p.binDir, "psql"), all...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("psql %s: %w\n%s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// BinDir is the directory holding the server programs (psql, pgbench, ...).
func (p *Postgres) BinDir() string { return p.binDir }

// Close stops the server (fast shutdown, then SIGKILL after 10 s) and removes
// its directory. It is safe to call more than once.
func (p *Postgres) Close() error {
	p.closeOnce.Do(func() {
		p.stop()
		os.RemoveAll(p.dir)
	})
	return nil
}

func (p *Postgres) stop() {
	if p.cmd == nil || p.cmd.Process == nil {
		return
	}
	interruptGroup(p.cmd.Process)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		killGroup(p.cmd.Process)
		<-p.done
	}
}

func (p *Postgres) command(ctx context.Context, prog string, args ...string) *exec.Cmd {
	path := filepath.Join(p.binDir, prog)
	if p.asPostgres {
		return exec.CommandContext(ctx, "runuser", append([]string{"-u", "postgres", "--", path}, args...)...)
	}
	return exec.CommandContext(ctx, path, args...)
}

func (p *Postgres) writeOwned(path, content string) error {
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		return err
	}
	if p.asPostgres {
		u, err := user.Lookup("postgres")
		if err != nil {
			return err
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		return os.Chown(path, uid, gid)
	}
	return nil
}

func findBinDir(dir string) (string, error) {
	if dir == "" {
		dir = os.Getenv("PG_BIN")
	}
	if dir == "" {
		matches, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
		sort.Slice(matches, func(i, j int) bool { return versionOf(matches[i]) > versionOf(matches[j]) })
		if len(matches) > 0 {
			dir = matches[0]
		}
	}
	if dir == "" {
		path, err := exec.LookPath("initdb")
		if err != nil {
			return "", errors.New("no PostgreSQL server binaries: install postgresql or set PG_BIN")
		}
		dir = filepath.Dir(path)
	}
	for _, prog := range []string{"initdb", "postgres"} {
		if _, err := os.Stat(filepath.Join(dir, prog)); err != nil {
			return "", fmt.Errorf("no %s in %s: install postgresql or set PG_BIN", prog, dir)
		}
	}
	return dir, nil
}

func versionOf(binDir string) int {
	v, _ := strconv.Atoi(filepath.Base(filepath.Dir(binDir)))
	return v
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// RandomHex returns 2n random hex digits.
func RandomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}
