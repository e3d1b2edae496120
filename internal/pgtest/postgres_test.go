package pgtest

import (
	"context"
	"strings"
	"testing"
	"time"
)

func TestStartPostgres(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	pg, err := StartPostgres(ctx, PostgresOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer pg.Close()
	out, err := pg.Psql(ctx, "postgres", "-Atc", "select 40 + 2")
	if err != nil {
		t.Fatal(err)
	}
	if strings.TrimSpace(out) != "42" {
		t.Fatalf("select 40 + 2 = %q, want 42", out)
	}
}
