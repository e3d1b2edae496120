package e2e

import (
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// What real tools send when they connect, captured from their sources:
// each must succeed through the gateway against DSQL's refusals.
var connectSequences = map[string][]string{
	// Rails 7 ActiveRecord PostgreSQLAdapter#configure_connection, with
	// default_timezone :utc, variables: {statement_timeout: 5000}, then
	// its type-map query, and the migration lock.
	"rails": {
		"SET client_min_messages TO 'warning'",
		"SET standard_conforming_strings = on",
		"SET intervalstyle = iso_8601",
		"SET SESSION timezone TO 'UTC'",
		"SET SESSION statement_timeout TO 5000",
		"SELECT t.oid, t.typname FROM pg_type as t WHERE t.typname IN ('int2', 'int4', 'int8', 'oid', 'float4', 'float8', 'numeric', 'bool', 'timestamp', 'timestamptz')",
		"SHOW search_path",
		"SELECT pg_try_advisory_lock(1876432105)",
		"SELECT pg_advisory_unlock(1876432105)",
	},
	// pgAdmin 4's connection initialisation (one multi-statement query),
	// then what its dashboard asks first.
	"pgadmin": {
		"SET DateStyle=ISO; SET client_min_messages=notice; SELECT set_config('bytea_output','hex',false) FROM pg_show_all_settings() WHERE name = 'bytea_output'; SET client_encoding='utf-8';",
		"SET application_name = 'pgAdmin 4 - DB:postgres'",
		"SELECT version()",
		"SELECT db.oid as did, db.datname, db.datallowconn, pg_catalog.has_database_privilege(db.oid, 'CREATE') as cancreate FROM pg_catalog.pg_database db WHERE db.datname = current_database()",
		"SHOW client_min_messages",
	},
}

func TestToolConnectSequences(t *testing.T) {
	for tool, seq := range connectSequences {
		for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeSimpleProtocol, pgx.QueryExecModeCacheStatement} {
			t.Run(tool+"/"+mode.String(), func(t *testing.T) {
				ctx := testCtx(t, time.Minute)
				conn := connect(t, shared, "sslmode=disable&default_query_exec_mode="+modeParam(mode))
				for _, q := range seq {
					if mode != pgx.QueryExecModeSimpleProtocol && strings.Count(q, ";") > 1 {
						continue // several statements need the simple protocol
					}
					rows, err := conn.Query(ctx, q)
					if err == nil {
						for rows.Next() {
						}
						rows.Close()
						err = rows.Err()
					}
					if err != nil {
						t.Fatalf("%s: %v", q, err)
					}
				}
				var min string
				conn.QueryRow(ctx, "SHOW client_min_messages").Scan(&min)
				want := map[string]string{"rails": "warning", "pgadmin": "notice"}[tool]
				if min != want {
					t.Fatalf("client_min_messages = %q, want %q", min, want)
				}
			})
		}
	}
	// pgAdmin's initialisation is also exactly what psql sends as one string.
	out, err := psql(t, shared, "", "-c", connectSequences["pgadmin"][0])
	if err != nil {
		t.Fatalf("psql: %v\n%s", err, out)
	}
}
