package main

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
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
	var exchange *scramExchange
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
			exchange = newSCRAMExchange()
			c.frontend.Send(&pgproto3.SASLInitialResponse{AuthMechanism: "SCRAM-SHA-256", Data: exchange.clientFirst()})
		case *pgproto3.AuthenticationSASLContinue:
			if exchange == nil {
				return errors.New("SASLContinue before SASL")
			}
			final, err := exchange.clientFinal(m.Data, keys)
			if err != nil {
				return err
			}
			c.frontend.Send(&pgproto3.SASLResponse{Data: final})
		case *pgproto3.AuthenticationSASLFinal:
			if exchange == nil || !exchange.verifyServerFinal(m.Data) {
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

// scramExchange is the client side of one SCRAM-SHA-256 exchange without
// channel binding (RFC 5802, RFC 7677).
type scramExchange struct {
	clientNonce     string
	clientFirstBare string
	authMessage     string
	serverKey       []byte
}

func newSCRAMExchange() *scramExchange {
	b := make([]byte, 18)
	rand.Read(b)
	nonce := base64.StdEncoding.EncodeToString(b)
	// PostgreSQL ignores the user name in the exchange; libpq sends "".
	return &scramExchange{clientNonce: nonce, clientFirstBare: "n=,r=" + nonce}
}

func (x *scramExchange) clientFirst() []byte { return []byte("n,," + x.clientFirstBare) }

// clientFinal answers server-first-message "r=<nonce>,s=<salt>,i=<iterations>".
func (x *scramExchange) clientFinal(serverFirst []byte, keys *scramKeys) ([]byte, error) {
	var nonce, salt64 string
	iterations := 0
	for _, attr := range strings.Split(string(serverFirst), ",") {
		k, v, ok := strings.Cut(attr, "=")
		if !ok {
			continue
		}
		switch k {
		case "r":
			nonce = v
		case "s":
			salt64 = v
		case "i":
			iterations, _ = strconv.Atoi(v)
		}
	}
	if !strings.HasPrefix(nonce, x.clientNonce) || len(nonce) == len(x.clientNonce) || iterations < 1 {
		return nil, fmt.Errorf("malformed server-first-message %q", serverFirst)
	}
	salt, err := base64.StdEncoding.DecodeString(salt64)
	if err != nil {
		return nil, fmt.Errorf("malformed salt: %w", err)
	}
	salted, err := keys.saltedPassword(salt, iterations)
	if err != nil {
		return nil, err
	}
	clientKey := hmacSHA256(salted, "Client Key")
	storedKey := sha256.Sum256(clientKey)
	withoutProof := "c=biws,r=" + nonce
	x.authMessage = x.clientFirstBare + "," + string(serverFirst) + "," + withoutProof
	signature := hmacSHA256(storedKey[:], x.authMessage)
	proof := make([]byte, len(clientKey))
	for i := range proof {
		proof[i] = clientKey[i] ^ signature[i]
	}
	x.serverKey = hmacSHA256(salted, "Server Key")
	return []byte(withoutProof + ",p=" + base64.StdEncoding.EncodeToString(proof)), nil
}

// verifyServerFinal checks server-final-message "v=<signature>".
func (x *scramExchange) verifyServerFinal(serverFinal []byte) bool {
	v, ok := bytes.CutPrefix(serverFinal, []byte("v="))
	if !ok || x.serverKey == nil {
		return false
	}
	want := base64.StdEncoding.EncodeToString(hmacSHA256(x.serverKey, x.authMessage))
	return hmac.Equal(bytes.TrimSpace(v), []byte(want))
}

func hmacSHA256(key []byte, msg string) []byte {
	h := hmac.New(sha256.New, key)
	h.Write([]byte(msg))
	return h.Sum(nil)
}
