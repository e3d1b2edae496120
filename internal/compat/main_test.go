package compat_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/dsqlgate/dsqlgate/internal/pgtest"
)

// The DSQL emulator's identity for the lock table's tests through it.
const (
	testHost   = "abcdefghijklmnopqrstuvwxyz.dsql.us-east-1.on.aws"
	testRegion = "us-east-1"
	testAKID   = "AKIAIOSFODNN7EXAMPLE"
	testSecret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
)

// testPG is the PostgreSQL the lock table's tests keep their tables on.
var testPG *pgtest.Postgres

func TestMain(m *testing.M) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	var err error
	testPG, err = pgtest.StartPostgres(ctx, pgtest.PostgresOptions{})
	cancel()
	if err != nil {
		panic(err)
	}
	code := m.Run()
	testPG.Close()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			println("goroutine leak:", err.Error())
			code = 1
		}
	}
	os.Exit(code)
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// eventually waits up to 10 s for cond.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("never happened: %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
