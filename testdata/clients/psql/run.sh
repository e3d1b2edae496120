#!/usr/bin/env bash
# The client scenario for psql (internal/clients/doc.go has the protocol and
# the steps). One interactive psql session, run in a pseudo-terminal by
# script(1) so that Ctrl-C behaves as for a person at a terminal: psql sends
# a CancelRequest and the session goes on (psql reading a pipe would exit
# instead). Each command is followed by \echo MARKER; the output up to the
# marker is that command's.
set -uo pipefail

psql_bin="${DSQLGATE_TEST_PG_BINDIR:-$(dirname "$(command -v psql)")}/psql"
schema="$DSQLGATE_TEST_SCHEMA"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

json_escape() {
  local s=${1//\\/\\\\}
  s=${s//\"/\\\"}
  s=${s//$'\n'/\\n}
  s=${s//$'\t'/\\t}
  s=${s//$'\r'/}
  printf '%s' "$s" | tr -d '\000-\010\013\014\016-\037'
}

# report STEP OK DETAIL prints one result line.
report() {
  printf '{"step":"%s","ok":%s,"detail":"%s"}\n' "$1" "$2" "$(json_escape "$3")"
}

version="$("$psql_bin" --version)"                    # psql (PostgreSQL) 15.13 (Debian ...)
major="$(sed -E 's/^[^0-9]*([0-9]+).*/\1/' <<<"$version")"
printf '{"version":"%s"}\n' "$(json_escape "psql $(awk '{print $3}' <<<"$version")")"

# The session: no echo of what we type, no CR before LF, and no flush of
# typed-ahead input on Ctrl-C (the marker after a cancelled query must
# survive it). READY says the terminal is set before anything is typed.
export PSQL_BIN="$psql_bin" PSQL_URL="$DSQLGATE_TEST_URL"
coproc PSQL {
  exec script -qfec 'stty -echo -onlcr noflsh; echo READY; exec "$PSQL_BIN" -X -q -A -t -n -P pager=off -v PROMPT1= -v PROMPT2= -v VERBOSITY=verbose -d "$PSQL_URL"' /dev/null
}
# Coprocess descriptors are not inherited by subshells; copies are.
exec {to_psql}>&"${PSQL[1]}" {from_psql}<&"${PSQL[0]}"
ready=""
while IFS= read -r -t 20 line <&"$from_psql"; do
  if [[ ${line%$'\r'} == READY ]]; then ready=1; break; fi
done
if [[ -z $ready ]]; then
  echo "the pseudo-terminal did not start" >&2
  exit 1
fi

# run SQL sends SQL (and meta-commands) and sets OUT to psql's output up to
# the marker; it fails when psql does not answer within 40 s.
marker_seq=0
run() {
  marker_seq=$((marker_seq + 1))
  local marker="--done-$marker_seq-$RANDOM--" line
  printf '%s\n\\echo %s\n' "$1" "$marker" >&"$to_psql"
  OUT=""
  while IFS= read -r -t 40 line <&"$from_psql"; do
    line=${line%$'\r'}
    if [[ $line == "$marker" ]]; then return 0; fi
    OUT+="$line"$'\n'
  done
  OUT+="(psql did not answer)"
  return 1
}

# lines TEXT joins TEXT's lines with |.
lines() {
  local s=${1%$'\n'}
  printf '%s' "${s//$'\n'/|}"
}

# expect STEP WANT GOT fails STEP unless GOT == WANT; prints nothing on success.
failed=""
expect() {
  if [[ "$3" != "$2" ]]; then
    failed="$failed$1: got '$3', want '$2'; "
  fi
}
# contains WHAT NEEDLE fails unless OUT has NEEDLE.
contains() {
  if [[ "$OUT" != *"$2"* ]]; then
    failed="$failed$1: no '$2' in '$OUT'; "
  fi
}
# finish STEP DETAIL reports the step from $failed and resets it.
finish() {
  if [[ -z $failed ]]; then report "$1" true "$2"; else report "$1" false "$failed"; fi
  failed=""
}

# connect_tls: the session is up over TLS (verify-full in the URL); make the tables.
run '\conninfo'
contains conninfo "SSL connection (protocol: TLS"
tls="$(grep -o 'protocol: [^,]*' <<<"$OUT")"
run "create table $schema.items (id int primary key, name text not null, qty int not null);"
expect "create items" "" "$OUT"
run "create table $schema.bulk (id int primary key, payload text not null);"
expect "create bulk" "" "$OUT"
finish connect_tls "$tls verify-full"

# param_query: psql 16 has \bind (extended protocol with parameters); psql
# 15 only interpolates its variables into the text.
if ((major >= 16)); then
  run "select \$1::int + \$2::int, upper(\$3) || ' ' || \$4, \$5::text is null \\bind 40 2 dsql 'ünïcode' '' \\g"
  expect "bind" "42|DSQL ünïcode|f" "${OUT%$'\n'}"
  finish param_query "\\bind with 5 parameters"
else
  run "\\set n 40
\\set word 'it''s ünïcode'
select :n + 2, :'word';"
  expect "variables" "42|it's ünïcode" "${OUT%$'\n'}"
  if [[ -z $failed ]]; then
    report param_query true "skipped: psql $major has no bound parameters (\\bind came in psql 16); its :'variables', interpolated into the text, work"
  else
    finish param_query ""
  fi
fi

# prepared_reuse: psql 18 has \parse and \bind_named (protocol-level named
# statements). Before it psql has none, and SQL PREPARE is refused by DSQL
# (if it ever works, it is used).
prepared=""
if ((major >= 18)); then
  run "select \$1::int * 2 \\parse double_it"
  expect "\\parse" "" "$OUT"
  for i in $(seq 1 25); do
    run "\\bind_named double_it $i \\g"
    expect "\\bind_named $i" "$((i * 2))" "${OUT%$'\n'}"
  done
  prepared="\\bind_named double_it 21 \\g"
  finish prepared_reuse "\\parse, 25 x \\bind_named"
else
  run "PREPARE double_it(int) AS select \$1 * 2;"
  if [[ $OUT == *"0A000"* ]]; then
    run "select 'alive';"
    expect "after the refused PREPARE" "alive" "${OUT%$'\n'}"
    if [[ -z $failed ]]; then
      report prepared_reuse true "skipped: psql $major has no protocol-level prepared statements (\\parse came in psql 18) and SQL PREPARE is refused by DSQL (0A000, the session goes on)"
    else
      finish prepared_reuse ""
    fi
  else
    expect "PREPARE" "" "$OUT"
    for i in $(seq 1 25); do
      run "EXECUTE double_it($i);"
      expect "EXECUTE $i" "$((i * 2))" "${OUT%$'\n'}"
    done
    prepared="EXECUTE double_it(21);"
    finish prepared_reuse "SQL PREPARE, 25 EXECUTEs"
  fi
fi

# tx_commit
run "begin;
insert into $schema.items values (1, 'item 1', 10);
insert into $schema.items values (2, 'item 2', 20), (3, 'item 3', 30);
commit;
select count(*), sum(qty) from $schema.items;"
expect "after COMMIT" "3|60" "${OUT%$'\n'}"
finish tx_commit "3 rows"

# tx_rollback
run "begin;
insert into $schema.items values (100, 'rolled back', 1);
select count(*) from $schema.items;
rollback;
select count(*) from $schema.items;"
expect "inside, then after ROLLBACK" $'4\n3' "${OUT%$'\n'}"
finish tx_rollback ""

# error_recovery: VERBOSITY verbose shows the SQLSTATE.
run "insert into $schema.items values (1, 'duplicate', 0);"
contains "duplicate key" "ERROR:  23505"
run "select 'alive';"
expect "after the error" "alive" "${OUT%$'\n'}"
run "begin;
select 1/0;"
contains "division by zero" "ERROR:  22012"
run "select 1;"
contains "in the failed transaction" "ERROR:  25P02"
run "rollback;
select count(*) from $schema.items;"
expect "after ROLLBACK" "3" "${OUT%$'\n'}"
finish error_recovery "23505, then 22012 and 25P02 in a transaction"

# check_settings WHEN: the session sees search_path and TimeZone, in
# queries and in \dt and \d (which find tables through search_path).
check_settings() {
  run "select count(*) from items;
select current_setting('search_path');
select current_setting('TimeZone');
select '2024-01-15 12:00:00+00'::timestamptz::text;
show TimeZone;"
  expect "$1: settings" "3|$schema, public|America/New_York|2024-01-15 07:00:00-05|America/New_York" "$(lines "$OUT")"
  run '\dt'
  contains "$1: \\dt" "$schema|items|table"
  contains "$1: \\dt" "$schema|bulk|table"
  run '\d items'
  contains "$1: \\d items" "qty|integer"
}

# set_observed
run "SET search_path TO $schema, public;
SET TimeZone TO 'America/New_York';"
expect "SET" "" "$OUT"
check_settings "after SET"
finish set_observed "search_path (queries, \\dt, \\d), TimeZone"

# bulk_insert: \copy from a file, and back out to stdout.
seq 1 1000 | awk '{ printf "%d\tpayload %d\n", $1, $1 }' >"$work/bulk.tsv"
run "\\copy bulk (id, payload) from '$work/bulk.tsv'"
expect "\\copy from" "" "$OUT"
run "select count(*), sum(id) from bulk;"
expect "after \\copy" "1000|500500" "${OUT%$'\n'}"
run "\\copy (select id, payload from bulk where id <= 3 order by id) to stdout"
expect "\\copy to stdout" $'1\tpayload 1\n2\tpayload 2\n3\tpayload 3' "${OUT%$'\n'}"
finish bulk_insert "\\copy from a file (COPY FROM STDIN), \\copy to stdout"

# cancel: Ctrl-C while pg_sleep(30) runs; psql sends a CancelRequest.
(sleep 0.5; printf '\003' >&"$to_psql") &
ctrl_c=$!
start=$(date +%s%N)
run "select pg_sleep(30);"
took=$((($(date +%s%N) - start) / 1000000))
wait "$ctrl_c"
contains "pg_sleep(30)" "ERROR:  57014: canceling statement due to user request"
if ((took > 10000)); then failed="${failed}the cancel took ${took} ms; "; fi
check_settings "after the cancel"
finish cancel "Ctrl-C: CancelRequest, 57014 after ${took} ms"

# survive_replacement: the emulator cuts every upstream between two queries.
run "select 'before';"
expect "before the kill" "before" "${OUT%$'\n'}"
killed="$(curl -fsS -X POST "$DSQLGATE_TEST_CONTROL_URL/kill?all=1")"
if [[ $killed != *'"killed":'[1-9]* ]]; then failed="${failed}kill: $killed; "; fi
check_settings "after the kill"
run "select name from items where id = 2;"
expect "after the kill" "item 2" "${OUT%$'\n'}"
if [[ -n $prepared ]]; then
  run "$prepared"
  expect "prepared statement after the kill" "42" "${OUT%$'\n'}"
  finish survive_replacement "search_path (queries, \\dt, \\d), TimeZone, the prepared statement"
else
  finish survive_replacement "search_path (queries, \\dt, \\d), TimeZone"
fi

printf '\\q\n' >&"$to_psql"
exec {to_psql}>&- {from_psql}<&-
wait "$PSQL_PID" 2>/dev/null
exit 0
