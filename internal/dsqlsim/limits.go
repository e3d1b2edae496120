package dsqlsim

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgerrcode"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
)

// DSQL's transaction limits and DDL rules, enforced inside the real
// PostgreSQL so that they hold for simple and extended protocol and COPY
// alike.
//
// Start installs, idempotently, a schema of the emulator's own (backendSchema)
// in the backend database, as Config.BackendSuperuser over the trusted
// socket:
//
//   - statement-level AFTER INSERT, UPDATE and DELETE triggers with
//     transition tables on every table (one per event: PostgreSQL allows
//     transition tables only on single-event triggers), added to the
//     tables that exist at install and, by an event trigger on
//     ddl_command_end, to every table created later. Each adds its
//     statement's rows and their size (pg_column_size of each row) to
//     transaction-local counters (set_config(..., true)) and fails the
//     statement with 54000 and DSQL's message past the limits. A failed
//     statement aborts the transaction as any error does; an autocommit
//     statement is rolled back.
//   - an event trigger on ddl_command_start that fails a second DDL
//     statement in a transaction, or DDL after DML, with 0A000; the DML
//     triggers fail DML after DDL. A multi-statement simple Query is one
//     (implicit) transaction, as on DSQL.
//
// Only emulator sessions are limited: their backend sessions start with
// the limits as the placeholder settings dsqlsim.max_txn_rows and
// dsqlsim.max_txn_bytes (which a client cannot change: SET of them is
// refused), and the triggers do nothing in a session without them (a
// direct connection to the backend): a WHEN clause skips the function call.
// Only tables created through the emulator get the triggers, so tables a
// test or a benchmark creates straight on the backend (pgbench -i) pay
// nothing for them, and are not limited. The emulator's own DDL in its
// triggers is marked by the transaction-local flag dsqlsim.installing, so
// the event triggers do not fire on it.
//
// Where it differs from DSQL: the triggers are visible in the catalog
// (pg_trigger, psql's \d); a table's size is PostgreSQL's, not DSQL's.

// backendSchema is the emulator's schema in the backend database.
const backendSchema = "dsqlsim"

// DSQL's messages for its transaction limits and DDL rules.
const (
	msgTxnRowLimit  = "transaction row limit exceeded"
	msgMultipleDDL  = "multiple ddl statements not supported in a transaction"
	msgDDLAndDML    = "ddl and dml are not supported in the same transaction"
	installLockKey  = "7308324466020147565" // pg_advisory_xact_lock key that serializes concurrent installs
	installTimeout  = 30 * time.Second
	settingMaxRows  = "dsqlsim.max_txn_rows"
	settingMaxBytes = "dsqlsim.max_txn_bytes"
)

// installSQL is the emulator's schema, run in one transaction. The
// functions read the limits from the session's settings, so emulators with
// different limits can share one backend database.
const installSQL = `
SELECT pg_advisory_xact_lock(` + installLockKey + `);
SELECT set_config('dsqlsim.installing', 'on', true);
CREATE SCHEMA IF NOT EXISTS dsqlsim;
GRANT USAGE ON SCHEMA dsqlsim TO PUBLIC;

CREATE OR REPLACE FUNCTION dsqlsim.count_changes() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog AS $fn$
DECLARE
	max_rows bigint := nullif(current_setting('dsqlsim.max_txn_rows', true), '')::bigint;
	max_bytes bigint := nullif(current_setting('dsqlsim.max_txn_bytes', true), '')::bigint;
	n bigint;
	size bigint;
	total_rows bigint;
	total_bytes bigint;
BEGIN
	IF max_rows IS NULL OR current_setting('dsqlsim.installing', true) = 'on' THEN
		RETURN NULL; -- not an emulator session
	END IF;
	IF current_setting('dsqlsim.txn_ddl', true) = 'on' THEN
		RAISE EXCEPTION '` + msgDDLAndDML + `' USING ERRCODE = '0A000';
	END IF;
	PERFORM set_config('dsqlsim.txn_dml', 'on', true);
	IF TG_OP = 'DELETE' THEN
		SELECT count(*), coalesce(sum(pg_column_size(r.*)), 0) INTO n, size FROM dsqlsim_old_rows r;
	ELSE
		SELECT count(*), coalesce(sum(pg_column_size(r.*)), 0) INTO n, size FROM dsqlsim_new_rows r;
	END IF;
	total_rows := coalesce(nullif(current_setting('dsqlsim.txn_rows', true), '')::bigint, 0) + n;
	total_bytes := coalesce(nullif(current_setting('dsqlsim.txn_bytes', true), '')::bigint, 0) + size;
	IF total_rows > max_rows THEN
		RAISE EXCEPTION '` + msgTxnRowLimit + `' USING ERRCODE = '54000';
	END IF;
	IF total_bytes > max_bytes THEN
		RAISE EXCEPTION 'transaction size limit % exceeded',
			CASE WHEN max_bytes % 1048576 = 0 THEN (max_bytes / 1048576)::text || 'mb' ELSE max_bytes::text || 'b' END
			USING ERRCODE = '54000';
	END IF;
	PERFORM set_config('dsqlsim.txn_rows', total_rows::text, true);
	PERFORM set_config('dsqlsim.txn_bytes', total_bytes::text, true);
	RETURN NULL;
END
$fn$;

CREATE OR REPLACE FUNCTION dsqlsim.add_triggers(rel regclass) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog AS $fn$
BEGIN
	IF NOT EXISTS (SELECT FROM pg_class WHERE oid = rel AND relkind IN ('r', 'p') AND relpersistence <> 't')
		OR EXISTS (SELECT FROM pg_trigger WHERE tgrelid = rel AND tgname = 'dsqlsim_limit_insert') THEN
		RETURN;
	END IF;
	PERFORM set_config('dsqlsim.installing', 'on', true);
	BEGIN
		EXECUTE format('CREATE TRIGGER dsqlsim_limit_insert AFTER INSERT ON %s REFERENCING NEW TABLE AS dsqlsim_new_rows FOR EACH STATEMENT WHEN (coalesce(current_setting(''dsqlsim.max_txn_rows'', true), '''') <> '''') EXECUTE FUNCTION dsqlsim.count_changes()', rel);
		EXECUTE format('CREATE TRIGGER dsqlsim_limit_update AFTER UPDATE ON %s REFERENCING OLD TABLE AS dsqlsim_old_rows NEW TABLE AS dsqlsim_new_rows FOR EACH STATEMENT WHEN (coalesce(current_setting(''dsqlsim.max_txn_rows'', true), '''') <> '''') EXECUTE FUNCTION dsqlsim.count_changes()', rel);
		EXECUTE format('CREATE TRIGGER dsqlsim_limit_delete AFTER DELETE ON %s REFERENCING OLD TABLE AS dsqlsim_old_rows FOR EACH STATEMENT WHEN (coalesce(current_setting(''dsqlsim.max_txn_rows'', true), '''') <> '''') EXECUTE FUNCTION dsqlsim.count_changes()', rel);
	EXCEPTION WHEN feature_not_supported OR wrong_object_type OR invalid_object_definition THEN
		NULL; -- a table PostgreSQL allows no transition tables on (a partition, an inheritance child)
	END;
END
$fn$;

CREATE OR REPLACE FUNCTION dsqlsim.on_ddl_end() RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog AS $fn$
DECLARE
	obj record;
BEGIN
	IF coalesce(current_setting('dsqlsim.max_txn_rows', true), '') = ''
		OR current_setting('dsqlsim.installing', true) = 'on' THEN
		RETURN; -- not an emulator session (its tables stay as they are), or the emulator's own DDL
	END IF;
	FOR obj IN SELECT objid FROM pg_event_trigger_ddl_commands()
		WHERE classid = 'pg_class'::regclass AND object_type = 'table' LOOP
		PERFORM dsqlsim.add_triggers(obj.objid::regclass);
	END LOOP;
	PERFORM set_config('dsqlsim.installing', 'off', true);
END
$fn$;

CREATE OR REPLACE FUNCTION dsqlsim.on_ddl_start() RETURNS event_trigger
LANGUAGE plpgsql SET search_path = pg_catalog AS $fn$
BEGIN
	IF coalesce(current_setting('dsqlsim.max_txn_rows', true), '') = ''
		OR current_setting('dsqlsim.installing', true) = 'on' THEN
		RETURN; -- not an emulator session, or the emulator's own DDL
	END IF;
	IF current_setting('dsqlsim.txn_ddl', true) = 'on' THEN
		RAISE EXCEPTION '` + msgMultipleDDL + `' USING ERRCODE = '0A000';
	END IF;
	IF current_setting('dsqlsim.txn_dml', true) = 'on' THEN
		RAISE EXCEPTION '` + msgDDLAndDML + `' USING ERRCODE = '0A000';
	END IF;
	PERFORM set_config('dsqlsim.txn_ddl', 'on', true);
END
$fn$;

DO $do$
BEGIN
	IF NOT EXISTS (SELECT FROM pg_event_trigger WHERE evtname = 'dsqlsim_ddl_end') THEN
		CREATE EVENT TRIGGER dsqlsim_ddl_end ON ddl_command_end EXECUTE FUNCTION dsqlsim.on_ddl_end();
	END IF;
	IF NOT EXISTS (SELECT FROM pg_event_trigger WHERE evtname = 'dsqlsim_ddl_start') THEN
		CREATE EVENT TRIGGER dsqlsim_ddl_start ON ddl_command_start EXECUTE FUNCTION dsqlsim.on_ddl_start();
	END IF;
END
$do$;

`

// installBackend installs the emulator's schema in the backend database.
func installBackend(ctx context.Context, cfg Config) error {
	ctx, cancel := context.WithTimeout(ctx, installTimeout)
	defer cancel()
	connCfg, err := pgconn.ParseConfig("sslmode=disable")
	if err != nil {
		return err
	}
	connCfg.Host = cfg.BackendSocketDir
	connCfg.Port = uint16(cfg.BackendPort)
	connCfg.User = cfg.BackendSuperuser
	connCfg.Database = cfg.BackendDatabase
	connCfg.Fallbacks = nil
	connCfg.RuntimeParams = map[string]string{"application_name": "dsqlsim install"}
	conn, err := pgconn.ConnectConfig(ctx, connCfg)
	if err != nil {
		return fmt.Errorf("install the emulator's schema: connect to the backend as %q (Config.BackendSuperuser): %w", cfg.BackendSuperuser, err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, "BEGIN;"+installSQL+"COMMIT").ReadAll(); err != nil {
		return fmt.Errorf("install the emulator's schema as %q (Config.BackendSuperuser, which must be a superuser): %w", cfg.BackendSuperuser, err)
	}
	return nil
}

// limitParams are the backend session settings that carry the limits to
// the triggers.
func limitParams(cfg Config) map[string]string {
	return map[string]string{
		settingMaxRows:  strconv.Itoa(cfg.MaxTxnRows),
		settingMaxBytes: strconv.FormatInt(cfg.MaxTxnBytes, 10),
	}
}

// ownError returns the ErrorResponse a client gets in place of an error
// raised by the emulator's own functions in the backend (a limit or a DDL
// rule), or nil for any other error: the same code and message, without the
// context that names the emulator's functions, as DSQL's error has none.
func ownError(e *pgproto3.ErrorResponse) *pgproto3.ErrorResponse {
	if !strings.Contains(e.Where, "function "+backendSchema+".") {
		return nil
	}
	switch e.Code {
	case pgerrcode.ProgramLimitExceeded, pgerrcode.FeatureNotSupported:
	default:
		return nil
	}
	severity := e.Severity
	if severity == "" {
		severity = "ERROR"
	}
	return clientError(severity, e.Code, e.Message, "")
}
