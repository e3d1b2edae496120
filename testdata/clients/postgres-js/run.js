// postgres.js through dsqlgate: its default (automatic, named) prepared
// statements, pipelining (Promise.all and sql.begin returning an array),
// startup parameters, COPY streams, query.cancel() and a reserved
// connection that outlives its upstream.
import fs from 'node:fs'
import { Readable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import postgres from 'postgres'
import {
  testEnv, step, finish, watchdog, check, eq, expectError, killUpstreams, sleep,
  installCrashHandlers, withTimeout,
} from '../shared/report.mjs'

installCrashHandlers()
watchdog(75000)

const E = testEnv()
const ca = fs.readFileSync(E.caFile, 'utf8')
const T = 'pgjs_items'
const t0run = Date.now()
const trace = (msg) => process.env.DSQLGATE_TRACE && process.stderr.write(`[${Date.now() - t0run} ms] ${msg}\n`)

// postgres.js would send URL query parameters it does not know (such as
// sslrootcert) as startup parameters, so the options are spelled out.
const base = {
  host: E.host,
  port: E.port,
  user: E.user,
  pass: E.password,
  database: E.database,
  ssl: { ca }, // verify-full: rejectUnauthorized defaults to true, host checked against the IP SAN
  connect_timeout: 15,
  idle_timeout: 0,
  onnotice: () => {},
}

const parameters = {}
// postgres.js quietly re-prepares and re-sends a query whose prepared
// statement the server says does not exist (routine FetchPreparedStatement),
// which would hide a gateway that lost a statement. Its debug hook runs once
// per send, so counting sends of the table's queries (not postgres.js's own
// type lookups on new connections) shows any such retry.
let sends = 0
const countSends = async (n, what, fn) => {
  const before = sends
  const out = await fn()
  eq(sends - before, n, `${what}: queries sent (a difference means postgres.js retried after an error)`)
  return out
}
// The pool: up to 4 connections, prepared statements on (the default).
const sql = postgres({ ...base, max: 4, onparameter: (k, v) => { parameters[k] = v }, debug: (conn, text) => { if (text.includes(T)) sends++ } })
// A pool whose sessions start with search_path and TimeZone as startup
// parameters (postgres.js's `connection` option).
const sqlState = postgres({ ...base, max: 2, connection: { search_path: `${E.schema},public`, TimeZone: 'Asia/Kolkata', application_name: 'dsqlgate-postgres-js' } })

const getItem = (db, id) => db`select id, name, qty from ${db(E.schema)}.${db(T)} where id = ${id}`
const rowsOf = (r) => r.map((x) => ({ ...x }))

await step('connect_tls', async () => {
  eq(rowsOf(await sql`select 1::int as one`), [{ one: 1 }], 'select 1')
  // Direct TLS (ALPN postgresql, no SSLRequest).
  const direct = postgres({ ...base, max: 1, sslnegotiation: 'direct' })
  try {
    eq(rowsOf(await direct`select 2::int as two`), [{ two: 2 }], 'select over direct TLS')
  } finally {
    await direct.end({ timeout: 2 })
  }
  // The certificate is really checked: without the gateway's CA the
  // connection must fail.
  const untrusted = postgres({ ...base, ssl: {}, max: 1, connect_timeout: 5 })
  try {
    await untrusted`select 1`
    throw new Error('connected without trusting the gateway CA')
  } catch (err) {
    check(/certificate/i.test(err.message), `untrusted CA: unexpected error ${err.message}`)
  } finally {
    await untrusted.end({ timeout: 1 })
  }
  await sql`create table ${sql(E.schema)}.${sql(T)} (id int primary key, name text not null, qty int not null)`
  return 'TLS verify-full with the gateway CA (SSLRequest and direct TLS/ALPN), SCRAM password; refused without the CA'
})

await step('param_query', async () => {
  const s = `it's "quoted" ünï ☃`
  const [r] = await sql`select ${40}::int + ${2}::int as sum, ${s}::text as t, ${null}::text is null as isnull, ${'1.25'}::numeric * 2 as n`
  eq({ ...r }, { sum: 42, t: s, isnull: true, n: '2.50' }, 'row')
  // A 2 MiB text parameter and result.
  const big = 'é'.repeat(1 << 20)
  const [br] = await sql`select length(${big}::text) as n, ${big}::text as echo`
  eq(br.n, 1 << 20, '2 MiB text parameter length')
  check(br.echo === big, '2 MiB text came back changed')
  // postgres.js's insert helper builds a multi-row VALUES with parameters.
  const items = [{ id: 1, name: 'one', qty: 10 }, { id: 2, name: 'two', qty: 20 }]
  await sql`insert into ${sql(E.schema)}.${sql(T)} ${sql(items, 'id', 'name', 'qty')}`
  eq(rowsOf(await sql`select id, name, qty from ${sql(E.schema)}.${sql(T)} where id in ${sql([1, 2])} order by id`), items, 'inserted rows')
  return 'tagged-template parameters (int, text, null, numeric, 2 MiB text), insert helper, IN list helper'
})

await step('prepared_reuse', async () => {
  // postgres.js prepares every tagged query under its own statement name
  // and reuses it per connection: only Bind/Execute after the first use.
  const N = 60
  await countSends(N, 'sequential uses', async () => {
    for (let i = 0; i < N; i++) {
      const id = (i % 2) + 1
      eq(rowsOf(await getItem(sql, id)), [{ id, name: id === 1 ? 'one' : 'two', qty: id * 10 }], `use ${i}`)
    }
  })
  // Pipelining: 200 queries at once over 4 connections (up to 100 in
  // flight on one connection before any answer).
  const res = await countSends(200, 'pipelined uses', () => Promise.all(Array.from({ length: 200 }, (_, i) => getItem(sql, (i % 2) + 1))))
  res.forEach((r, i) => eq(r[0].id, (i % 2) + 1, `pipelined ${i}`))
  // The same statement text with another parameter type is another statement.
  const many = await Promise.all(Array.from({ length: 50 }, (_, i) => sql`select ${'k'}::text || ':' || ${i}::int as v`))
  many.forEach((r, i) => eq(r[0].v, `k:${i}`, `second statement ${i}`))
  // A reserved connection (one session) reusing its statements, pipelined.
  const r = await sql.reserve()
  try {
    const out = await countSends(50, 'reserved pipelined uses', () => Promise.all(Array.from({ length: 50 }, (_, i) => getItem(r, (i % 2) + 1))))
    out.forEach((x, i) => eq(x[0].id, (i % 2) + 1, `reserved pipelined ${i}`))
  } finally {
    r.release()
  }
  return `one prepared statement reused ${N}x in sequence, 200x pipelined on a pool of 4, 50x on one reserved connection; a second statement 50x; no query re-sent`
})

await step('tx_commit', async () => {
  const [a, b] = await sql.begin(async (tx) => {
    const [a] = await tx`insert into ${tx(E.schema)}.${tx(T)} (id, name, qty) values (${10}, ${'ten'}, ${100}) returning id`
    await tx`update ${tx(E.schema)}.${tx(T)} set qty = qty + 1 where id = ${10}`
    const [b] = await getItem(tx, 10)
    return [a, b]
  })
  eq(a.id, 10, 'returning')
  eq(b.qty, 101, 'read own write')
  // Pipelined transaction: sql.begin returning an array of queries.
  await sql.begin((tx) => [
    tx`insert into ${tx(E.schema)}.${tx(T)} (id, name, qty) values (11, 'eleven', 110)`,
    tx`insert into ${tx(E.schema)}.${tx(T)} (id, name, qty) values (12, 'twelve', 120)`,
    tx`update ${tx(E.schema)}.${tx(T)} set qty = qty + 1 where id in (11, 12)`,
  ])
  eq(rowsOf(await sql`select id, qty from ${sql(E.schema)}.${sql(T)} where id between 10 and 12 order by id`),
    [{ id: 10, qty: 101 }, { id: 11, qty: 111 }, { id: 12, qty: 121 }], 'committed rows')
  return 'sql.begin with awaited statements and with a pipelined array; rows visible afterwards'
})

await step('tx_rollback', async () => {
  const marker = new Error('roll me back')
  await expectErrorObj(() => sql.begin(async (tx) => {
    await tx`insert into ${tx(E.schema)}.${tx(T)} (id, name, qty) values (20, 'twenty', 200)`
    eq((await getItem(tx, 20)).length, 1, 'visible inside the transaction')
    throw marker
  }), marker)
  eq((await getItem(sql, 20)).length, 0, 'row after rollback')
  // Explicit ROLLBACK on a reserved connection.
  const r = await sql.reserve()
  try {
    await r`begin`
    await r`insert into ${r(E.schema)}.${r(T)} (id, name, qty) values (21, 'x', 0)`
    await r`rollback`
    eq((await getItem(r, 21)).length, 0, 'row after explicit ROLLBACK')
  } finally {
    r.release()
  }
  return 'sql.begin callback threw → ROLLBACK; explicit BEGIN/ROLLBACK on a reserved connection'
})

const runID = Math.random().toString(16).slice(2, 10)
const marker = (k) => `dsqlgate-${runID}-${k}`

// waitActive waits (up to 10 s) until a query whose text holds mark runs on
// some upstream, seen from another session: a cancel sent then must stop it.
async function waitActive(mark) {
  const deadline = Date.now() + 10000
  while (Date.now() < deadline) {
    const [r] = await sql`select count(*)::int as n from pg_stat_activity where state = 'active' and query like ${'%' + mark + '%'}`
    if (r.n > 0) return
    await sleep(50)
  }
  throw new Error(`the query marked ${mark} never showed up as active in pg_stat_activity`)
}

async function expectErrorObj(fn, want) {
  try {
    await fn()
  } catch (err) {
    if (err === want) return
    throw err
  }
  throw new Error('expected the transaction to fail')
}

await step('error_recovery', async () => {
  await expectError(() => sql`select 1/0`, '22012', 'division by zero')
  eq(rowsOf(await sql`select 2::int as v`), [{ v: 2 }], 'after an error')
  await expectError(() => sql.unsafe('selec 1'), '42601', 'syntax error')
  await expectError(() => sql`select ${'not a number'}::int`, '22P02', 'bad parameter')
  eq((await getItem(sql, 1)).length, 1, 'prepared statement after errors')
  // A failing statement inside sql.begin rolls the whole transaction back.
  await expectError(() => sql.begin(async (tx) => {
    await tx`insert into ${tx(E.schema)}.${tx(T)} (id, name, qty) values (30, 'thirty', 300)`
    await tx`insert into ${tx(E.schema)}.${tx(T)} (id, name, qty) values (1, 'dup', 0)`
  }), '23505', 'duplicate key in a transaction')
  eq((await getItem(sql, 30)).length, 0, 'work before the error rolled back')
  // On one session: 25P02 until ROLLBACK.
  const r = await sql.reserve()
  try {
    await r`begin`
    await expectError(() => r`select 1/0`, '22012', 'error in transaction')
    await expectError(() => r`select 1`, '25P02', 'in a failed transaction')
    await r`rollback`
    eq(rowsOf(await r`select 3::int as v`), [{ v: 3 }], 'after ROLLBACK')
  } finally {
    r.release()
  }
  // Errors in a pipeline do not disturb the other queries.
  const results = await Promise.allSettled([getItem(sql, 1), sql`select 1/0`, getItem(sql, 2), sql`select * from dsqlgate_no_such_table`, getItem(sql, 1)])
  eq(results.map((x) => x.status), ['fulfilled', 'rejected', 'fulfilled', 'rejected', 'fulfilled'], 'pipelined outcomes')
  eq([results[1].reason.code, results[3].reason.code], ['22012', '42P01'], 'pipelined errors')
  return '22012, 42601, 22P02, 23505 in sql.begin (rolled back), 25P02 until ROLLBACK, errors inside a pipeline; all recovered'
})

await step('set_observed', async () => {
  // Startup parameters (postgres.js `connection` option).
  for (let i = 0; i < 5; i++) {
    eq((await sqlState`select current_schema() as s`)[0].s, E.schema, `current_schema from startup (query ${i})`)
    eq((await sqlState`select ${'2024-01-01 00:00:00+00'}::timestamptz::text as t`)[0].t, '2024-01-01 05:30:00+05:30', `TimeZone from startup (query ${i})`)
    eq((await sqlState`select count(*)::int as n from pgjs_items`)[0].n, 5 /* ids 1, 2, 10, 11, 12 */, `unqualified table (query ${i})`)
  }
  // SET on one reserved session; ParameterStatus reported to the client.
  const r = await sql.reserve()
  try {
    await r`set search_path to ${r(E.schema)}, public`
    await r`set timezone to 'America/New_York'`
    for (let i = 0; i < 5; i++) {
      eq((await r`select current_schema() as s`)[0].s, E.schema, `current_schema after SET (query ${i})`)
      eq((await r`select ${'2024-01-01 00:00:00+00'}::timestamptz::text as t`)[0].t, '2023-12-31 19:00:00-05', `TimeZone after SET (query ${i})`)
    }
    eq(parameters.TimeZone, 'America/New_York', 'ParameterStatus TimeZone seen by the client')
    // A SET in a rolled-back transaction is undone.
    await r`begin`
    await r`set timezone to 'UTC'`
    await r`rollback`
    eq((await r`show timezone`)[0].TimeZone, 'America/New_York', 'TimeZone after rolled-back SET')
    await r`reset timezone`
    await r`reset search_path`
  } finally {
    r.release()
  }
  return `search_path/TimeZone as startup parameters seen by 15 queries; SET on a reserved session seen by 10 (and its ParameterStatus); rolled-back SET undone`
})

await step('bulk_insert', async () => {
  const N = 1000
  const t0 = Date.now()
  const w = await sql`copy ${sql(E.schema)}.${sql(T)} (id, name, qty) from stdin`.writable()
  await pipeline(Readable.from((function* () {
    for (let i = 0; i < N; i++) yield `${1000 + i}\tbulk ${i}\t${i}\n`
  })()), w)
  eq({ ...(await sql`select count(*)::int as n, sum(qty)::int as s from ${sql(E.schema)}.${sql(T)} where id >= 1000`)[0] }, { n: N, s: (N * (N - 1)) / 2 }, 'copied rows')
  const rd = await sql`copy (select id from ${sql(E.schema)}.${sql(T)} where id >= 1000 order by id) to stdout`.readable()
  let text = ''
  for await (const chunk of rd) text += chunk.toString()
  eq(text.trim().split('\n').length, N, 'COPY TO rows')
  eq((await getItem(sql, 1005))[0].name, 'bulk 5', 'prepared statement after COPY')
  return `COPY FROM STDIN ${N} rows via .writable() in ${Date.now() - t0} ms; COPY TO STDOUT via .readable()`
})

await step('cancel', async () => {
  // query.cancel() opens a new connection (TLS, like the pool's) and sends
  // a CancelRequest with the gateway-issued key.
  const r = await sql.reserve()
  try {
    const q = r`select pg_sleep(30) /* ${r.unsafe(marker('a'))} */`
    q.catch(() => {}) // awaited below
    await waitActive(marker('a'))
    const t0 = Date.now()
    q.cancel()
    await expectError(() => withTimeout(q, 10000, 'cancelled query'), '57014', 'cancelled pg_sleep')
    const took = Date.now() - t0
    eq(rowsOf(await r`select 5::int as v`), [{ v: 5 }], 'session after cancel')
    // The same inside a transaction.
    await r`begin`
    const q2 = r`select pg_sleep(30) /* ${r.unsafe(marker('b'))} */`
    q2.catch(() => {})
    await waitActive(marker('b'))
    q2.cancel()
    await expectError(() => withTimeout(q2, 10000, 'cancelled query in transaction'), '57014', 'cancelled pg_sleep in a transaction')
    await expectError(() => r`select 1`, '25P02', 'after cancel in a transaction')
    await r`rollback`
    eq(rowsOf(await r`select 6::int as v`), [{ v: 6 }], 'session after ROLLBACK')
    return `query.cancel() (CancelRequest over TLS) stopped a running pg_sleep(30) ${took} ms after it was sent; also inside a transaction (25P02 until ROLLBACK)`
  } finally {
    r.release()
  }
}, 30000)

await step('survive_replacement', async () => {
  const r = await sql.reserve()
  try {
    await r`set search_path to ${r(E.schema)}, public`
    await r`set timezone to 'Asia/Tokyo'`
    const q = (id) => r`select id, name from pgjs_items where id = ${id}`
    eq(rowsOf(await q(1)), [{ id: 1, name: 'one' }], 'before the kill')
    const pidBefore = (await r`select pg_backend_pid() as p`)[0].p
    trace('kill 1')
    const killed = await killUpstreams(E.controlURL)
    trace(`killed ${killed}`)
    check(killed >= 1, `the emulator cut ${killed} sessions`)
    // Right after: the prepared statement (Bind only), then a pipeline.
    eq(rowsOf(await countSends(1, 'first query after the kill', () => q(2))), [{ id: 2, name: 'two' }], 'prepared statement right after the kill')
    trace('first query after kill done')
    const pidAfter = (await r`select pg_backend_pid() as p`)[0].p
    check(pidAfter !== pidBefore, `still on backend ${pidBefore}: no replacement happened`)
    eq((await r`show search_path`)[0].search_path, `${E.schema}, public`, 'search_path after replacement')
    eq((await r`select ${'2024-01-01 00:00:00+00'}::timestamptz::text as t`)[0].t, '2024-01-01 09:00:00+09', 'TimeZone after replacement')
    trace('kill 2')
    const killed2 = await killUpstreams(E.controlURL)
    trace(`killed ${killed2}`)
    const piped = await countSends(20, 'pipelined after the second kill', () => Promise.all(Array.from({ length: 20 }, (_, i) => q((i % 2) + 1))))
    piped.forEach((x, i) => eq(x[0].id, (i % 2) + 1, `pipelined after second kill ${i}`))
    await r`reset timezone`
    await r`reset search_path`
    // The pools' idle sessions (with startup-parameter state) too.
    trace('kill 3')
    const killed3 = await killUpstreams(E.controlURL)
    trace(`killed ${killed3}`)
    eq((await sqlState`select current_schema() as s, ${'2024-01-01 00:00:00+00'}::timestamptz::text as t`).map((x) => ({ ...x })),
      [{ s: E.schema, t: '2024-01-01 05:30:00+05:30' }], 'startup state after kill')
    trace('startup-state pool ok')
    const all = await countSends(20, 'pool after the third kill', () => Promise.all(Array.from({ length: 20 }, (_, i) => getItem(sql, (i % 2) + 1))))
    all.forEach((x, i) => eq(x.length, 1, `pool after kill ${i}`))
    trace('pool ok')
    return `killed ${killed}/${killed2}/${killed3} upstreams between queries; backend ${pidBefore}→${pidAfter}; SET search_path/TimeZone, prepared statements and startup parameters held; pipelined queries right after a kill`
  } finally {
    r.release()
  }
})

await Promise.race([Promise.all([sql.end({ timeout: 2 }), sqlState.end({ timeout: 2 })]), sleep(5000)])
finish()
