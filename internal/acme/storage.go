package acme

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	mrand "math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/certmagic"
	"github.com/jackc/pgerrcode"
	"github.com/jackc/pgx/v5/pgconn"
	"go.uber.org/zap"

	"github.com/dsqlgate/dsqlgate/internal/compat"
)

// DialFunc opens a connection to the cluster that holds a TableStorage's
// tables, logged in (authbridge's Route.DialLocks, with the route's
// credentials, TLS and dial rate).
type DialFunc func(ctx context.Context) (*pgconn.PgConn, error)

// TableStorage is a certmagic.Storage kept in two tables on a PostgreSQL or
// Aurora DSQL cluster, so that every gateway in front of the cluster shares
// one ACME account, one certificate and the locks that keep them from
// ordering it twice:
//
//	<table>       (key text PRIMARY KEY, value bytea, modified timestamptz)
//	<table>_locks (name text PRIMARY KEY, owner text, expires_at timestamptz)
//
// certmagic's keys are paths ("certificates/<ca>/<domain>/<domain>.crt");
// a "directory" is a prefix ending in "/", found by comparing the start of
// each key. Values are small (certificates, keys, JSON), far below DSQL's
// row and transaction limits.
//
// It is written for DSQL's rules: every statement runs alone in its own
// autocommit transaction (no transaction spans two statements, so no
// decision rests on an earlier read); each table is created by one DDL
// statement of its own, retried when another gateway creates it at the same
// moment; no sequence, trigger or foreign key; a statement that loses an
// optimistic-concurrency check (40001, OC000, OC001) wrote nothing and is
// run again after a jittered pause, up to storageConflictRetries times; a
// prefix delete goes in batches of at most storageDeleteBatch rows (DSQL
// changes at most 3,000 rows per transaction).
//
// A lock is a row with an owner and an expiry by the database's clock:
// Lock takes it when it is absent (INSERT) or expired (UPDATE ... WHERE
// expires_at < now()), polls with backoff while another owner holds it, and
// extends it every third of lockLease while held, so a gateway that dies
// frees its locks after the lease. Unlock deletes the row only where the
// owner is its own.
//
// Statements run one at a time on the storage's own connection, dialled
// on first use and replaced when it fails or grows old (DSQL closes a
// connection after an hour). Safe for concurrent use.
type TableStorage struct {
	dial  DialFunc
	log   *zap.Logger
	table string // as configured, for messages
	sql   storageSQL

	sem      chan struct{} // capacity 1: the right to use conn
	conn     *pgconn.PgConn
	connBorn time.Time
	ready    bool // the tables exist
	closed   bool // Close ran: nothing is dialled any more

	conflicts atomic.Int64 // statements that lost a write conflict and were run again

	mu    sync.Mutex
	held  map[string]*heldLock // by lock name: the locks this process holds
	owner string               // this process's prefix of lock owners
}

// heldLock is a lock this process holds: its owner token and the
// goroutine that extends it.
type heldLock struct {
	owner string
	stop  context.CancelFunc
	done  chan struct{}
}

// Bounds of the table storage.
const (
	// storageStatementTimeout bounds each statement, a dial included.
	storageStatementTimeout = 15 * time.Second
	// storageConnAge is when the connection is replaced: before DSQL's
	// 60 minutes.
	storageConnAge = 50 * time.Minute
	// A statement that lost a write conflict is repeated up to
	// storageConflictRetries times, after jittered pauses doubling from
	// storageConflictPause up to storageConflictPauseMax.
	storageConflictRetries  = 10
	storageConflictPause    = 10 * time.Millisecond
	storageConflictPauseMax = 500 * time.Millisecond
	// storageCreateWait bounds the retries of the tables' creation.
	storageCreateWait = 20 * time.Second
	// storageDeleteBatch is the most rows one DELETE removes.
	storageDeleteBatch = 1000
	// storageListMax is the most keys List returns (certmagic keeps a
	// few files per certificate).
	storageListMax = 100000
	// lockLease is how long a lock row lasts without renewal; it is
	// extended every third of it.
	lockLease = 30 * time.Second
	// Lock polls a held lock from lockPollMin, doubling up to lockPollMax.
	lockPollMin = 100 * time.Millisecond
	lockPollMax = 2 * time.Second
)

// NewTableStorage returns a storage in table (and table_locks) on the
// cluster dial reaches. table is [schema.]name in lower case (validated by
// config). Nothing is dialled until first use.
func NewTableStorage(dial DialFunc, table string, log *zap.Logger) *TableStorage {
	if log == nil {
		log = zap.NewNop()
	}
	var b [8]byte
	rand.Read(b[:])
	return &TableStorage{
		dial:  dial,
		log:   log,
		table: table,
		sql:   newStorageSQL(table),
		sem:   make(chan struct{}, 1),
		held:  map[string]*heldLock{},
		owner: hex.EncodeToString(b[:]),
	}
}

// storageSQL holds the statements for one table.
type storageSQL struct {
	createData, createLocks                   string
	store, load, stat, exists, list, del, dir string
	take, insert, renew, release              string
}

func newStorageSQL(table string) storageSQL {
	t, l := quoteTable(table), quoteTable(table+"_locks")
	until := fmt.Sprintf("now() + interval '%d milliseconds'", lockLease.Milliseconds())
	// $2 of the prefix statements is the key followed by "/".
	prefix := "substr(key, 1, char_length($2::text)) = $2::text"
	return storageSQL{
		createData: "CREATE TABLE IF NOT EXISTS " + t +
			" (key text NOT NULL PRIMARY KEY, value bytea NOT NULL, modified timestamptz NOT NULL)",
		createLocks: "CREATE TABLE IF NOT EXISTS " + l +
			" (name text NOT NULL PRIMARY KEY, owner text NOT NULL, expires_at timestamptz NOT NULL)",
		store: "INSERT INTO " + t + " (key, value, modified) VALUES ($1::text, $2::bytea, now()) " +
			"ON CONFLICT (key) DO UPDATE SET value = excluded.value, modified = excluded.modified",
		load:   "SELECT value FROM " + t + " WHERE key = $1::text",
		stat:   "SELECT octet_length(value), modified FROM " + t + " WHERE key = $1::text",
		exists: "SELECT 1 FROM " + t + " WHERE key = $1::text OR " + prefix + " LIMIT 1",
		list:   "SELECT key FROM " + t + " WHERE $1::text = '' OR substr(key, 1, char_length($1::text)) = $1::text ORDER BY key LIMIT " + fmt.Sprint(storageListMax+1),
		del:    "DELETE FROM " + t + " WHERE key = $1::text",
		dir: "DELETE FROM " + t + " WHERE key IN (SELECT key FROM " + t +
			" WHERE substr(key, 1, char_length($1::text)) = $1::text LIMIT " + fmt.Sprint(storageDeleteBatch) + ")",
		take: "UPDATE " + l + " SET owner = $2::text, expires_at = " + until +
			" WHERE name = $1::text AND expires_at < now()",
		insert:  "INSERT INTO " + l + " (name, owner, expires_at) VALUES ($1::text, $2::text, " + until + ")",
		renew:   "UPDATE " + l + " SET expires_at = " + until + " WHERE name = $1::text AND owner = $2::text",
		release: "DELETE FROM " + l + " WHERE name = $1::text AND owner = $2::text",
	}
}

// quoteTable quotes a [schema.]table name as identifiers.
func quoteTable(name string) string {
	parts := strings.Split(name, ".")
	for i, p := range parts {
		parts[i] = `"` + strings.ReplaceAll(p, `"`, `""`) + `"`
	}
	return strings.Join(parts, ".")
}

var _ certmagic.Storage = (*TableStorage)(nil)

// Store puts value at key, replacing what was there.
func (s *TableStorage) Store(ctx context.Context, key string, value []byte) error {
	if _, err := s.exec(ctx, s.sql.store, key, value); err != nil {
		return fmt.Errorf("acme storage: store %s: %w", key, err)
	}
	return nil
}

// Load returns the value at key, or an error wrapping fs.ErrNotExist.
func (s *TableStorage) Load(ctx context.Context, key string) ([]byte, error) {
	res, err := s.exec(ctx, s.sql.load, key)
	if err != nil {
		return nil, fmt.Errorf("acme storage: load %s: %w", key, err)
	}
	if len(res.Rows) == 0 {
		return nil, fmt.Errorf("acme storage: load %s: %w", key, fs.ErrNotExist)
	}
	return res.Rows[0][0], nil
}

// Delete removes key and, when key is a directory, every key under it. A
// key that does not exist is no error.
func (s *TableStorage) Delete(ctx context.Context, key string) error {
	if _, err := s.exec(ctx, s.sql.del, key); err != nil {
		return fmt.Errorf("acme storage: delete %s: %w", key, err)
	}
	dir := strings.TrimSuffix(key, "/") + "/"
	for range storageListMax/storageDeleteBatch + 1 {
		res, err := s.exec(ctx, s.sql.dir, dir)
		if err != nil {
			return fmt.Errorf("acme storage: delete %s: %w", dir, err)
		}
		if res.CommandTag.RowsAffected() == 0 {
			return nil
		}
	}
	return fmt.Errorf("acme storage: delete %s: more than %d keys", dir, storageListMax)
}

// Exists reports whether key is a stored key or a directory of some.
func (s *TableStorage) Exists(ctx context.Context, key string) bool {
	res, err := s.exec(ctx, s.sql.exists, key, strings.TrimSuffix(key, "/")+"/")
	if err != nil {
		s.log.Warn("acme storage: exists failed", zap.String("key", key), zap.Error(err))
		return false
	}
	return len(res.Rows) > 0
}

// List returns the keys under path: its direct children (files and
// directories), or with recursive every key and directory beneath it.
func (s *TableStorage) List(ctx context.Context, path string, recursive bool) ([]string, error) {
	prefix := ""
	if path != "" {
		prefix = strings.TrimSuffix(path, "/") + "/"
	}
	res, err := s.exec(ctx, s.sql.list, prefix)
	if err != nil {
		return nil, fmt.Errorf("acme storage: list %s: %w", path, err)
	}
	if len(res.Rows) > storageListMax {
		return nil, fmt.Errorf("acme storage: list %s: more than %d keys", path, storageListMax)
	}
	if len(res.Rows) == 0 {
		return nil, fmt.Errorf("acme storage: list %s: %w", path, fs.ErrNotExist)
	}
	seen := map[string]bool{}
	var out []string
	add := func(k string) {
		if !seen[k] {
			seen[k] = true
			out = append(out, k)
		}
	}
	for _, row := range res.Rows {
		rest := strings.TrimPrefix(string(row[0]), prefix)
		parts := strings.Split(rest, "/")
		if !recursive {
			add(prefix + parts[0])
			continue
		}
		for i := range parts {
			add(prefix + strings.Join(parts[:i+1], "/"))
		}
	}
	slices.Sort(out)
	return out, nil
}

// Stat describes key: a stored value, or a directory of some.
func (s *TableStorage) Stat(ctx context.Context, key string) (certmagic.KeyInfo, error) {
	res, err := s.exec(ctx, s.sql.stat, key)
	if err != nil {
		return certmagic.KeyInfo{}, fmt.Errorf("acme storage: stat %s: %w", key, err)
	}
	if len(res.Rows) > 0 {
		var size int64
		fmt.Sscan(string(res.Rows[0][0]), &size)
		modified, err := parseTimestamptz(string(res.Rows[0][1]))
		if err != nil {
			return certmagic.KeyInfo{}, fmt.Errorf("acme storage: stat %s: %w", key, err)
		}
		return certmagic.KeyInfo{Key: key, Modified: modified, Size: size, IsTerminal: true}, nil
	}
	if s.Exists(ctx, key) {
		return certmagic.KeyInfo{Key: key, IsTerminal: false}, nil
	}
	return certmagic.KeyInfo{}, fmt.Errorf("acme storage: stat %s: %w", key, fs.ErrNotExist)
}

// parseTimestamptz reads a timestamptz in PostgreSQL's text output
// (DateStyle ISO).
func parseTimestamptz(s string) (time.Time, error) {
	for _, layout := range []string{"2006-01-02 15:04:05.999999-07", "2006-01-02 15:04:05.999999-07:00", "2006-01-02 15:04:05.999999-07:00:00"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("unreadable timestamp %q", s)
}

// Lock takes the lock name, waiting (polling, with backoff) while another
// owner holds an unexpired one, until ctx ends.
func (s *TableStorage) Lock(ctx context.Context, name string) error {
	var b [8]byte
	rand.Read(b[:])
	owner := s.owner + "-" + hex.EncodeToString(b[:])
	wait := lockPollMin
	for {
		taken, err := s.tryLock(ctx, name, owner)
		switch {
		case err != nil && ctx.Err() == nil:
			s.log.Warn("acme storage: taking a lock failed; trying again", zap.String("lock", name), zap.Error(err))
		case err != nil:
			return fmt.Errorf("acme storage: lock %s: %w", name, err)
		case taken:
			s.keep(name, owner)
			return nil
		}
		if !sleepCtx(ctx, jitter(wait)) {
			return fmt.Errorf("acme storage: lock %s: still held elsewhere: %w", name, ctx.Err())
		}
		wait = min(2*wait, lockPollMax)
	}
}

// tryLock takes name for owner when it is free or expired.
func (s *TableStorage) tryLock(ctx context.Context, name, owner string) (bool, error) {
	res, err := s.exec(ctx, s.sql.take, name, owner)
	if err != nil {
		return false, err
	}
	if res.CommandTag.RowsAffected() > 0 {
		return true, nil
	}
	_, err = s.exec(ctx, s.sql.insert, name, owner)
	switch {
	case err == nil:
		return true, nil
	case sqlState(err) == pgerrcode.UniqueViolation, compat.IsWriteConflict(err):
		return false, nil // someone holds it, or took it at the same moment
	}
	return false, err
}

// keep records a lock taken and starts extending its row.
func (s *TableStorage) keep(name, owner string) {
	ctx, stop := context.WithCancel(context.Background())
	h := &heldLock{owner: owner, stop: stop, done: make(chan struct{})}
	s.mu.Lock()
	prev := s.held[name]
	s.held[name] = h
	s.mu.Unlock()
	if prev != nil { // not unlocked (certmagic never does this); its row is gone
		prev.stop()
	}
	go s.renew(ctx, name, h)
}

// renew extends a held lock every third of the lease until stopped. A
// renewal that finds the row no longer its own logs an error: the lock
// has expired and may have been taken over.
func (s *TableStorage) renew(ctx context.Context, name string, h *heldLock) {
	defer close(h.done)
	for sleepCtx(ctx, lockLease/3) {
		res, err := s.exec(ctx, s.sql.renew, name, h.owner)
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			s.log.Warn("acme storage: extending a lock failed", zap.String("lock", name), zap.Error(err))
		case res.CommandTag.RowsAffected() == 0:
			s.log.Error("acme storage: a lock held by this gateway expired and is no longer its own", zap.String("lock", name))
			return
		}
	}
}

// Unlock releases the lock name taken by this process's Lock: it deletes
// the row only where its owner is the one Lock wrote.
func (s *TableStorage) Unlock(ctx context.Context, name string) error {
	s.mu.Lock()
	h := s.held[name]
	delete(s.held, name)
	s.mu.Unlock()
	if h == nil {
		return fmt.Errorf("acme storage: unlock %s: not held by this gateway", name)
	}
	h.stop()
	<-h.done
	if _, err := s.exec(ctx, s.sql.release, name, h.owner); err != nil {
		return fmt.Errorf("acme storage: unlock %s (it frees itself within %s): %w", name, lockLease, err)
	}
	return nil
}

// Close releases every lock still held and closes the connection.
func (s *TableStorage) Close() {
	s.mu.Lock()
	names := make([]string, 0, len(s.held))
	for name := range s.held {
		names = append(names, name)
	}
	s.mu.Unlock()
	for _, name := range names {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		s.Unlock(ctx, name)
		cancel()
	}
	s.sem <- struct{}{}
	s.closed = true
	s.dropConn()
	<-s.sem
}

// errStorageClosed is the error of a statement after Close.
var errStorageClosed = errors.New("the storage is closed")

// Conflicts is how many statements lost a write conflict (40001, OC000,
// OC001) and were run again.
func (s *TableStorage) Conflicts() int64 { return s.conflicts.Load() }

// String names the storage in certmagic's logs.
func (s *TableStorage) String() string { return "table " + s.table }

// exec runs one statement in its own transaction, with the tables created
// first, repeating it after a write conflict. Text arguments go as text,
// []byte as binary bytea; results come as text, bytea columns as binary.
func (s *TableStorage) exec(ctx context.Context, sql string, args ...any) (*pgconn.Result, error) {
	if err := s.acquire(ctx); err != nil {
		return nil, err
	}
	defer func() { <-s.sem }()
	if err := s.ensureTables(ctx); err != nil {
		return nil, err
	}
	var err error
	for attempt := range storageConflictRetries + 1 {
		var res *pgconn.Result
		res, err = s.execOnce(ctx, sql, args)
		if err == nil {
			return res, nil
		}
		if !compat.IsWriteConflict(err) || attempt == storageConflictRetries {
			break
		}
		s.conflicts.Add(1)
		if !sleepCtx(ctx, jitter(min(storageConflictPause<<min(attempt, 6), storageConflictPauseMax))) {
			return nil, ctx.Err()
		}
	}
	return nil, err
}

// acquire takes the right to use the connection, or fails when ctx ends.
func (s *TableStorage) acquire(ctx context.Context) error {
	select {
	case s.sem <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// ensureTables creates both tables on first use, each in a statement of
// its own. The caller holds sem.
func (s *TableStorage) ensureTables(ctx context.Context) error {
	if s.ready {
		return nil
	}
	for _, create := range []string{s.sql.createData, s.sql.createLocks} {
		if err := s.create(ctx, create); err != nil {
			return err
		}
	}
	s.ready = true
	return nil
}

// create runs one CREATE TABLE IF NOT EXISTS, repeated while another
// gateway creates the same table. The caller holds sem.
func (s *TableStorage) create(ctx context.Context, sql string) error {
	deadline := time.Now().Add(storageCreateWait)
	for attempt := 0; ; attempt++ {
		_, err := s.execOnce(ctx, sql, nil)
		if compat.IsCreateRace(sqlState(err)) {
			// Another gateway is creating it at the same moment.
			if time.Now().After(deadline) {
				return fmt.Errorf("acme storage: create table %s: %w", s.table, err)
			}
			if !sleepCtx(ctx, jitter(min(storageConflictPause<<min(attempt, 6), storageConflictPauseMax))) {
				return fmt.Errorf("acme storage: create table %s: %w", s.table, ctx.Err())
			}
			continue
		}
		if err != nil {
			return fmt.Errorf("acme storage: create table %s: %w", s.table, err)
		}
		return nil
	}
}

// execOnce runs one statement on the connection, dialling it first when
// needed; a connection that fails is dropped, and a statement that failed
// before it was sent is tried once more on a new one. The caller holds sem.
func (s *TableStorage) execOnce(ctx context.Context, sql string, args []any) (*pgconn.Result, error) {
	ctx, cancel := context.WithTimeout(ctx, storageStatementTimeout)
	defer cancel()
	values := make([][]byte, len(args))
	formats := make([]int16, len(args))
	for i, a := range args {
		switch v := a.(type) {
		case string:
			values[i] = []byte(v)
		case []byte:
			values[i], formats[i] = v, 1 // binary bytea
		default:
			panic(fmt.Sprintf("acme storage: argument of type %T", a))
		}
	}
	for retried := false; ; retried = true {
		conn, err := s.connection(ctx)
		if err != nil {
			return nil, err
		}
		// Results in binary: the only columns read as bytes are bytea
		// (value); the others are asked for as text below.
		res := conn.ExecParams(ctx, sql, values, nil, formats, resultFormats(sql)).Read()
		if res.Err == nil {
			return res, nil
		}
		if conn.IsClosed() || !isServerError(res.Err) {
			s.dropConn()
			if !retried && pgconn.SafeToRetry(res.Err) && ctx.Err() == nil {
				continue
			}
		}
		return nil, res.Err
	}
}

// resultFormats asks for the bytea value of a load in binary (its raw
// bytes) and everything else in text.
func resultFormats(sql string) []int16 {
	if strings.HasPrefix(sql, "SELECT value ") {
		return []int16{1}
	}
	return nil
}

// connection returns the storage connection, dialling a new one when there
// is none, it is closed, or it is old. The caller holds sem.
func (s *TableStorage) connection(ctx context.Context) (*pgconn.PgConn, error) {
	if s.closed {
		return nil, errStorageClosed
	}
	if s.conn != nil && (s.conn.IsClosed() || time.Since(s.connBorn) >= storageConnAge) {
		s.dropConn()
	}
	if s.conn != nil {
		return s.conn, nil
	}
	conn, err := s.dial(ctx)
	if err != nil {
		return nil, fmt.Errorf("dial: %w", err)
	}
	s.conn, s.connBorn = conn, time.Now()
	return conn, nil
}

// dropConn closes the connection, if any. The caller holds sem.
func (s *TableStorage) dropConn() {
	if s.conn == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	s.conn.Close(ctx)
	cancel()
	s.conn = nil
}

// sqlState is the SQLSTATE of a server error in err's chain, or "".
func sqlState(err error) string {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Code
	}
	return ""
}

// isServerError reports an error the server sent (the connection is
// still usable).
func isServerError(err error) bool { return sqlState(err) != "" }

// jitter returns a random duration in [d/2, d].
func jitter(d time.Duration) time.Duration {
	if d <= 1 {
		return d
	}
	return d/2 + mrand.N(d/2+1)
}

// sleepCtx waits d, or less when ctx ends; it reports whether ctx is
// still live.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
