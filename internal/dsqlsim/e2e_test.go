package dsqlsim_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/dsqlgate/dsqlgate/internal/dsqlsim"
	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
)

func TestConnectAndQuery(t *testing.T) {
	e := startEmulator(t, nil)
	for _, negotiation := range []string{"postgres", "direct"} {
		for _, role := range []string{"admin", "app"} {
			t.Run(negotiation+"/"+role, func(t *testing.T) {
				conn := e.connect(t, role, negotiation)
				got := mustQuery(t, conn, "SELECT current_user, current_database(), 40 + 2, pg_backend_pid()")
				want := [][]string{{role, backendDatabase, "42", itoa(conn.PID())}}
				if diff := cmp.Diff(want, got); diff != "" {
					t.Fatalf("query through the emulator (-want +got):\n%s", diff)
				}
				var found bool
				for _, s := range e.Sessions() {
					if s.BackendPID == conn.PID() {
						found = s.Role == role
					}
				}
				if !found {
					t.Fatalf("Sessions() = %+v, want one for backend pid %d as %s", e.Sessions(), conn.PID(), role)
				}
			})
		}
	}
	if got := e.Stats().Authenticated; got != 4 {
		t.Fatalf("Stats().Authenticated = %d, want 4", got)
	}
	caPEM, err := os.ReadFile(e.caFile)
	if err != nil || !bytes.Equal(caPEM, e.CACertPEM()) {
		t.Fatalf("CA file differs from CACertPEM (err %v)", err)
	}
}

func TestRefusedStatements(t *testing.T) {
	e := startEmulator(t, nil)
	conn := e.connect(t, "admin", "direct")

	t.Run("outside a transaction the session goes on", func(t *testing.T) {
		_, err := query(t, conn, "SET statement_timeout = 0")
		pgErr := wantPgError(t, err, "0A000", `setting configuration parameter "statement_timeout" not supported`)
		if pgErr.Position != 0 || pgErr.Severity != "ERROR" {
			t.Fatalf("refusal = %+v, want severity ERROR and no position", pgErr)
		}
		mustQuery(t, conn, "SELECT 1")
	})

	t.Run("inside a transaction it aborts", func(t *testing.T) {
		mustQuery(t, conn, "BEGIN")
		_, err := query(t, conn, "SAVEPOINT a")
		wantPgError(t, err, "0A000", "SAVEPOINT not supported")
		if status := conn.TxStatus(); status != 'E' {
			t.Fatalf("TxStatus = %c, want E", status)
		}
		_, err = query(t, conn, "SELECT 1")
		wantPgError(t, err, "25P02", "current transaction is aborted")
		mustQuery(t, conn, "ROLLBACK")
		mustQuery(t, conn, "SELECT 1")
	})

	t.Run("allowed settings work", func(t *testing.T) {
		mustQuery(t, conn, "SET search_path TO public")
		mustQuery(t, conn, "SET TIME ZONE 'UTC'")
		mustQuery(t, conn, "SET application_name = 'dsqlsim-test'")
		mustQuery(t, conn, "SET enable_seqscan = off")
		mustQuery(t, conn, "RESET ALL")
		mustQuery(t, conn, "DEALLOCATE ALL")
		got := mustQuery(t, conn, "SET LOCAL search_path = x; SHOW search_path")
		if diff := cmp.Diff([][]string{{"x"}}, got); diff != "" {
			t.Fatalf("SHOW search_path (-want +got):\n%s", diff)
		}
	})

	t.Run("multi-statement query stops at the refused statement", func(t *testing.T) {
		mustQuery(t, conn, "CREATE TABLE IF NOT EXISTS multi (a int)") // one DDL statement per transaction, without DML
		mustQuery(t, conn, "DELETE FROM multi")
		ctx := context.Background()
		results, err := conn.Exec(ctx, "INSERT INTO multi VALUES (1); SELECT 'before'; DISCARD ALL; INSERT INTO multi VALUES (2)").ReadAll()
		wantPgError(t, err, "0A000", "DISCARD not supported")
		if len(results) != 2 || string(results[1].Rows[0][0]) != "before" {
			t.Fatalf("got %d results before the error, want 2 ending with 'before'", len(results))
		}
		// The implicit transaction of the query string rolled back, as after
		// any error.
		if got := mustQuery(t, conn, "SELECT count(*) FROM multi"); got[0][0] != "0" {
			t.Fatalf("rows after a failed multi-statement query = %s, want 0", got[0][0])
		}
		_, err = conn.Exec(ctx, "BEGIN; SELECT 1; LISTEN ch; SELECT 2").ReadAll()
		wantPgError(t, err, "0A000", "LISTEN not supported")
		_, err = query(t, conn, "SELECT 1")
		wantPgError(t, err, "25P02", "")
		mustQuery(t, conn, "ROLLBACK")
	})

	t.Run("extended protocol fails at parse", func(t *testing.T) {
		ctx := context.Background()
		_, err := conn.Prepare(ctx, "", "SELECT pg_advisory_lock($1)", nil)
		wantPgError(t, err, "0A000", "function pg_advisory_lock not supported")
		_, err = conn.Prepare(ctx, "named", "TRUNCATE multi", nil)
		wantPgError(t, err, "0A000", "TRUNCATE not supported")
		res := conn.ExecParams(ctx, "SELECT $1::int + 1", [][]byte{[]byte("41")}, nil, nil, nil).Read()
		if res.Err != nil || string(res.Rows[0][0]) != "42" {
			t.Fatalf("ExecParams after a refused Parse: %v %v", res.Err, res.Rows)
		}

		// In a pipeline the backend skips to Sync after the refused Parse.
		pipeline := conn.StartPipeline(ctx)
		pipeline.SendPrepare("p1", "LOCK multi", nil)
		pipeline.SendQueryParams("SELECT 1", nil, nil, nil, nil)
		pipeline.SendPipelineSync()
		pipeline.SendQueryParams("SELECT 2", nil, nil, nil, nil)
		pipeline.SendPipelineSync()
		if err := pipeline.Flush(); err != nil {
			t.Fatalf("flush pipeline: %v", err)
		}
		var got []string
		for {
			r, err := pipeline.GetResults()
			if err != nil {
				var pgErr *pgconn.PgError
				if errors.As(err, &pgErr) {
					got = append(got, pgErr.Code)
					continue
				}
				t.Fatalf("pipeline: %v", err)
			}
			if r == nil {
				break
			}
			switch r := r.(type) {
			case *pgconn.ResultReader:
				res := r.Read()
				if res.Err != nil {
					t.Fatalf("pipeline result: %v", res.Err)
				}
				got = append(got, string(res.Rows[0][0]))
			case *pgconn.PipelineSync:
				got = append(got, "sync")
			}
		}
		if err := pipeline.Close(); err != nil {
			t.Fatalf("close pipeline: %v", err)
		}
		if diff := cmp.Diff([]string{"0A000", "sync", "2", "sync"}, got); diff != "" {
			t.Fatalf("pipeline results (-want +got):\n%s", diff)
		}
	})

	// The real PostgreSQL must see the same statement boundaries as the
	// emulator's lexer: each query returns its first statement's row, then
	// the refusal (a wrong split would be a syntax error instead).
	lexing := []struct{ name, sql, want string }{
		{"e string", `SELECT E'a\';b'; SAVEPOINT x`, "a';b"},
		{"e string continued", "SELECT E'a'\n'\\';'; SAVEPOINT x", "a';"},
		{"standard string", `SELECT 'a\'; SAVEPOINT x`, `a\`},
		{"dollar quote", "SELECT $q$;'$$$q$; SAVEPOINT x", ";'$$"},
		{"nested comment", "SELECT /* ; /* ; */ ; */ 'c' -- ;\n; SAVEPOINT x", "c"},
		{"quoted identifier", `SELECT 'q' AS "a;""b"; SAVEPOINT x`, "q"},
	}
	for _, tt := range lexing {
		t.Run("lexes "+tt.name, func(t *testing.T) {
			results, err := conn.Exec(context.Background(), tt.sql).ReadAll()
			wantPgError(t, err, "0A000", "SAVEPOINT not supported")
			if len(results) != 1 || len(results[0].Rows) != 1 || string(results[0].Rows[0][0]) != tt.want {
				t.Fatalf("results before the refusal = %+v, want one row %q", results, tt.want)
			}
		})
	}

	refused := []struct{ name, sql, message string }{
		{"set transaction", "SET TRANSACTION ISOLATION LEVEL SERIALIZABLE", "SET TRANSACTION not supported"},
		{"set session characteristics", "SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY", "SET SESSION CHARACTERISTICS not supported"},
		{"reset", "RESET lock_timeout", `setting configuration parameter "lock_timeout" not supported`},
		{"discard", "DISCARD PLANS", "DISCARD not supported"},
		{"release", "RELEASE SAVEPOINT a", "RELEASE SAVEPOINT not supported"},
		{"rollback to", "ROLLBACK TO a", "ROLLBACK TO SAVEPOINT not supported"},
		{"prepare", "PREPARE q AS SELECT 1", "PREPARE not supported"},
		{"execute", "EXECUTE q", "EXECUTE not supported"},
		{"deallocate", "DEALLOCATE q", "DEALLOCATE not supported"},
		{"notify", "NOTIFY ch", "NOTIFY not supported"},
		{"unlisten", "UNLISTEN *", "UNLISTEN not supported"},
		{"declare", "DECLARE c CURSOR FOR SELECT 1", "DECLARE CURSOR not supported"},
		{"temp table", "CREATE TEMP TABLE t (a int)", "CREATE TEMPORARY TABLE not supported"},
		{"try advisory lock", "SELECT pg_try_advisory_lock(1)", "function pg_try_advisory_lock not supported"},
	}
	for _, tt := range refused {
		t.Run("refuses "+tt.name, func(t *testing.T) {
			_, err := query(t, conn, tt.sql)
			pgErr := wantPgError(t, err, "0A000", tt.message)
			if strings.Contains(fmt.Sprintf("%+v", *pgErr), "dsqlsim_refused") {
				t.Fatalf("refusal shows its marker: %+v", *pgErr)
			}
		})
	}
	if got := e.Stats().Refused; got < int64(len(refused)) {
		t.Fatalf("Stats().Refused = %d, want at least %d", got, len(refused))
	}
}

func TestStartupRefusals(t *testing.T) {
	clock := &testClock{}
	e := startEmulator(t, func(c *dsqlsim.Config) { c.Now = clock.Now })
	tests := []struct {
		name      string
		configure func(c *pgconn.Config)
		host      string // default dsqlsim.TestHost
		code      string
		message   string
		detail    string
	}{
		{name: "no tls", host: dsqlsim.TestHost, configure: func(c *pgconn.Config) { c.TLSConfig = nil }, code: "28000", message: "TLS is required"},
		{name: "no sni", host: "127.0.0.1", code: "08P01", message: "sni was not received"},
		{name: "unknown sni", host: "unknown.dsql.us-east-1.on.aws", configure: func(c *pgconn.Config) {
			c.TLSConfig.InsecureSkipVerify = true // the certificate does not name it
		}, code: "08P01", message: "unknown server name"},
		{name: "database", configure: func(c *pgconn.Config) { c.Database = "other" }, code: "3D000", message: `database "other" does not exist`},
		{name: "startup parameter", configure: func(c *pgconn.Config) { c.RuntimeParams["statement_timeout"] = "0" },
			code: "0A000", message: `"statement_timeout" not supported`},
		{name: "tampered token", configure: func(c *pgconn.Config) {
			c.Password = strings.Replace(c.Password, "X-Amz-Expires=900", "X-Amz-Expires=901", 1)
		},
			code: "28000", message: "IAM authentication failed", detail: string(dsqlsim.ReasonSignatureMismatch)},
		{name: "user token for admin", configure: func(c *pgconn.Config) {
			c.User = "admin"
			c.Password = dsqlsim.SDKToken(t, dsqlsim.TestHost, dsqlsim.TestRegion, "app", dsqlsim.TestCred, 15*time.Minute)
		}, code: "28000", message: "IAM authentication failed", detail: string(dsqlsim.ReasonAction)},
		{name: "token for another host", configure: func(c *pgconn.Config) {
			c.Password = dsqlsim.SDKToken(t, "other.dsql.us-east-1.on.aws", dsqlsim.TestRegion, "app", dsqlsim.TestCred, 15*time.Minute)
		}, code: "28000", message: "IAM authentication failed", detail: string(dsqlsim.ReasonHost)},
		{name: "no such role", configure: func(c *pgconn.Config) { c.User = "nobody" }, code: "28000", message: `role "nobody" does not exist`},
	}
	var passwords []string // every token sent, to look for in the logs
	for _, negotiation := range []string{"postgres", "direct"} {
		for _, tt := range tests {
			t.Run(negotiation+"/"+tt.name, func(t *testing.T) {
				host := tt.host
				if host == "" {
					host = dsqlsim.TestHost
				}
				cfg := e.connConfig(t, host, "app", negotiation)
				if tt.name == "no tls" {
					cfg.SSLNegotiation = ""
				}
				if tt.configure != nil {
					tt.configure(cfg)
				}
				passwords = append(passwords, cfg.Password)
				_, err := connectConfig(t, cfg)
				pgErr := wantPgError(t, err, tt.code, tt.message)
				if pgErr.Detail != tt.detail {
					t.Fatalf("detail = %q, want %q", pgErr.Detail, tt.detail)
				}
				dsqlsim.AssertNoSecrets(t, fmt.Sprintf("%+v", *pgErr), cfg.Password)
			})
		}
	}

	t.Run("expired token", func(t *testing.T) {
		cfg := e.connConfig(t, dsqlsim.TestHost, "app", "direct")
		passwords = append(passwords, cfg.Password)
		clock.Advance(15*time.Minute + dsqlsim.TestSkew + time.Minute)
		defer clock.Advance(-(15*time.Minute + dsqlsim.TestSkew + time.Minute))
		_, err := connectConfig(t, cfg)
		pgErr := wantPgError(t, err, "28000", "IAM authentication failed")
		if pgErr.Detail != string(dsqlsim.ReasonExpired) {
			t.Fatalf("detail = %q, want %q", pgErr.Detail, dsqlsim.ReasonExpired)
		}
	})

	if got := e.Stats().AuthFailures; got != 2*3+1 {
		t.Fatalf("Stats().AuthFailures = %d, want 7", got)
	}
	// No log line holds a secret key, a token or its signature.
	for _, entry := range e.logs.All() {
		line := entry.Message + fmt.Sprint(entry.ContextMap())
		for _, password := range passwords {
			dsqlsim.AssertNoSecrets(t, line, password)
		}
		if strings.Contains(line, "X-Amz-") {
			t.Fatalf("log line holds token material: %s", line)
		}
	}
}

// TestTLSNegotiation speaks the startup packets by hand: GSSENCRequest is
// refused with 'N' and the client may go on with SSLRequest; direct TLS
// without ALPN is refused; a CancelRequest in clear is dropped.
func TestTLSNegotiation(t *testing.T) {
	e := startEmulator(t, nil)
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(e.CACertPEM())

	t.Run("gssenc then ssl", func(t *testing.T) {
		conn, err := net.Dial("tcp", e.Addr())
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(10 * time.Second))
		for _, req := range []struct {
			code   uint32
			answer byte
		}{{80877104, 'N'}, {80877103, 'S'}} {
			packet := binary.BigEndian.AppendUint32(binary.BigEndian.AppendUint32(nil, 8), req.code)
			if _, err := conn.Write(packet); err != nil {
				t.Fatal(err)
			}
			var answer [1]byte
			if _, err := io.ReadFull(conn, answer[:]); err != nil || answer[0] != req.answer {
				t.Fatalf("answer to %d = %q (%v), want %q", req.code, answer[0], err, req.answer)
			}
		}
		tlsConn := tls.Client(conn, &tls.Config{ServerName: dsqlsim.TestHost, RootCAs: roots})
		if err := tlsConn.Handshake(); err != nil {
			t.Fatalf("tls after SSLRequest: %v", err)
		}
		if v := tlsConn.ConnectionState().Version; v < tls.VersionTLS12 {
			t.Fatalf("TLS version %x", v)
		}
	})

	t.Run("direct tls without alpn", func(t *testing.T) {
		conn, err := tls.Dial("tcp", e.Addr(), &tls.Config{ServerName: dsqlsim.TestHost, RootCAs: roots})
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(10 * time.Second))
		msg := readBackendMessage(t, conn)
		if er, ok := msg.(*pgproto3.ErrorResponse); !ok || er.Code != "08P01" || !strings.Contains(er.Message, "ALPN") {
			t.Fatalf("got %#v, want FATAL 08P01 about ALPN", msg)
		}
	})

	direct := func(t *testing.T) *tls.Conn {
		t.Helper()
		conn, err := tls.Dial("tcp", e.Addr(), &tls.Config{ServerName: dsqlsim.TestHost, RootCAs: roots, NextProtos: []string{"postgresql"}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		conn.SetDeadline(time.Now().Add(10 * time.Second))
		return conn
	}

	t.Run("protocol 3.2 is negotiated down", func(t *testing.T) {
		conn := direct(t)
		frontend := pgproto3.NewFrontend(conn, conn)
		frontend.Send(&pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersion32,
			Parameters: map[string]string{"user": "app", "database": "postgres", "_pq_.test": "1"}})
		if err := frontend.Flush(); err != nil {
			t.Fatal(err)
		}
		msg, err := frontend.Receive()
		if nv, ok := msg.(*pgproto3.NegotiateProtocolVersion); err != nil || !ok || nv.NewestMinorProtocol != 0 ||
			!cmp.Equal(nv.UnrecognizedOptions, []string{"_pq_.test"}) {
			t.Fatalf("got %#v (%v), want NegotiateProtocolVersion 3.0 naming _pq_.test", msg, err)
		}
		if msg, err := frontend.Receive(); err != nil {
			t.Fatal(err)
		} else if _, ok := msg.(*pgproto3.AuthenticationCleartextPassword); !ok {
			t.Fatalf("got %#v, want AuthenticationCleartextPassword", msg)
		}
		frontend.Send(&pgproto3.PasswordMessage{Password: dsqlsim.SDKToken(t, dsqlsim.TestHost, dsqlsim.TestRegion, "app", dsqlsim.TestCred, time.Minute)})
		if err := frontend.Flush(); err != nil {
			t.Fatal(err)
		}
		for {
			msg, err := frontend.Receive()
			if err != nil {
				t.Fatal(err)
			}
			if _, ok := msg.(*pgproto3.ReadyForQuery); ok {
				break
			}
			if er, ok := msg.(*pgproto3.ErrorResponse); ok {
				t.Fatalf("startup failed: %s %s", er.Code, er.Message)
			}
		}
		frontend.Send(&pgproto3.Terminate{})
		frontend.Flush()
	})

	t.Run("cancel with an unknown key is dropped", func(t *testing.T) {
		conn := direct(t)
		msg, _ := (&pgproto3.CancelRequest{ProcessID: 1, SecretKey: []byte{1, 2, 3, 4}}).Encode(nil)
		if _, err := conn.Write(msg); err != nil {
			t.Fatal(err)
		}
		if rest, err := io.ReadAll(conn); err != nil || len(rest) != 0 {
			t.Fatalf("after a cancel request got %q, %v; want a quiet close", rest, err)
		}
		if got := e.Stats().Cancels; got != 0 {
			t.Fatalf("Stats().Cancels = %d, want 0", got)
		}
	})

	t.Run("tls 1.1 refused", func(t *testing.T) {
		_, err := tls.Dial("tcp", e.Addr(), &tls.Config{ServerName: dsqlsim.TestHost, RootCAs: roots, NextProtos: []string{"postgresql"},
			MaxVersion: tls.VersionTLS11})
		if err == nil {
			t.Fatal("TLS 1.1 handshake succeeded")
		}
	})
}

func readBackendMessage(t *testing.T, conn net.Conn) pgproto3.BackendMessage {
	t.Helper()
	frontend := pgproto3.NewFrontend(conn, io.Discard)
	msg, err := frontend.Receive()
	if err != nil {
		t.Fatalf("receive: %v", err)
	}
	return msg
}

func TestConnectionLimits(t *testing.T) {
	t.Run("rate", func(t *testing.T) {
		e := startEmulator(t, func(c *dsqlsim.Config) { c.ConnRate = 1e-6; c.ConnBurst = 2 })
		e.connect(t, "app", "direct")
		e.connect(t, "app", "postgres")
		_, err := connectConfig(t, e.connConfig(t, dsqlsim.TestHost, "app", "direct"))
		wantPgError(t, err, "53400", "Unable to accept connection, rate exceeded.")
		if got := e.Stats().RateLimited; got != 1 {
			t.Fatalf("Stats().RateLimited = %d, want 1", got)
		}
	})
	t.Run("open connections", func(t *testing.T) {
		e := startEmulator(t, func(c *dsqlsim.Config) { c.MaxConns = 1 })
		first := e.connect(t, "app", "direct")
		_, err := connectConfig(t, e.connConfig(t, dsqlsim.TestHost, "app", "direct"))
		wantPgError(t, err, "53300", "Unable to accept connection, too many open connections.")
		first.Close(context.Background())
		waitFor(t, "the first connection to close", func() bool { return e.Stats().Open == 0 })
		e.connect(t, "app", "direct")
		if got := e.Stats().ConnLimited; got != 1 {
			t.Fatalf("Stats().ConnLimited = %d, want 1", got)
		}
	})
}

// wantClosedAbruptly fails unless the connection is gone without an
// ErrorResponse: a query fails with a network error, not a PostgreSQL one.
func wantClosedAbruptly(t *testing.T, conn *pgconn.PgConn) {
	t.Helper()
	_, err := query(t, conn, "SELECT 1")
	if err == nil {
		t.Fatal("query on a closed session succeeded")
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		t.Fatalf("closed session answered with a PostgreSQL error %v, want a plain close", pgErr)
	}
}

func TestMaxConnDuration(t *testing.T) {
	t.Run("two seconds", func(t *testing.T) {
		e := startEmulator(t, func(c *dsqlsim.Config) { c.MaxConnDuration = 2 * time.Second })
		conn := e.connect(t, "app", "direct")
		mustQuery(t, conn, "SELECT 1")
		waitFor(t, "the session to expire", func() bool { return e.Stats().Expired == 1 })
		wantClosedAbruptly(t, conn)
	})
	t.Run("changed at run time on the injected clock", func(t *testing.T) {
		clock := &testClock{}
		e := startEmulator(t, func(c *dsqlsim.Config) { c.Now = clock.Now })
		conn := e.connect(t, "app", "postgres")
		clock.Advance(59 * time.Minute)
		time.Sleep(3 * dsqlsim.ReapInterval)
		mustQuery(t, conn, "SELECT 1") // 59 minutes old: alive
		e.SetMaxConnDuration(30 * time.Minute)
		waitFor(t, "the session to expire", func() bool { return e.Stats().Expired == 1 })
		wantClosedAbruptly(t, conn)
	})
}

// TestMaxConnDurationLetsTransactionsFinish: as on DSQL, a transaction
// that began before the cap runs on until it ends (or reaches the
// transaction age limit); then the connection closes.
func TestMaxConnDurationLetsTransactionsFinish(t *testing.T) {
	clock := &testClock{}
	e := startEmulator(t, func(c *dsqlsim.Config) {
		c.Now = clock.Now
		c.MaxConnDuration = time.Hour
		c.MaxTxnDuration = 5 * time.Minute
	})
	// inTransactionPastCap connects, starts a transaction at minute 59 and
	// moves the clock to minute 61, where an idle session would be closed.
	inTransactionPastCap := func(t *testing.T) *pgconn.PgConn {
		clock.Reset() // the Go SDK signs on the real clock
		conn := e.connect(t, "app", "direct")
		clock.Advance(59 * time.Minute)
		mustQuery(t, conn, "BEGIN")
		clock.Advance(2 * time.Minute)
		time.Sleep(3 * dsqlsim.ReapInterval)
		mustQuery(t, conn, "SELECT 1")
		return conn
	}
	t.Run("until the transaction ends", func(t *testing.T) {
		conn := inTransactionPastCap(t)
		before := e.Stats().Expired
		mustQuery(t, conn, "COMMIT")
		waitFor(t, "the session to expire after COMMIT", func() bool { return e.Stats().Expired == before+1 })
		wantClosedAbruptly(t, conn)
	})
	t.Run("until the transaction limit", func(t *testing.T) {
		conn := inTransactionPastCap(t)
		before := e.Stats().Expired
		clock.Advance(3 * time.Minute) // the transaction is 5 minutes old
		waitFor(t, "the session to expire at the transaction limit", func() bool { return e.Stats().Expired == before+1 })
		wantClosedAbruptly(t, conn)
	})
}

func TestKill(t *testing.T) {
	e := startEmulator(t, nil)
	var conns []*pgconn.PgConn
	for i := 0; i < 3; i++ {
		conns = append(conns, e.connect(t, "app", "direct"))
	}
	sessions := e.Sessions()
	if len(sessions) != 3 {
		t.Fatalf("Sessions() = %+v, want 3", sessions)
	}
	if !e.Kill(sessions[0].ID) {
		t.Fatalf("Kill(%d) = false", sessions[0].ID)
	}
	if e.Kill(sessions[0].ID) {
		t.Fatalf("second Kill(%d) = true", sessions[0].ID)
	}
	wantClosedAbruptly(t, conns[0])
	mustQuery(t, conns[1], "SELECT 1")
	if n := e.KillOlderThan(time.Hour); n != 0 {
		t.Fatalf("KillOlderThan(1h) = %d, want 0", n)
	}
	if n := e.KillAll(); n != 2 {
		t.Fatalf("KillAll() = %d, want 2", n)
	}
	wantClosedAbruptly(t, conns[1])
	wantClosedAbruptly(t, conns[2])
	waitFor(t, "sessions to go", func() bool { return len(e.Sessions()) == 0 })
	if got := e.Stats().Killed; got != 3 {
		t.Fatalf("Stats().Killed = %d, want 3", got)
	}
}

func TestCopy(t *testing.T) {
	e := startEmulator(t, func(c *dsqlsim.Config) { c.MaxTxnRows = 10000 }) // 5000 rows in one COPY
	conn := e.connect(t, "admin", "direct")
	mustQuery(t, conn, "DROP TABLE IF EXISTS copytest") // one DDL statement per transaction
	mustQuery(t, conn, "CREATE TABLE copytest (id int, name text)")
	var in bytes.Buffer
	for i := 0; i < 5000; i++ {
		fmt.Fprintf(&in, "%d\tname %d with a tab\\tand a newline\\n\n", i, i)
	}
	ctx := context.Background()
	tag, err := conn.CopyFrom(ctx, bytes.NewReader(in.Bytes()), "COPY copytest FROM STDIN")
	if err != nil || tag.RowsAffected() != 5000 {
		t.Fatalf("COPY FROM STDIN: %v, %v", tag, err)
	}
	var out bytes.Buffer
	if _, err := conn.CopyTo(ctx, &out, "COPY (SELECT * FROM copytest ORDER BY id) TO STDOUT"); err != nil {
		t.Fatalf("COPY TO STDOUT: %v", err)
	}
	if !bytes.Equal(in.Bytes(), out.Bytes()) {
		t.Fatalf("COPY round trip differs: sent %d bytes, got %d", in.Len(), out.Len())
	}
	// A COPY that fails halfway leaves the session usable.
	_, err = conn.CopyFrom(ctx, strings.NewReader("1\tx\nnot a number\ty\n"), "COPY copytest FROM STDIN")
	wantPgError(t, err, "22P02", "")
	mustQuery(t, conn, "SELECT 1")
}

func TestCancel(t *testing.T) {
	e := startEmulator(t, nil)
	for _, negotiation := range []string{"postgres", "direct"} {
		t.Run(negotiation, func(t *testing.T) {
			conn := e.connect(t, "app", negotiation)
			before := e.Stats().Cancels
			done := make(chan error, 1)
			go func() {
				_, err := conn.Exec(context.Background(), "SELECT pg_sleep(30)").ReadAll()
				done <- err
			}()
			// Send the cancel until the sleep is seen to be running.
			time.Sleep(200 * time.Millisecond)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := conn.CancelRequest(ctx); err != nil {
				t.Fatalf("CancelRequest: %v", err)
			}
			select {
			case err := <-done:
				wantPgError(t, err, "57014", "canceling statement due to user request")
			case <-time.After(10 * time.Second):
				t.Fatal("pg_sleep was not cancelled")
			}
			if got := e.Stats().Cancels; got != before+1 {
				t.Fatalf("Stats().Cancels = %d, want %d", got, before+1)
			}
			mustQuery(t, conn, "SELECT 1")
		})
	}
}

func TestCloseEndsSessions(t *testing.T) {
	e := startEmulator(t, nil)
	conn := e.connect(t, "app", "direct")
	if err := e.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := e.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	wantClosedAbruptly(t, conn)
	if _, err := net.DialTimeout("tcp", e.Addr(), time.Second); err == nil {
		t.Fatal("still listening after Close")
	}
}

func TestStartValidatesConfig(t *testing.T) {
	_, err := dsqlsim.Start(context.Background(), dsqlsim.Config{})
	if err == nil {
		t.Fatal("dsqlsim.Start with an empty config succeeded")
	}
	for _, field := range []string{"region", "hostnames", "credentials", "backend socket dir", "backend port"} {
		if !strings.Contains(err.Error(), field) {
			t.Errorf("error %q does not name %s", err, field)
		}
	}
}
