// node-postgres (pg) through dsqlgate: Client and Pool, named prepared
// statements, COPY (pg-copy-streams), a real CancelRequest, and a session
// that outlives its upstream.
import crypto from 'node:crypto'
import { Readable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import pg from 'pg'
import { from as copyFrom, to as copyTo } from 'pg-copy-streams'
import {
  testEnv, step as runStep, finish, watchdog, check, eq, expectError, killUpstreams, sleep,
  installCrashHandlers, withTimeout,
} from '../shared/report.mjs'

installCrashHandlers()
watchdog(75000)

const E = testEnv()
const S = pg.escapeIdentifier(E.schema)
const T = `${S}.pg_items` // table used by this client

// The main session: TLS verify-full from the runner's URL, SCRAM with
// channel binding when the gateway offers it.
const main = new pg.Client({ connectionString: E.url, enableChannelBinding: true })
main.on('error', (err) => process.stderr.write(`main client error event: ${err.message}\n`))
const pool = new pg.Pool({ connectionString: E.url, max: 4, idleTimeoutMillis: 0, connectionTimeoutMillis: 15000 })
pool.on('error', (err) => process.stderr.write(`pool idle client error event: ${err.message}\n`))

async function one(client, text, values) {
  const r = await client.query(text, values)
  return r.rows
}

async function scalar(client, text, values) {
  const r = await client.query({ text, values, rowMode: 'array' })
  check(r.rows.length === 1, `${text}: one row, got ${r.rows.length}`)
  return r.rows[0][0]
}

// step runs one step; when it fails, a transaction it left open on the
// main session is rolled back so that the next steps start clean.
// Every step after connect_tls needs the main session: without it they fail
// at once instead of waiting on pg's queue.
let mainUp = false
let mainDown = 'the main session never connected'
main.on('end', () => { mainUp = false; mainDown = 'the main session was closed by the server' })
async function step(name, fn, ms) {
  const ok = await runStep(name, () => {
    if (name !== 'connect_tls' && !mainUp) throw new Error(mainDown)
    return fn()
  }, ms)
  if (!ok && mainUp) await withTimeout(main.query('rollback'), 5000, 'rollback').catch(() => {})
  return ok
}

// marker makes a query text unique to this run, to find it in
// pg_stat_activity.
const runID = crypto.randomBytes(4).toString('hex')
const marker = (k) => `dsqlgate-${runID}-${k}`

// waitActive waits (up to 10 s) until a query whose text holds mark runs on
// some upstream, seen from another session: a cancel sent then must stop it.
async function waitActive(mark) {
  const deadline = Date.now() + 10000
  while (Date.now() < deadline) {
    const r = await pool.query("select count(*)::int as n from pg_stat_activity where state = 'active' and query like $1", [`%${mark}%`])
    if (r.rows[0].n > 0) return
    await sleep(50)
  }
  throw new Error(`the query marked ${mark} never showed up as active in pg_stat_activity`)
}

// startQuery submits a pg.Query (what Client#cancel needs) and gives it
// with a promise of its result.
function startQuery(client, text) {
  let q
  const done = new Promise((resolve, reject) => {
    q = new pg.Query(text, [], (err, res) => (err ? reject(err) : resolve(res)))
  })
  done.catch(() => {}) // the caller awaits it; a step that fails first must not crash the run
  client.query(q)
  return [q, done]
}

const getItem = (id) => ({ name: 'dsqlgate_get_item', text: `select id, name, qty from ${T} where id = $1`, values: [id] })

let saslOffered = null
let saslUsed = null
main.connection.on('authenticationSASL', (m) => { saslOffered = m.mechanisms })
main.connection.on('authenticationSASLFinal', () => { saslUsed = main.saslSession && main.saslSession.mechanism })

await step('connect_tls', async () => {
  await main.connect()
  mainUp = true
  check(saslUsed !== null, `the gateway did not authenticate with SASL (offered: ${saslOffered})`)
  if (saslOffered.includes('SCRAM-SHA-256-PLUS')) eq(saslUsed, 'SCRAM-SHA-256-PLUS', 'mechanism with channel binding offered')
  const sock = main.connection.stream
  check(sock.encrypted === true, 'the connection is not TLS')
  check(sock.authorized === true, `certificate not verified: ${sock.authorizationError}`)
  const proto = sock.getProtocol()
  const ver = await scalar(main, 'select version()')
  check(/PostgreSQL/.test(ver), `version(): ${ver}`)
  // The pool's clients log in the same way.
  const pc = await pool.connect()
  try {
    check(pc.connection.stream.encrypted === true, 'pool client is not TLS')
    eq(await scalar(pc, 'select 1::int'), 1, 'pool select 1')
  } finally {
    pc.release()
  }
  // The password is really checked.
  const wrong = new pg.Client({ host: E.host, port: E.port, user: E.user, database: E.database, password: E.password + 'x', ssl: main.connectionParameters.ssl })
  wrong.on('error', () => {})
  await expectError(() => wrong.connect(), '28P01', 'wrong password')
  // Tables for the run (one DDL per transaction, as DSQL wants).
  await main.query(`create table ${T} (id int primary key, name text not null, qty int not null)`)
  return `TLS ${proto} verified (SAN 127.0.0.1), ${saslUsed} (offered ${saslOffered.join(', ')}); pool connected over TLS; wrong password → 28P01`
})

await step('param_query', async () => {
  const r = await main.query('select $1::int + $2::int as sum, $3::text as t, $4::text is null as isnull, $5::numeric * 2 as n',
    [40, 2, `it's "quoted" ünï ☃`, null, '1.25'])
  eq(r.rows[0], { sum: 42, t: `it's "quoted" ünï ☃`, isnull: true, n: '2.50' }, 'row')
  await main.query(`insert into ${T} (id, name, qty) values ($1, $2, $3), ($4, $5, $6)`, [1, 'one', 10, 2, 'two', 20])
  const rows = await one(main, `select id, name, qty from ${T} where qty >= $1 order by id`, [10])
  eq(rows, [{ id: 1, name: 'one', qty: 10 }, { id: 2, name: 'two', qty: 20 }], 'inserted rows')
  // A 2 MiB bytea parameter and result.
  const blob = crypto.randomBytes(2 << 20)
  const br = await main.query('select length($1::bytea) as n, md5($1::bytea) as h, $1::bytea as echo', [blob])
  eq([br.rows[0].n, br.rows[0].h], [blob.length, crypto.createHash('md5').update(blob).digest('hex')], '2 MiB bytea parameter')
  check(Buffer.compare(br.rows[0].echo, blob) === 0, '2 MiB bytea came back changed')
  // The same through the pool (another session).
  eq((await pool.query('select $1::text || $2::text as s', ['a', 'b'])).rows, [{ s: 'ab' }], 'pool param')
  return 'unnamed extended-protocol queries with int/text/null/numeric parameters and a 2 MiB bytea round trip on Client and Pool'
})

await step('prepared_reuse', async () => {
  // pg parses a named statement once per connection and afterwards sends
  // only Bind/Execute: the gateway must find the statement on whichever
  // upstream runs the work.
  const N = 60
  for (let i = 0; i < N; i++) {
    const id = (i % 2) + 1
    const rows = (await main.query(getItem(id))).rows
    eq(rows, [{ id, name: id === 1 ? 'one' : 'two', qty: id * 10 }], `named statement use ${i}`)
    if (i % 20 === 10) {
      // interleave other work so the statement has to survive it
      await main.query('select 1')
    }
  }
  check(main.connection.parsedStatements.dsqlgate_get_item !== undefined, 'pg did not cache the statement')
  // A second named statement with several parameter types.
  const stmt2 = (a, b) => ({ name: 'dsqlgate_concat', text: 'select $1::text || \':\' || $2::int as v', values: [a, b] })
  for (let i = 0; i < 20; i++) eq((await main.query(stmt2('k', i))).rows[0].v, `k:${i}`, 'concat')
  // Pool: four sessions use the same statement name at once, many times.
  const work = []
  for (let i = 0; i < 40; i++) {
    const id = (i % 2) + 1
    work.push(pool.query(getItem(id)).then((r) => eq(r.rows[0].id, id, 'pool named')))
  }
  await Promise.all(work)
  // pg's pipeline mode: 50 uses of the named statement written at once,
  // each with its own Sync, before any answer is read.
  const piped = new pg.Client({ connectionString: E.url, pipeline: true })
  piped.on('error', (err) => process.stderr.write(`pipelined client error event: ${err.message}\n`))
  await piped.connect()
  try {
    const res = await Promise.all(Array.from({ length: 50 }, (_, i) => piped.query(getItem((i % 2) + 1))))
    res.forEach((r, i) => eq(r.rows[0].id, (i % 2) + 1, `pipelined use ${i}`))
  } finally {
    await piped.end()
  }
  return `named statement reused ${N}x on one Client (parsed once), 20x a second one, 40x concurrently on a Pool of ${pool.totalCount}, 50x pipelined on one connection`
})

await step('tx_commit', async () => {
  await main.query('begin')
  await main.query(`insert into ${T} (id, name, qty) values ($1, $2, $3)`, [10, 'ten', 100])
  await main.query(getItem(10)) // named statement inside the transaction
  await main.query(`update ${T} set qty = qty + 1 where id = $1`, [10])
  await main.query('commit')
  // Visible from another session.
  eq((await pool.query(getItem(10))).rows, [{ id: 10, name: 'ten', qty: 101 }], 'committed row from another session')
  // A transaction on a pool client.
  const pc = await pool.connect()
  try {
    await pc.query('begin')
    await pc.query(`insert into ${T} (id, name, qty) values (11, 'eleven', 110)`)
    await pc.query('commit')
  } finally {
    pc.release()
  }
  eq(await scalar(main, `select count(*)::int from ${T} where id in (10, 11)`), 2, 'both committed')
  return 'BEGIN/INSERT/UPDATE/COMMIT on Client and on a Pool client, seen from the other session'
})

await step('tx_rollback', async () => {
  await main.query('begin')
  await main.query(`insert into ${T} (id, name, qty) values ($1, $2, $3)`, [20, 'twenty', 200])
  eq((await main.query(getItem(20))).rows.length, 1, 'row visible inside the transaction')
  await main.query('rollback')
  eq((await main.query(getItem(20))).rows.length, 0, 'row after rollback')
  eq((await pool.query(getItem(20))).rows.length, 0, 'row after rollback, other session')
  return 'inserted row gone after ROLLBACK, in this session and another'
})

await step('error_recovery', async () => {
  await expectError(() => main.query('select 1/0'), '22012', 'division by zero')
  eq(await scalar(main, 'select 2::int'), 2, 'after a simple-query error')
  await expectError(() => main.query('selec 1'), '42601', 'syntax error')
  await expectError(() => main.query({ name: 'dsqlgate_bad_param', text: 'select $1::int as v', values: ['not a number'] }), '22P02', 'bad parameter')
  eq((await main.query(getItem(1))).rows.length, 1, 'named statement after an extended-protocol error')
  // An error inside a transaction aborts it until ROLLBACK.
  await main.query('begin')
  await main.query(`insert into ${T} (id, name, qty) values (30, 'thirty', 300)`)
  await expectError(() => main.query(`insert into ${T} (id, name, qty) values (1, 'dup', 0)`), '23505', 'duplicate key')
  await expectError(() => main.query('select 1'), '25P02', 'statement in a failed transaction')
  await main.query('rollback')
  eq((await main.query(getItem(30))).rows.length, 0, 'work before the error was rolled back')
  // COMMIT of a failed transaction reports ROLLBACK.
  await main.query('begin')
  await expectError(() => main.query('select 1/0'), '22012', 'error in transaction')
  const r = await main.query('commit')
  eq(r.command, 'ROLLBACK', 'COMMIT of a failed transaction')
  // Pool: an error does not poison the pooled session.
  await expectError(() => pool.query('select * from dsqlgate_no_such_table'), '42P01', 'undefined table')
  eq((await pool.query('select 3 as v')).rows[0].v, 3, 'pool after error')
  return '22012, 42601, 22P02 (Bind), 23505 then 25P02 until ROLLBACK, COMMIT→ROLLBACK, 42P01 on Pool; all recovered'
})

await step('set_observed', async () => {
  await main.query(`set search_path to ${S}, public`)
  await main.query(`set timezone to 'Asia/Kolkata'`)
  const ts = "select '2024-01-01 00:00:00+00'::timestamptz::text"
  for (let i = 0; i < 5; i++) {
    eq(await scalar(main, 'select current_schema()'), E.schema, `current_schema (query ${i})`)
    eq(await scalar(main, ts), '2024-01-01 05:30:00+05:30', `timestamptz in Asia/Kolkata (query ${i})`)
    eq(await scalar(main, 'select count(*)::int from pg_items where id = $1', [1]), 1, `unqualified table via search_path (query ${i})`)
  }
  // A SET in a rolled-back transaction is undone; SET LOCAL does not outlive
  // its transaction.
  await main.query('begin')
  await main.query("set timezone to 'UTC'")
  await main.query('rollback')
  eq(await scalar(main, 'show timezone'), 'Asia/Kolkata', 'TimeZone after a rolled-back SET')
  await main.query('begin')
  await main.query("set local timezone to 'UTC'")
  eq(await scalar(main, 'show timezone'), 'UTC', 'SET LOCAL inside its transaction')
  await main.query('commit')
  eq(await scalar(main, 'show timezone'), 'Asia/Kolkata', 'TimeZone after SET LOCAL committed')
  // Pool: each session keeps its own settings while they interleave.
  const zones = ['America/New_York', 'Europe/Paris', 'Asia/Tokyo', 'UTC']
  const clients = await Promise.all(zones.map(() => pool.connect()))
  try {
    await Promise.all(clients.map((c, i) => c.query(`set timezone to '${zones[i]}'`)))
    for (let round = 0; round < 5; round++) {
      await Promise.all(clients.map(async (c, i) => eq(await scalar(c, 'show timezone'), zones[i], `pool session ${i} round ${round}`)))
    }
    await Promise.all(clients.map((c) => c.query('reset timezone')))
  } finally {
    clients.forEach((c) => c.release())
  }
  return `search_path=${E.schema}, TimeZone=Asia/Kolkata seen by 15 later queries; rolled-back SET undone; SET LOCAL scoped; 4 pool sessions with 4 zones interleaved`
})

await step('bulk_insert', async () => {
  // 2,500 rows of ~400 bytes (about 1 MB; DSQL allows 3,000 rows and
  // 10 MiB in one transaction).
  const N = 2500
  const pad = 'x'.repeat(380)
  const rows = Readable.from((function* () {
    for (let i = 0; i < N; i++) yield `${1000 + i}\tbulk ${i}\\twith tab ${pad}\t${i}\n`
  })())
  const t0 = Date.now()
  const ingest = main.query(copyFrom('copy pg_items (id, name, qty) from stdin'))
  await pipeline(rows, ingest)
  eq(ingest.rowCount, N, 'COPY row count')
  eq((await main.query(`select count(*)::int as n, sum(qty)::int as s from ${T} where id >= 1000`)).rows[0], { n: N, s: (N * (N - 1)) / 2 }, 'copied rows')
  eq((await main.query(getItem(1005))).rows[0].name, `bulk 5\twith tab ${pad}`, 'escaped tab survived')
  // And back out with COPY TO STDOUT.
  const out = main.query(copyTo('copy (select id from pg_items where id >= 1000 order by id) to stdout'))
  let text = ''
  out.on('data', (b) => { text += b.toString() })
  await new Promise((resolve, reject) => { out.on('end', resolve); out.on('error', reject) })
  eq(text.trim().split('\n').length, N, 'COPY TO row count')
  // The session is fine after COPY.
  eq((await main.query(getItem(1))).rows.length, 1, 'named statement after COPY')
  return `COPY FROM STDIN ${N} rows (~1 MB) in ${Date.now() - t0} ms (pg-copy-streams), COPY TO STDOUT read them back`
})

await step('cancel', async () => {
  // A real CancelRequest: pg's Client#cancel opens a new connection to the
  // gateway and sends the BackendKeyData the gateway issued to `main`.
  check(main.processID != null && main.secretKey != null, 'no BackendKeyData')
  const canceller = () => new pg.Client({ host: E.host, port: E.port, user: E.user, password: E.password, database: E.database })
  const [q, running] = startQuery(main, `select pg_sleep(30) /* ${marker('a')} */`)
  await waitActive(marker('a'))
  const t0 = Date.now()
  canceller().cancel(main, q)
  await expectError(() => withTimeout(running, 10000, 'cancelled query'), '57014', 'cancelled pg_sleep')
  const took = Date.now() - t0
  eq(await scalar(main, 'select 5::int'), 5, 'session after cancel')
  // Inside a transaction: the cancel aborts the transaction.
  await main.query('begin')
  const [q2, running2] = startQuery(main, `select pg_sleep(30) /* ${marker('b')} */`)
  await waitActive(marker('b'))
  canceller().cancel(main, q2)
  await expectError(() => withTimeout(running2, 10000, 'cancelled query in transaction'), '57014', 'cancelled pg_sleep in transaction')
  await expectError(() => main.query('select 1'), '25P02', 'after cancel in transaction')
  await main.query('rollback')
  // statement_timeout (DSQL refuses it; the gateway enforces it with its
  // own cancel) on a pool session.
  const pc = await pool.connect()
  try {
    await pc.query('set statement_timeout = 300')
    const t1 = Date.now()
    await expectError(() => pc.query('select pg_sleep(10)'), '57014', 'statement_timeout')
    check(Date.now() - t1 < 5000, 'statement_timeout fired late')
    await pc.query('reset statement_timeout')
    eq((await pc.query('select 6 as v')).rows[0].v, 6, 'pool session after statement_timeout')
  } finally {
    pc.release()
  }
  // statement_timeout as a startup parameter (pg's statement_timeout
  // option), which DSQL would refuse at startup.
  const st = new pg.Client({ connectionString: E.url, statement_timeout: 300 })
  st.on('error', () => {})
  await st.connect()
  try {
    eq(await scalar(st, 'show statement_timeout'), '300ms', 'statement_timeout from startup')
    await expectError(() => st.query('select pg_sleep(10)'), '57014', 'startup statement_timeout')
    eq(await scalar(st, 'select 7::int'), 7, 'after startup statement_timeout')
  } finally {
    await st.end()
  }
  return `CancelRequest stopped a running pg_sleep(30) ${took} ms after it was sent (autocommit and in a transaction → 25P02 until ROLLBACK); statement_timeout=300ms (SET and startup parameter) → 57014`
}, 30000)

await step('survive_replacement', async () => {
  // State the session holds: search_path and TimeZone (set above), the
  // named statement pg believes is prepared, and a new one.
  const named = { name: 'dsqlgate_survivor', text: 'select count(*)::int as n from pg_items where id < $1', values: [3] }
  eq((await main.query(named)).rows[0].n, 2, 'named statement before the kill')
  const pidBefore = await scalar(main, 'select pg_backend_pid()')
  const killed = await killUpstreams(E.controlURL)
  check(killed >= 1, `the emulator cut ${killed} sessions`)
  // The very next query, on the same open connection, with no retry.
  eq((await main.query(named)).rows[0].n, 2, 'named statement right after the kill (Bind only)')
  const pidAfter = await scalar(main, 'select pg_backend_pid()')
  check(pidAfter !== pidBefore, `still on backend ${pidBefore}: no replacement happened`)
  eq(await scalar(main, 'show search_path'), `${E.schema}, public`, 'search_path after replacement')
  eq(await scalar(main, "select '2024-01-01 00:00:00+00'::timestamptz::text"), '2024-01-01 05:30:00+05:30', 'TimeZone after replacement')
  eq((await main.query(getItem(2))).rows[0].name, 'two', 'older named statement after replacement')
  // Kill again, then a transaction first.
  check(await killUpstreams(E.controlURL) >= 1, 'second kill cut nothing')
  await main.query('begin')
  await main.query('insert into pg_items (id, name, qty) values ($1, $2, $3)', [40, 'forty', 400])
  await main.query('commit')
  eq((await main.query(getItem(40))).rows.length, 1, 'transaction after the second kill')
  // Pool: its idle sessions lost their upstreams too.
  const killed3 = await killUpstreams(E.controlURL)
  const res = await Promise.all([1, 2, 1, 2].map((id) => pool.query(getItem(id))))
  res.forEach((r, i) => eq(r.rows.length, 1, `pool query ${i} after kill`))
  // Lost inside an explicit transaction: the documented 40001, the
  // transaction stays failed until ROLLBACK, and the session goes on.
  await main.query('begin')
  await main.query('insert into pg_items (id, name, qty) values ($1, $2, $3)', [41, 'lost', 0])
  check(await killUpstreams(E.controlURL) >= 1, 'kill inside a transaction cut nothing')
  await expectError(() => main.query(getItem(41)), '40001', 'first statement after the upstream was lost in a transaction')
  await expectError(() => main.query('select 1'), '25P02', 'transaction stays failed')
  await main.query('rollback')
  eq((await main.query(getItem(41))).rows.length, 0, 'the lost transaction did not commit')
  eq(await scalar(main, 'show timezone'), 'Asia/Kolkata', 'TimeZone after a transaction was lost')
  return `killed ${killed}, ${killed3} upstreams between queries; backend ${pidBefore}→${pidAfter}; search_path, TimeZone and 3 named statements held; Pool of ${pool.totalCount} unaffected; lost inside a transaction → 40001, 25P02 until ROLLBACK, session kept`
})

await Promise.race([Promise.all([main.end(), pool.end()]), sleep(5000)])
finish()
