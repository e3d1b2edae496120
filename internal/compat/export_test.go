package compat

import (
	"context"
	"time"
)

// Hooks for the lock table's tests (locktable_test.go), which live in
// package compat_test because they reach the table through authbridge, an
// importer of this package.

var TextArray = textArray

const LockPingIdle = lockPingIdle

// SetConnParams replaces the lock connection's startup parameters; call
// it before first use.
func (m *LockManager) SetConnParams(p map[string]string) { m.connParams = p }

// SetOnWait makes Lock call f when it starts waiting; call it while no
// Lock runs.
func (m *LockManager) SetOnWait(f func(owner string, k LockKey)) { m.onWait = f }

func (m *LockManager) Statements() uint64        { return m.statements.Load() }
func (m *LockManager) Dials() uint64             { return m.dials.Load() }
func (m *LockManager) Conflicts() uint64         { return m.conflicts.Load() }
func (m *LockManager) MaxConnAge() time.Duration { return m.maxConnAge }

// ConnPID returns the backend pid of the lock connection.
func (m *LockManager) ConnPID(ctx context.Context) (uint32, error) {
	if err := m.take(ctx); err != nil {
		return 0, err
	}
	defer m.give()
	return m.conn.PID(), nil
}

var SQLState = sqlState

// SetRenewBatch sets the most rows one renewal or release statement
// changes; call it before first use.
func (m *LockManager) SetRenewBatch(n int) { m.renewBatch = n }
