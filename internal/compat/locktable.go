package compat

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgerrcode"
	"github.com/jackc/pgx/v5/pgconn"
	"go.uber.org/zap"
)

// Advisory locks for a cluster that has none.
//
// PostgreSQL's advisory locks live in one server's memory; DSQL refuses
// them, and a gateway's memory is not enough either, since several
// gateways may serve one cluster. So a LockManager keeps each held lock as
// a row of a table on the cluster itself:
//
//	(space smallint, key bigint, owner text, expires_at timestamptz,
//	 primary key (space, key))
//
// Every statement runs alone in its own autocommit transaction, and each
// one both decides and writes, so no decision rests on a read made in an
// earlier statement. Taking a lock is
//
//	UPDATE t SET owner = $3, expires_at = now() + lease
//	 WHERE space = $1 AND key = $2 AND (expires_at < now() OR owner = $3)
//
// (one row: taken; it was free by expiry or already ours), and when that
// changed nothing,
//
//	INSERT INTO t VALUES ($1, $2, $3, now() + lease)
//
// (success: taken; 23505 unique_violation: someone holds it). On DSQL two
// transactions that write the same row (two takeovers of one expired lock,
// two inserts of one key, a takeover racing the holder's renewal or
// unlock) cannot both commit: one gets 40001, and the whole attempt is
// repeated a few times. On PostgreSQL in READ COMMITTED the second writer
// waits for the first and then re-checks the WHERE clause against the row
// the first one committed (so it no longer matches), or, for an INSERT,
// gets 23505. In REPEATABLE READ it gets 40001, as on DSQL. Either way at
// most one owner is ever written into a row whose lock is unexpired.
//
// Expiry uses the database's clock (now()), never the gateway's. While a
// LockManager holds locks, one goroutine extends them every third of the
// lease, in batches of at most lockRenewBatch rows (one owner, one key
// space, key = ANY($3)) so that no statement nears DSQL's limit of 3,000
// rows changed per transaction, and drops (with an error in the log) any
// lock its batch did not extend: taken over or deleted. A gateway that dies
// stops renewing, and its locks free themselves after the lease. Unlock
// deletes the row (WHERE owner = $3, so only the holder can). A row of a
// local owner that the manager does not know of (a statement whose reply
// was lost with its connection) is found by a read the renewal makes and
// deleted.
//
// Optimistic concurrency. Every statement here may fail with 40001
// (OC000, or OC001 for the table's creation) when another transaction
// wrote the same row first; each is an autocommit statement whose failure
// wrote nothing, so each is retried in the gateway (lockConflictRetries
// times, jittered doubling pauses) and then fails safe:
//
//   - taking (UPDATE, INSERT): the pair is repeated; when every attempt
//     conflicted the lock is reported not taken (TryLock false, Lock polls
//     again). A lock is recorded as held only after a statement that wrote
//     the row committed.
//   - releasing (Unlock, UnlockAll, an orphan): retried; if it still
//     fails the manager forgets the lock anyway and the row goes with its
//     lease (or the next renewal's orphan sweep), so no one holds it for
//     ever. Until then others wait: never two holders.
//   - renewing: each batch is retried; a batch that still fails is tried
//     again soon (not a whole period later), and a lock whose row was not
//     extended for a whole lease is dropped as lost (logged at error
//     level): its row may have been taken over by then, so the manager
//     must not go on believing it holds it.
//   - creating the table: retried, and a table another gateway created at
//     the same moment is taken as created.
//
// The manager also remembers which local owner holds which key, so that
// another owner of the same gateway is refused, or waits for a local
// Unlock, without a round trip. That is an optimisation only: every lock
// taken was taken on the cluster.

// LockSpace separates PostgreSQL's two advisory key spaces: one bigint, or
// a pair of int4 (the two never conflict in PostgreSQL).
type LockSpace int16

// The advisory key spaces. The values are stored in the lock table.
const (
	LockSpaceBigint  LockSpace = 1
	LockSpaceIntPair LockSpace = 2
)

// LockKey names one advisory lock. For a pair of int4 keys, Key is
// int64(k1)<<32 | int64(uint32(k2)) (see PairKey).
type LockKey struct {
	Space LockSpace
	Key   int64
}

// BigintKey is the key of pg_advisory_lock(bigint).
func BigintKey(k int64) LockKey { return LockKey{Space: LockSpaceBigint, Key: k} }

// PairKey is the key of pg_advisory_lock(int4, int4).
func PairKey(k1, k2 int32) LockKey {
	return LockKey{Space: LockSpaceIntPair, Key: int64(k1)<<32 | int64(uint32(k2))}
}

// Pair returns the two int4 keys of a key in LockSpaceIntPair.
func (k LockKey) Pair() (k1, k2 int32) { return int32(k.Key >> 32), int32(uint32(k.Key)) }

// String is "bigint 42" or "pair 1,2", for logs.
func (k LockKey) String() string {
	switch k.Space {
	case LockSpaceBigint:
		return "bigint " + strconv.FormatInt(k.Key, 10)
	case LockSpaceIntPair:
		k1, k2 := k.Pair()
		return "pair " + strconv.Itoa(int(k1)) + "," + strconv.Itoa(int(k2))
	}
	return "space " + strconv.Itoa(int(k.Space)) + " key " + strconv.FormatInt(k.Key, 10)
}

func (k LockKey) valid() bool { return k.Space == LockSpaceBigint || k.Space == LockSpaceIntPair }

// ErrLocksClosed is returned by every LockManager method once it is closed.
var ErrLocksClosed = errors.New("advisory locks closed")

// Defaults for a LockTableConfig that leaves them empty.
const (
	defaultLockTable = "dsqlgate_advisory_locks"
	defaultLockLease = time.Minute
	// defaultLockConnAge replaces the lock connection when the route's
	// pool has no max_lifetime (DSQL closes connections at 60 minutes).
	defaultLockConnAge = 55 * time.Minute
)

// Timing of lock operations.
const (
	// lockStatementTimeout bounds each statement on the lock connection,
	// a redial included.
	lockStatementTimeout = 15 * time.Second
	// Lock polls the cluster from lockPollMin, doubling to lockPollMax.
	lockPollMin = 20 * time.Millisecond
	lockPollMax = time.Second
	// An attempt that meets a write conflict (40001) is repeated up to
	// lockConflictRetries times, after jittered pauses from
	// lockConflictPause, doubling up to lockConflictPauseMax (about 1.3 s
	// in all at most): an unlock that gave up would leave its row held
	// until the lease ends.
	lockConflictRetries  = 10
	lockConflictPause    = 5 * time.Millisecond
	lockConflictPauseMax = 200 * time.Millisecond
	// tableCreateWait bounds the retries of the lock table's creation.
	tableCreateWait = 10 * time.Second
	// lockRenewBatch is the most rows one renewal or release statement
	// changes: well under DSQL's 3,000 rows per transaction (and its
	// 10 MiB: a row is well under 200 bytes).
	lockRenewBatch = 500
	// A renewal that failed is tried again after lockRenewRetryMin,
	// doubling, never later than the next period.
	lockRenewRetryMin = 100 * time.Millisecond
	// A lock connection idle this long is pinged before it is used.
	lockPingIdle = time.Second
)

// lockConnParams are the startup parameters of the lock connection.
var lockConnParams = map[string]string{"application_name": "dsqlgate advisory locks"}

// LockManager keeps a route's advisory locks in a table on the cluster (see
// above), for any number of owners in this process; an owner is one client
// session (see NewLockOwner). It holds a lock's row once however many times
// its owner takes it: counting re-entries is the caller's business. Safe
// for concurrent use.
//
// Statements run one at a time on the manager's own connection (not a
// pooled one). Lock order: sem, then mu. No I/O happens under mu.
type LockManager struct {
	upstream    LockUpstream
	log         *zap.Logger
	now         func() time.Time // the gateway's clock: connection age only
	maxConnAge  time.Duration    // the lock connection is replaced at this age
	renewPeriod time.Duration    // a third of the lease
	lease       time.Duration
	renewBatch  int // rows per renewal or release statement
	sql         lockSQL
	life        context.Context // ends with Close, and every statement with it
	endLife     context.CancelFunc
	closeOnce   sync.Once
	// The renewal goroutine is started (under sem) by the first lock
	// taken and ends with life; Close waits for it.
	startRenew sync.Once
	renewals   sync.WaitGroup

	// sem (capacity 1) is the right to use conn. Whoever holds it also
	// records a statement's outcome in the local state before giving it
	// back, so the renewal never sees a row whose outcome is unrecorded.
	sem        chan struct{}
	conn       *pgconn.PgConn // guarded by sem; nil until dialled or after a failure
	connBorn   time.Time      // guarded by sem
	connUsed   time.Time      // end of the last statement or ping; guarded by sem
	tableReady bool           // guarded by sem

	mu      sync.Mutex
	closed  bool                            // guarded by mu
	holders map[LockKey]string              // key → the local owner holding it; guarded by mu
	owned   map[string]map[LockKey]struct{} // owner → its keys; guarded by mu
	freed   map[LockKey]chan struct{}       // closed when the key's local holder lets go; guarded by mu
	// confirmed is, for each lock held, when (time.Now, monotonic; not
	// now, which is for the connection's age only) the statement that
	// last wrote its expiry began: its row is leased until about
	// confirmed + lease. Guarded by mu.
	confirmed map[heldLock]time.Time

	// Counters (Stats).
	statements, dials, conflicts, lost atomic.Uint64

	// Test hooks, set before first use: connParams replaces
	// lockConnParams; onWait runs when Lock starts waiting.
	connParams map[string]string
	onWait     func(owner string, k LockKey)
}

// lockSQL holds the statements for one table and lease.
type lockSQL struct {
	create, probe, take, insert, release, releaseAll, releaseKeys, renew, owned string
}

func newLockSQL(table string, lease time.Duration) lockSQL {
	t := quoteTable(table)
	until := fmt.Sprintf("now() + interval '%d milliseconds'", lease.Milliseconds())
	return lockSQL{
		create: "CREATE TABLE IF NOT EXISTS " + t + " (space smallint NOT NULL, key bigint NOT NULL, " +
			"owner text NOT NULL, expires_at timestamptz NOT NULL, PRIMARY KEY (space, key))",
		probe: "SELECT 1 FROM " + t + " WHERE false",
		take: "UPDATE " + t + " SET owner = $3::text, expires_at = " + until +
			" WHERE space = $1::smallint AND key = $2::bigint AND (expires_at < now() OR owner = $3::text)",
		insert: "INSERT INTO " + t + " (space, key, owner, expires_at) VALUES ($1::smallint, $2::bigint, $3::text, " +
			until + ")",
		release:    "DELETE FROM " + t + " WHERE space = $1::smallint AND key = $2::bigint AND owner = $3::text",
		releaseAll: "DELETE FROM " + t + " WHERE owner = $1::text",
		releaseKeys: "DELETE FROM " + t +
			" WHERE owner = $1::text AND space = $2::smallint AND key = ANY($3::bigint[])",
		renew: "UPDATE " + t + " SET expires_at = " + until +
			" WHERE owner = $1::text AND space = $2::smallint AND key = ANY($3::bigint[]) RETURNING space, key, owner",
		owned: "SELECT space, key, owner FROM " + t + " WHERE owner = ANY($1::text[])",
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

// LockUpstream is what a LockManager needs of the route whose cluster
// holds its table (authbridge's Route): connections of its own, dialled
// the way the route dials (credentials, TLS, its dial rate limit).
type LockUpstream interface {
	// DialLocks opens a connection with the given startup parameters.
	DialLocks(ctx context.Context, params map[string]string) (*pgconn.PgConn, error)
	// DialRetryable reports, for an error in whose chain DialLocks
	// reported a failed dial (ok), whether it may pass by itself: a
	// waiting Lock then dials again rather than fail.
	DialRetryable(err error) (retryable, ok bool)
}

// LockTableConfig is a route's lock table.
type LockTableConfig struct {
	// Table is the [schema.]table name ("": dsqlgate_advisory_locks).
	Table string
	// Lease is how long a row holds its lock unrenewed (0: a minute).
	Lease time.Duration
	// MaxConnAge replaces the lock connection at this age (0: 55 minutes;
	// DSQL closes connections at 60).
	MaxConnAge time.Duration
	Log        *zap.Logger
	// Now is the gateway's clock, for the connection's age (nil: time.Now).
	Now func() time.Time
}

// NewLockManager returns the lock table of one route. Nothing is dialled
// until a lock is asked for.
func NewLockManager(up LockUpstream, cfg LockTableConfig) *LockManager {
	table := cfg.Table
	if table == "" {
		table = defaultLockTable
	}
	lease := cfg.Lease
	if lease <= 0 {
		lease = defaultLockLease
	}
	maxAge := cfg.MaxConnAge
	if maxAge <= 0 {
		maxAge = defaultLockConnAge
	}
	now := cfg.Now
	if now == nil {
		now = time.Now
	}
	log := cfg.Log
	if log == nil {
		log = zap.NewNop()
	}
	life, end := context.WithCancel(context.Background())
	return &LockManager{
		upstream:    up,
		log:         log.With(zap.String("lock_table", table)),
		now:         now,
		renewPeriod: lease / 3,
		lease:       lease,
		renewBatch:  lockRenewBatch,
		confirmed:   map[heldLock]time.Time{},
		maxConnAge:  maxAge,
		sql:         newLockSQL(table, lease),
		life:        life,
		endLife:     end,
		sem:         make(chan struct{}, 1),
		holders:     map[LockKey]string{},
		owned:       map[string]map[LockKey]struct{}{},
		freed:       map[LockKey]chan struct{}{},
		connParams:  lockConnParams,
	}
}

// lockInstance identifies this process among every gateway that shares a
// cluster: the host name, when known, and 64 random bits.
var lockInstance = sync.OnceValue(func() string {
	id := randomHex(8)
	if h, err := os.Hostname(); err == nil && h != "" {
		if len(h) > 64 {
			h = h[:64]
		}
		id = h + "/" + id
	}
	return id
})

// NewLockOwner returns a new owner name, "<instance id>:<random>", unique
// across every gateway process: one per client session that takes advisory
// locks.
func NewLockOwner() string { return lockInstance() + ":" + randomHex(8) }

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b) // never fails (crypto/rand since Go 1.24)
	return hex.EncodeToString(b)
}

// TryLock takes k for owner if no one else holds it, and reports whether
// owner holds it now (true also when owner already held it). A key held by
// another owner of this process is refused without asking the cluster.
// After repeated write conflicts it reports false.
func (m *LockManager) TryLock(ctx context.Context, owner string, k LockKey) (bool, error) {
	if err := checkLockArgs(owner, k); err != nil {
		return false, err
	}
	if held, err := m.heldByOther(owner, k); held || err != nil {
		return false, err
	}
	if err := m.take(ctx); err != nil {
		return false, err
	}
	defer m.give()
	// Another local owner may have taken it while we waited for sem.
	if held, err := m.heldByOther(owner, k); held || err != nil {
		return false, err
	}
	if err := m.ensureTable(ctx); err != nil {
		return false, err
	}
	began := time.Now()
	ok, err := m.acquire(ctx, owner, k)
	if errors.Is(err, errLockBusy) {
		return false, nil // the caller may try again
	}
	if err != nil {
		return false, fmt.Errorf("take advisory lock %s: %w", k, err)
	}
	m.mu.Lock()
	if m.closed {
		// Closed while we worked: nothing will renew the row; it
		// expires by its lease.
		m.mu.Unlock()
		return false, ErrLocksClosed
	}
	lost := !ok && m.holders[k] == owner // someone else has it now
	if ok {
		m.rememberLocked(owner, k, began)
	} else if lost {
		m.forgetLocked(owner, k)
	}
	m.mu.Unlock()
	if lost {
		m.lost.Add(1)
		m.log.Error("advisory lock lost", zap.String("owner", owner), zap.Stringer("key", k))
	}
	if ok {
		// Still under sem: Close waits for it before it waits for the
		// renewal goroutine.
		m.startRenew.Do(func() {
			m.renewals.Add(1)
			go m.renewLoop()
		})
	}
	return ok, nil
}

// Lock takes k for owner, waiting until it is free or ctx ends (then the
// error wraps ctx.Err()). It polls the cluster with jittered backoff; while
// another owner of this process holds k, it waits for that owner to let go
// first. Failures that may pass (network, a lost connection, DSQL's
// connection limits) are retried; others are returned.
func (m *LockManager) Lock(ctx context.Context, owner string, k LockKey) error {
	backoff := lockPollMin
	waiting := false
	for {
		ok, err := m.TryLock(ctx, owner, k)
		switch {
		case ok:
			return nil
		case ctx.Err() != nil:
			return fmt.Errorf("wait for advisory lock %s: %w", k, ctx.Err())
		case err != nil && !m.transientLockError(err):
			return err
		case err != nil:
			m.log.Warn("advisory lock attempt failed", zap.Stringer("key", k), zap.Error(err))
		}
		if !waiting {
			waiting = true
			if m.onWait != nil {
				m.onWait(owner, k)
			}
		}
		// Another owner here holds k: wait for it to let go. Otherwise
		// poll the cluster again after a pause.
		freed := m.localRelease(owner, k)
		var t *time.Timer
		var pause <-chan time.Time // nil while waiting for freed
		if freed != nil {
			backoff = lockPollMin
		} else {
			t = time.NewTimer(jitter(backoff))
			pause = t.C
			backoff = min(2*backoff, lockPollMax)
		}
		var stopped error
		select {
		case <-freed:
		case <-pause:
		case <-ctx.Done():
			stopped = fmt.Errorf("wait for advisory lock %s: %w", k, ctx.Err())
		case <-m.life.Done():
			stopped = ErrLocksClosed
		}
		if t != nil {
			t.Stop()
		}
		if stopped != nil {
			return stopped
		}
	}
}

// Unlock releases owner's hold on k and reports whether owner held it (by
// the cluster's account). When the statement fails the manager forgets the
// lock anyway: the row is deleted later or expires by its lease.
func (m *LockManager) Unlock(ctx context.Context, owner string, k LockKey) (bool, error) {
	if err := checkLockArgs(owner, k); err != nil {
		return false, err
	}
	if err := m.take(ctx); err != nil {
		return false, err
	}
	defer m.give()
	if err := m.ensureTable(ctx); err != nil {
		return false, err
	}
	res, err := m.execRetry(ctx, m.sql.release, strconv.Itoa(int(k.Space)), strconv.FormatInt(k.Key, 10), owner)
	m.mu.Lock()
	believed := m.holders[k] == owner
	m.forgetLocked(owner, k)
	m.mu.Unlock()
	if err != nil {
		return false, fmt.Errorf("release advisory lock %s: %w", k, err)
	}
	released := res.CommandTag.RowsAffected() > 0
	if believed && !released {
		m.lost.Add(1)
		m.log.Error("advisory lock lost", zap.String("owner", owner), zap.Stringer("key", k))
	}
	return released, nil
}

// UnlockAll releases every lock owner holds (a session ending). Like
// Unlock, the manager forgets them even when the statement fails.
func (m *LockManager) UnlockAll(ctx context.Context, owner string) error {
	if owner == "" {
		return errors.New("advisory lock owner is empty")
	}
	if err := m.take(ctx); err != nil {
		return err
	}
	defer m.give()
	if err := m.ensureTable(ctx); err != nil {
		return err
	}
	// The keys it holds go in batches (an owner may hold more than DSQL
	// lets one transaction delete), then whatever row of its is left (an
	// orphan: normally none).
	m.mu.Lock()
	held := make([]heldLock, 0, len(m.owned[owner]))
	for k := range m.owned[owner] {
		held = append(held, heldLock{owner, k})
	}
	m.mu.Unlock()
	var err error
	for _, b := range m.batches(held) {
		if _, berr := m.execRetry(ctx, m.sql.releaseKeys, b.args()...); berr != nil && err == nil {
			err = berr
		}
	}
	if err == nil {
		_, err = m.execRetry(ctx, m.sql.releaseAll, owner)
	}
	m.mu.Lock()
	for k := range m.owned[owner] {
		m.forgetLocked(owner, k)
	}
	m.mu.Unlock()
	if err != nil {
		return fmt.Errorf("release advisory locks: %w", err)
	}
	return nil
}

// LockStats are a LockManager's counters since it was made.
type LockStats struct {
	Statements uint64 // statements run on the cluster (pings aside)
	Dials      uint64 // lock connections opened
	// Conflicts counts statements that failed with a write conflict
	// (40001, OC000/OC001) and were run again.
	Conflicts uint64
	// Lost counts locks the manager found it no longer held (taken over
	// after their lease ran out, deleted behind its back, or not renewed
	// for a whole lease).
	Lost uint64
}

// Stats returns the manager's counters.
func (m *LockManager) Stats() LockStats {
	return LockStats{Statements: m.statements.Load(), Dials: m.dials.Load(),
		Conflicts: m.conflicts.Load(), Lost: m.lost.Load()}
}

// Held returns the keys this manager believes owner holds, sorted (none
// after Close).
func (m *LockManager) Held(owner string) []LockKey {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []LockKey
	for k := range m.owned[owner] {
		out = append(out, k)
	}
	slices.SortFunc(out, func(a, b LockKey) int {
		return cmp.Or(cmp.Compare(a.Space, b.Space), cmp.Compare(a.Key, b.Key))
	})
	return out
}

// Close stops the renewals and closes the lock connection. It does not
// release the rows: a closing gateway's locks expire by their lease unless
// UnlockAll ran first. Waiting Locks and every later call return
// ErrLocksClosed. Idempotent.
func (m *LockManager) Close() {
	m.closeOnce.Do(func() {
		m.mu.Lock()
		m.closed = true
		for k, ch := range m.freed {
			close(ch)
			delete(m.freed, k)
		}
		clear(m.holders)
		clear(m.owned)
		clear(m.confirmed)
		m.mu.Unlock()
		m.endLife()         // ends the renewal and any statement in flight
		m.sem <- struct{}{} // kept: nothing runs on conn after this
		m.renewals.Wait()
		m.dropConn()
	})
}

func checkLockArgs(owner string, k LockKey) error {
	if owner == "" {
		return errors.New("advisory lock owner is empty")
	}
	if !k.valid() {
		return fmt.Errorf("advisory lock space %d is unknown", k.Space)
	}
	return nil
}

// heldByOther reports whether another local owner holds k.
func (m *LockManager) heldByOther(owner string, k LockKey) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return false, ErrLocksClosed
	}
	h, ok := m.holders[k]
	return ok && h != owner, nil
}

// localRelease returns a channel closed when the other local owner that
// holds k lets go of it, or nil when no other local owner holds k.
func (m *LockManager) localRelease(owner string, k LockKey) <-chan struct{} {
	m.mu.Lock()
	defer m.mu.Unlock()
	if h, ok := m.holders[k]; !ok || h == owner || m.closed {
		return nil
	}
	ch := m.freed[k]
	if ch == nil {
		ch = make(chan struct{})
		m.freed[k] = ch
	}
	return ch
}

func (m *LockManager) rememberLocked(owner string, k LockKey, confirmed time.Time) {
	m.confirmed[heldLock{owner, k}] = confirmed
	m.holders[k] = owner
	keys := m.owned[owner]
	if keys == nil {
		keys = map[LockKey]struct{}{}
		m.owned[owner] = keys
	}
	keys[k] = struct{}{}
}

// forgetLocked drops owner's hold on k, if it has one, and wakes local
// waiters for k.
func (m *LockManager) forgetLocked(owner string, k LockKey) {
	if m.holders[k] != owner {
		return
	}
	delete(m.holders, k)
	delete(m.confirmed, heldLock{owner, k})
	delete(m.owned[owner], k)
	if len(m.owned[owner]) == 0 {
		delete(m.owned, owner)
	}
	if ch := m.freed[k]; ch != nil {
		close(ch)
		delete(m.freed, k)
	}
}

// take waits for the right to use the connection (sem).
func (m *LockManager) take(ctx context.Context) error {
	select {
	case m.sem <- struct{}{}:
	case <-ctx.Done():
		return fmt.Errorf("wait for the advisory lock connection: %w", ctx.Err())
	case <-m.life.Done():
		return ErrLocksClosed
	}
	if m.life.Err() != nil {
		<-m.sem
		return ErrLocksClosed
	}
	return nil
}

func (m *LockManager) give() { <-m.sem }

// errLockBusy: every attempt to take a lock met a write conflict. The lock
// is not taken; whether someone else holds it is not known.
var errLockBusy = errors.New("advisory lock busy")

// acquire runs one attempt to take k for owner (the UPDATE, then the
// INSERT), repeating it after write conflicts. The caller holds sem.
func (m *LockManager) acquire(ctx context.Context, owner string, k LockKey) (bool, error) {
	args := []string{strconv.Itoa(int(k.Space)), strconv.FormatInt(k.Key, 10), owner}
	pause := lockConflictPause
	for attempt := 0; ; attempt++ {
		ok, err := m.acquireOnce(ctx, args)
		if !IsWriteConflict(err) {
			return ok, err
		}
		m.conflicts.Add(1)
		m.log.Debug("advisory lock attempt met a write conflict", zap.Stringer("key", k), zap.Int("attempt", attempt+1), zap.Error(err))
		if attempt == lockConflictRetries {
			return false, errLockBusy
		}
		if !sleepCtx(ctx, jitter(pause)) {
			return false, ctx.Err()
		}
		pause = min(2*pause, lockConflictPauseMax)
	}
}

// execRetry runs exec, again after a write conflict (up to
// lockConflictRetries times, after jittered doubling pauses); every
// statement it is given is one autocommit transaction whose failure wrote
// nothing. The caller holds sem.
func (m *LockManager) execRetry(ctx context.Context, sql string, args ...string) (*pgconn.Result, error) {
	pause := lockConflictPause
	for attempt := 0; ; attempt++ {
		res, err := m.exec(ctx, sql, args...)
		if !IsWriteConflict(err) || attempt == lockConflictRetries {
			return res, err
		}
		m.conflicts.Add(1)
		m.log.Debug("advisory lock statement met a write conflict; retrying", zap.Int("attempt", attempt+1), zap.Error(err))
		if !sleepCtx(ctx, jitter(pause)) {
			return nil, err
		}
		pause = min(2*pause, lockConflictPauseMax)
	}
}

func (m *LockManager) acquireOnce(ctx context.Context, args []string) (bool, error) {
	res, err := m.exec(ctx, m.sql.take, args...)
	if err != nil {
		return false, err
	}
	if res.CommandTag.RowsAffected() > 0 {
		return true, nil // expired, or already ours
	}
	_, err = m.exec(ctx, m.sql.insert, args...)
	if err == nil {
		return true, nil
	}
	if sqlState(err) == pgerrcode.UniqueViolation {
		return false, nil // someone holds it
	}
	return false, err
}

// ensureTable creates the lock table on first use, in a statement of its
// own (DSQL allows one DDL statement per transaction, and none with DML).
// The caller holds sem.
func (m *LockManager) ensureTable(ctx context.Context) error {
	if m.tableReady {
		return nil
	}
	var err error
	// Creating the table is done once, and another gateway creating it at
	// the same moment makes this one fail until that one commits: retried
	// for up to tableCreateWait, not a few attempts (a slow commit, under
	// load, outlasts them).
	deadline := time.Now().Add(tableCreateWait)
	for attempt := 0; time.Now().Before(deadline); attempt++ {
		_, err = m.exec(ctx, m.sql.create)
		switch code := sqlState(err); {
		case code == "":
			m.tableReady = true
			m.log.Debug("advisory lock table ready")
			return nil
		case code == pgerrcode.InsufficientPrivilege:
			// Not allowed to create tables; enough if it exists.
			if _, perr := m.exec(ctx, m.sql.probe); perr == nil {
				m.tableReady = true
				return nil
			}
			return fmt.Errorf("create advisory lock table: %w", err)
		case IsCreateRace(code):
			// Another gateway created it at the same moment.
			m.conflicts.Add(1)
			if !sleepCtx(ctx, jitter(lockConflictPause<<min(attempt, 5))) {
				return fmt.Errorf("create advisory lock table: %w", ctx.Err())
			}
			continue
		}
		return fmt.Errorf("create advisory lock table: %w", err)
	}
	return fmt.Errorf("create advisory lock table: %w", err)
}

// exec runs one statement in its own transaction with text parameters,
// dialling or replacing the connection first when needed. A failure that
// happened before anything was sent is retried once on a new connection.
// The caller holds sem.
func (m *LockManager) exec(ctx context.Context, sql string, args ...string) (*pgconn.Result, error) {
	if m.life.Err() != nil {
		return nil, ErrLocksClosed
	}
	ctx, cancel := context.WithTimeout(ctx, lockStatementTimeout)
	defer cancel()
	stop := context.AfterFunc(m.life, cancel) // Close ends the statement
	defer stop()
	params := make([][]byte, len(args))
	for i, a := range args {
		params[i] = []byte(a)
	}
	for retried := false; ; retried = true {
		conn, err := m.connection(ctx)
		if err != nil {
			if m.life.Err() != nil {
				return nil, ErrLocksClosed
			}
			return nil, err
		}
		m.statements.Add(1)
		res := conn.ExecParams(ctx, sql, params, nil, nil, nil).Read()
		m.connUsed = m.now()
		if res.Err == nil {
			return res, nil
		}
		if conn.IsClosed() {
			m.conn = nil
		}
		if sqlState(res.Err) == pgerrcode.UndefinedTable {
			m.tableReady = false // dropped under us: create it again next time
		}
		if !retried && pgconn.SafeToRetry(res.Err) && ctx.Err() == nil {
			m.dropConn()
			continue
		}
		if m.life.Err() != nil {
			return nil, ErrLocksClosed
		}
		return nil, res.Err
	}
}

// connection returns the lock connection, replacing it first when it is
// closed or has reached the route's max_lifetime (DSQL closes connections
// at 60 minutes), or when it has been idle for lockPingIdle and does not
// answer a ping (DSQL, a restarted server or the network may have closed
// it without a word; better to learn that before sending a statement whose
// outcome must be known). It dials (LockUpstream.DialLocks) when there is
// no connection. The caller holds sem, so the connection is idle.
//
// (Peeking at the socket, as authbridge's ServerConn.Alive does, is not
// possible here: pgconn may have a background reader blocked on it.)
func (m *LockManager) connection(ctx context.Context) (*pgconn.PgConn, error) {
	if m.conn != nil {
		now := m.now()
		switch {
		case m.conn.IsClosed() || now.Sub(m.connBorn) >= m.maxConnAge:
			m.dropConn()
		case now.Sub(m.connUsed) >= lockPingIdle:
			if err := m.conn.Ping(ctx); err != nil {
				m.dropConn()
			} else {
				m.connUsed = now
			}
		}
	}
	if m.conn != nil {
		return m.conn, nil
	}
	conn, err := m.upstream.DialLocks(ctx, m.connParams)
	if err != nil {
		m.log.Warn("advisory lock dial failed", zap.Error(err))
		return nil, err
	}
	m.dials.Add(1)
	m.conn, m.connBorn, m.connUsed = conn, m.now(), m.now()
	return conn, nil
}

// dropConn closes the lock connection, if any, the way a client does. The
// caller holds sem.
func (m *LockManager) dropConn() {
	if m.conn == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	m.conn.Close(ctx)
	cancel()
	m.conn = nil
}

// renewLoop runs in the manager's renewal goroutine, from the first lock
// taken until Close: every third of the lease it extends every lock held,
// and sooner after a renewal that failed.
func (m *LockManager) renewLoop() {
	defer m.renewals.Done()
	retry := lockRenewRetryMin
	wait := m.renewPeriod
	for {
		t := time.NewTimer(wait)
		select {
		case <-m.life.Done():
			t.Stop()
			return
		case <-t.C:
		}
		if m.renew() {
			retry, wait = lockRenewRetryMin, m.renewPeriod
		} else {
			wait = min(jitter(retry), m.renewPeriod)
			retry = min(2*retry, m.renewPeriod)
		}
	}
}

// heldLock is one row of the lock table.
type heldLock struct {
	owner string
	key   LockKey
}

// lockBatch is at most renewBatch keys of one owner in one key space: the
// rows one renewal or release statement changes.
type lockBatch struct {
	owner string
	space LockSpace
	keys  []int64
}

// args are the statement's parameters: owner, space, key array.
func (b lockBatch) args() []string {
	var sb strings.Builder
	sb.WriteByte('{')
	for i, k := range b.keys {
		if i > 0 {
			sb.WriteByte(',')
		}
		sb.WriteString(strconv.FormatInt(k, 10))
	}
	sb.WriteByte('}')
	return []string{b.owner, strconv.Itoa(int(b.space)), sb.String()}
}

// batches groups locks by owner and key space, in order, at most
// renewBatch to a group.
func (m *LockManager) batches(held []heldLock) []lockBatch {
	slices.SortFunc(held, func(a, b heldLock) int {
		return cmp.Or(strings.Compare(a.owner, b.owner), cmp.Compare(a.key.Space, b.key.Space), cmp.Compare(a.key.Key, b.key.Key))
	})
	var out []lockBatch
	for _, h := range held {
		n := len(out)
		if n == 0 || out[n-1].owner != h.owner || out[n-1].space != h.key.Space || len(out[n-1].keys) >= m.renewBatch {
			out = append(out, lockBatch{owner: h.owner, space: h.key.Space})
			n++
		}
		out[n-1].keys = append(out[n-1].keys, h.key.Key)
	}
	return out
}

// renew extends every lock held here, in batches (see lockBatch), each
// retried after write conflicts, and compares the rows each batch
// extended with the locks it asked for: a lock not among them was taken
// over (or deleted) after it expired, and is dropped. A lock whose row has
// gone a whole lease without being extended (its batches failed) is
// dropped too: it may have been taken over since. Then it reads the rows
// of the local owners and deletes those the owners do not believe they
// hold (a statement whose outcome was lost with its connection). It
// reports whether every statement succeeded.
func (m *LockManager) renew() bool {
	if m.take(m.life) != nil {
		return true
	}
	defer m.give()
	m.mu.Lock()
	held := make([]heldLock, 0, len(m.confirmed))
	owners := make([]string, 0, len(m.owned))
	for o, keys := range m.owned {
		owners = append(owners, o)
		for k := range keys {
			held = append(held, heldLock{o, k})
		}
	}
	m.mu.Unlock()
	if len(held) == 0 {
		return true
	}
	ok := true
	var lost []heldLock
	for _, b := range m.batches(held) {
		began := time.Now()
		res, err := m.execRetry(m.life, m.sql.renew, b.args()...)
		if err != nil {
			if m.life.Err() != nil {
				return true
			}
			ok = false
			m.log.Warn("advisory lock renewal failed", zap.Int("locks", len(b.keys)), zap.Error(err))
			continue
		}
		extended := make(map[int64]bool, len(res.Rows))
		for _, row := range res.Rows {
			if h, ok := parseLockRow(row); ok && h.owner == b.owner && h.key.Space == b.space {
				extended[h.key.Key] = true
			}
		}
		m.mu.Lock()
		for _, k := range b.keys {
			h := heldLock{b.owner, LockKey{Space: b.space, Key: k}}
			switch {
			case extended[k]:
				if _, still := m.confirmed[h]; still {
					m.confirmed[h] = began
				}
			case m.holders[h.key] == h.owner:
				lost = append(lost, h)
				m.forgetLocked(h.owner, h.key)
			}
		}
		m.mu.Unlock()
	}
	// Locks whose lease may have run out unrenewed.
	now := time.Now()
	m.mu.Lock()
	for h, at := range m.confirmed {
		if now.Sub(at) >= m.lease {
			lost = append(lost, h)
			m.forgetLocked(h.owner, h.key)
		}
	}
	m.mu.Unlock()
	for _, h := range lost {
		m.lost.Add(1)
		m.log.Error("advisory lock lost", zap.String("owner", h.owner), zap.Stringer("key", h.key))
	}
	return m.releaseOrphans(owners) && ok
}

// releaseOrphans deletes the rows of owners that they do not believe they
// hold. The read is a read-only statement: it neither conflicts nor
// counts against DSQL's row limits. The caller holds sem.
func (m *LockManager) releaseOrphans(owners []string) bool {
	res, err := m.exec(m.life, m.sql.owned, textArray(owners))
	if err != nil {
		if m.life.Err() == nil {
			m.log.Warn("advisory lock orphan sweep failed", zap.Error(err))
			return false
		}
		return true
	}
	var orphans []heldLock
	m.mu.Lock()
	for _, row := range res.Rows {
		if h, ok := parseLockRow(row); ok {
			if _, held := m.owned[h.owner][h.key]; !held {
				orphans = append(orphans, h)
			}
		}
	}
	m.mu.Unlock()
	ok := true
	for _, h := range orphans {
		_, err := m.execRetry(m.life, m.sql.release, strconv.Itoa(int(h.key.Space)), strconv.FormatInt(h.key.Key, 10), h.owner)
		if err != nil {
			ok = false
			m.log.Warn("advisory lock orphan release failed", zap.String("owner", h.owner), zap.Stringer("key", h.key), zap.Error(err))
			continue
		}
		m.log.Warn("advisory lock orphan released", zap.String("owner", h.owner), zap.Stringer("key", h.key))
	}
	return ok
}

// parseLockRow reads (space, key, owner) in text format.
func parseLockRow(row [][]byte) (heldLock, bool) {
	if len(row) != 3 {
		return heldLock{}, false
	}
	space, err1 := strconv.ParseInt(string(row[0]), 10, 16)
	key, err2 := strconv.ParseInt(string(row[1]), 10, 64)
	if err1 != nil || err2 != nil {
		return heldLock{}, false
	}
	return heldLock{owner: string(row[2]), key: LockKey{Space: LockSpace(space), Key: key}}, true
}

// textArray writes ss as a PostgreSQL text[] literal, every element quoted.
func textArray(ss []string) string {
	var b strings.Builder
	b.WriteByte('{')
	for i, s := range ss {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteByte('"')
		for j := 0; j < len(s); j++ {
			if s[j] == '"' || s[j] == '\\' {
				b.WriteByte('\\')
			}
			b.WriteByte(s[j])
		}
		b.WriteByte('"')
	}
	b.WriteByte('}')
	return b.String()
}

// DSQL's own SQLSTATEs (not in PostgreSQL, so not in pgerrcode) for a
// transaction that lost an optimistic concurrency check on data (OC000)
// or on the schema (OC001).
const (
	DSQLOCC       = "OC000"
	DSQLSchemaOCC = "OC001"
)

// sqlState is the SQLSTATE of a server error in err's chain, or "".
func sqlState(err error) string {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Code
	}
	return ""
}

// IsConflictCode reports the SQLSTATE of a transaction that lost a write
// conflict and may simply be run again: DSQL's optimistic concurrency
// (40001, or its bare OC000/OC001 codes), PostgreSQL's serialization
// failure and deadlock.
func IsConflictCode(code string) bool {
	switch code {
	case pgerrcode.SerializationFailure, DSQLOCC, DSQLSchemaOCC, pgerrcode.DeadlockDetected:
		return true
	}
	return false
}

// IsWriteConflict reports a server error in err's chain whose SQLSTATE
// IsConflictCode.
func IsWriteConflict(err error) bool { return IsConflictCode(sqlState(err)) }

// IsCreateRace reports the SQLSTATE a CREATE ... IF NOT EXISTS gets when
// another session creates the same object at the same moment: a write
// conflict, or the object's catalogue row already there. Run it again.
func IsCreateRace(code string) bool {
	switch code {
	case pgerrcode.UniqueViolation, pgerrcode.DuplicateTable, pgerrcode.DuplicateObject:
		return true
	}
	return IsConflictCode(code)
}

// transientLockError reports whether Lock should keep waiting after err:
// dial failures that may pass and lost connections, but not errors the
// server reported (write conflicts never get here) nor a closed manager.
func (m *LockManager) transientLockError(err error) bool {
	if errors.Is(err, ErrLocksClosed) {
		return false
	}
	if retryable, ok := m.upstream.DialRetryable(err); ok {
		return retryable
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		// A server that is going away (admin shutdown, cannot connect
		// now, too many connections) will be redialled.
		// The lock table dropped under us is created again.
		// (57P: the server shutting down or not accepting connections;
		// class 08: a connection exception.)
		return strings.HasPrefix(pgErr.Code, "57P") || strings.HasPrefix(pgErr.Code, "08") ||
			pgErr.Code == pgerrcode.TooManyConnections || pgErr.Code == pgerrcode.ConfigurationLimitExceeded ||
			pgErr.Code == pgerrcode.UndefinedTable
	}
	return true
}

// jitter returns a duration uniformly between d/2 and d.
func jitter(d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	return d/2 + mrand.N(d/2+1)
}

// sleepCtx sleeps for d and reports whether ctx was still live after it.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
