//go:build linux

package main

import (
	"context"
	"crypto/pbkdf2"
	"crypto/sha256"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/dsqlgate/dsqlgate/internal/scramclient"
)

// This file is a minimal PostgreSQL client for the memory and replacement
// tests: plain TCP, SCRAM-SHA-256 only, simple queries. It exists instead
// of pgx so that opening 10,000 connections does not cost 10,000 PBKDF2
// runs: the salted password is computed once per salt and iteration count
// (scramKeys) and reused by every connection of the same user.

// clientConn is one connection from benchrun to a server under test.
// Its methods are for one goroutine at a time.
type clientConn struct {
	conn     net.Conn
	frontend *pgproto3.Frontend
}

// scramKeys caches SaltedPassword for one password, keyed by salt and
// iteration count. The zero value is not usable; use newSCRAMKeys.
type scramKeys struct {
	password string
	mu       sync.Mutex
	salted   map[string][]byte // salt + "/" + iterations → SaltedPassword
}

func newSCRAMKeys(password string) *scramKeys {
	return &scramKeys{password: password, salted: map[string][]byte{}}
}

func (k *scramKeys) saltedPassword(salt []byte, iterations int) ([]byte, error) {
	key := string(salt) + "/" + strconv.Itoa(iterations)
	k.mu.Lock()
	defer k.mu.Unlock()
	if sp, ok := k.salted[key]; ok {
		return sp, nil
	}
	sp, err := pbkdf2.Key(sha256.New, k.password, salt, iterations, sha256.Size)
	if err != nil {
		return nil, err
	}
	k.salted[key] = sp
	return sp, nil
}

// dialClient connects to addr as user to database, authenticates with
// SCRAM-SHA-256 and reads up to the first ReadyForQuery. The caller owns
// the result and must Close it.
func dialClient(ctx context.Context, addr, user, database string, keys *scramKeys) (*clientConn, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	c := &clientConn{conn: conn, frontend: pgproto3.NewFrontend(conn, conn)}
	if deadline, ok := ctx.Deadline(); ok {
		conn.SetDeadline(deadline)
	}
	if err := c.startup(user, database, keys); err != nil {
		conn.Close()
		return nil, fmt.Errorf("log in to %s as %s: %w", addr, user, err)
	}
	conn.SetDeadline(time.Time{})
	return c, nil
}

func (c *clientConn) startup(user, database string, keys *scramKeys) error {
	c.frontend.Send(&pgproto3.StartupMessage{
		ProtocolVersion: pgproto3.ProtocolVersionNumber,
		Parameters:      map[string]string{"user": user, "database": database, "application_name": "benchrun"},
	})
	if err := c.frontend.Flush(); err != nil {
		return err
	}
	var exchange *scramclient.Client
	for {
		msg, err := c.frontend.Receive()
		if err != nil {
			return err
		}
		switch m := msg.(type) {
		case *pgproto3.AuthenticationSASL:
			if !slices.Contains(m.AuthMechanisms, "SCRAM-SHA-256") {
				return fmt.Errorf("server offers %v, not SCRAM-SHA-256", m.AuthMechanisms)
			}
			exchange = &scramclient.Client{Password: keys.password, SaltedPassword: keys.saltedPassword}
			c.frontend.Send(&pgproto3.SASLInitialResponse{AuthMechanism: scramclient.SCRAM, Data: exchange.First()})
		case *pgproto3.AuthenticationSASLContinue:
			if exchange == nil {
				return errors.New("SASLContinue before SASL")
			}
			final, err := exchange.Final(m.Data)
			if err != nil {
				return err
			}
			c.frontend.Send(&pgproto3.SASLResponse{Data: final})
		case *pgproto3.AuthenticationSASLFinal:
			if exchange == nil || exchange.Verify(m.Data) != nil {
				return errors.New("server signature does not match")
			}
			continue
		case *pgproto3.AuthenticationOk, *pgproto3.ParameterStatus, *pgproto3.BackendKeyData, *pgproto3.NoticeResponse:
			continue
		case *pgproto3.ErrorResponse:
			return fmt.Errorf("%s %s: %s", m.Severity, m.Code, m.Message)
		case *pgproto3.ReadyForQuery:
			return nil
		default:
			return fmt.Errorf("unexpected %T during startup", msg)
		}
		if err := c.frontend.Flush(); err != nil {
			return err
		}
	}
}

// queryError is an ErrorResponse a query got.
type queryError struct{ code, message string }

func (e *queryError) Error() string { return e.code + ": " + e.message }

// query runs a simple query and returns the first column of its first row
// ("" when there is none). An ErrorResponse is a *queryError.
func (c *clientConn) query(sql string) (string, error) {
	c.frontend.Send(&pgproto3.Query{String: sql})
	if err := c.frontend.Flush(); err != nil {
		return "", err
	}
	var first string
	var gotRow bool
	var qerr error
	for {
		msg, err := c.frontend.Receive()
		if err != nil {
			return "", err
		}
		switch m := msg.(type) {
		case *pgproto3.DataRow:
			if !gotRow && len(m.Values) > 0 {
				first, gotRow = string(m.Values[0]), true // copied: Values are valid only until the next Receive
			}
		case *pgproto3.ErrorResponse:
			qerr = &queryError{code: m.Code, message: m.Message}
		case *pgproto3.ReadyForQuery:
			return first, qerr
		}
	}
}

// Close sends Terminate and closes the connection.
func (c *clientConn) Close() error {
	c.frontend.Send(&pgproto3.Terminate{})
	c.frontend.Flush()
	return c.conn.Close()
}
