// Kysely (typed query builder) over node-postgres through dsqlgate. run.sh
// type-checks this file with tsc, so the queries below are checked against
// the Database interface, then bundles it with esbuild and runs it.
import {
  Kysely, PostgresDialect, sql, CompiledQuery,
  type Generated, type Insertable, type Selectable,
} from 'kysely'
import pg from 'pg'
import {
  testEnv, step, skip, finish, watchdog, check, eq, expectError, killUpstreams, sleep,
  installCrashHandlers,
} from '../shared/report.mjs'

installCrashHandlers()
watchdog(75000)

const E = testEnv()

interface ItemTable {
  id: number
  name: string
  qty: number
  created_at: Generated<string>
}
interface Database {
  kysely_items: ItemTable
}
type Item = Selectable<ItemTable>
type NewItem = Insertable<ItemTable>

// Every pooled session starts by setting search_path and TimeZone
// (Kysely's onCreateConnection hook): the typed queries below name their
// table without a schema, so they only work if the setting holds.
const ZONE = 'Asia/Kolkata'
let tlsConnections = 0
let connections = 0
const pool = new pg.Pool({ connectionString: E.url, max: 4, idleTimeoutMillis: 0, connectionTimeoutMillis: 15000 })
pool.on('connect', (client) => {
  connections++
  const stream = (client as unknown as { connection: { stream: { encrypted?: boolean, authorized?: boolean } } }).connection.stream
  if (stream.encrypted && stream.authorized) tlsConnections++
})
pool.on('error', (err) => process.stderr.write(`pool idle client error event: ${err.message}\n`))

const db = new Kysely<Database>({
  dialect: new PostgresDialect({
    pool,
    onCreateConnection: async (conn) => {
      await conn.executeQuery(CompiledQuery.raw(`set search_path to ${quoteIdent(E.schema)}, public`))
      await conn.executeQuery(CompiledQuery.raw(`set timezone to '${ZONE}'`))
    },
  }),
})

function quoteIdent(s: string): string {
  return '"' + s.replace(/"/g, '""') + '"'
}

const byId = (id: number) => db.selectFrom('kysely_items').select(['id', 'name', 'qty']).where('id', '=', id)

await step('connect_tls', async () => {
  const r = await sql<{ one: number }>`select 1::int as one`.execute(db)
  eq(r.rows, [{ one: 1 }], 'select 1')
  check(connections >= 1 && tlsConnections === connections, `${tlsConnections} of ${connections} connections verified TLS`)
  await db.schema.createTable('kysely_items')
    .addColumn('id', 'integer', (c) => c.primaryKey())
    .addColumn('name', 'text', (c) => c.notNull())
    .addColumn('qty', 'integer', (c) => c.notNull())
    .addColumn('created_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .execute()
  return `pg Pool from the verify-full URL: ${tlsConnections}/${connections} connections TLS-verified; table created in search_path schema`
})

await step('param_query', async () => {
  const rows: NewItem[] = [{ id: 1, name: 'one', qty: 10 }, { id: 2, name: `it's "two" ☃`, qty: 20 }]
  const inserted = await db.insertInto('kysely_items').values(rows).returning(['id']).execute()
  eq(inserted.map((r) => r.id), [1, 2], 'returning ids')
  const got: Pick<Item, 'id' | 'name' | 'qty'>[] = await db.selectFrom('kysely_items')
    .select(['id', 'name', 'qty']).where('qty', '>=', 10).where('name', 'in', ['one', `it's "two" ☃`]).orderBy('id').execute()
  eq(got, [{ id: 1, name: 'one', qty: 10 }, { id: 2, name: `it's "two" ☃`, qty: 20 }], 'typed select')
  const agg = await db.selectFrom('kysely_items').select((eb) => [eb.fn.sum<string>('qty').as('total'), eb.fn.countAll<string>().as('n')]).executeTakeFirstOrThrow()
  eq(agg, { total: '30', n: '2' }, 'aggregate')
  return 'typed insert (multi-row VALUES with parameters, RETURNING), select with where/in/orderBy, aggregates'
})

await step('prepared_reuse', async () => {
  // Kysely's pg driver sends every query as an unnamed statement
  // (client.query(text, values)): there is no named or cached prepared
  // statement to reuse. The same compiled query still runs many times
  // across the pool, each one Parse/Bind/Execute.
  const compiled = byId(1).compile()
  const res = await Promise.all(Array.from({ length: 50 }, (_, i) => db.executeQuery(byId((i % 2) + 1).compile())))
  res.forEach((r, i) => eq(r.rows[0].id, (i % 2) + 1, `run ${i}`))
  eq((await db.executeQuery(compiled)).rows.length, 1, 'precompiled query')
  skip('prepared_reuse', 'Kysely (PostgresDialect over pg) has no named or cached prepared statements: every query is an unnamed Parse; ran one compiled query 50x across 4 pooled sessions instead')
})

await step('tx_commit', async () => {
  const out = await db.transaction().execute(async (trx) => {
    await trx.insertInto('kysely_items').values({ id: 10, name: 'ten', qty: 100 }).execute()
    await trx.updateTable('kysely_items').set((eb) => ({ qty: eb('qty', '+', 1) })).where('id', '=', 10).execute()
    return trx.selectFrom('kysely_items').select('qty').where('id', '=', 10).executeTakeFirstOrThrow()
  })
  eq(out.qty, 101, 'read own write')
  // A controlled transaction, committed by hand.
  const trx = await db.startTransaction().execute()
  await trx.insertInto('kysely_items').values({ id: 11, name: 'eleven', qty: 110 }).execute()
  await trx.commit().execute()
  eq(await db.selectFrom('kysely_items').select('id').where('id', 'in', [10, 11]).orderBy('id').execute(), [{ id: 10 }, { id: 11 }], 'committed rows')
  return 'db.transaction().execute() and startTransaction()/commit(); rows visible afterwards'
})

await step('tx_rollback', async () => {
  const marker = new Error('roll me back')
  try {
    await db.transaction().execute(async (trx) => {
      await trx.insertInto('kysely_items').values({ id: 20, name: 'twenty', qty: 200 }).execute()
      eq((await trx.selectFrom('kysely_items').select('id').where('id', '=', 20).execute()).length, 1, 'visible inside')
      throw marker
    })
    throw new Error('transaction did not fail')
  } catch (err) {
    if (err !== marker) throw err
  }
  eq((await byId(20).execute()).length, 0, 'row after callback rollback')
  const trx = await db.startTransaction().execute()
  await trx.insertInto('kysely_items').values({ id: 21, name: 'x', qty: 0 }).execute()
  await trx.rollback().execute()
  eq((await byId(21).execute()).length, 0, 'row after rollback()')
  return 'callback threw → ROLLBACK; startTransaction()/rollback()'
})

await step('error_recovery', async () => {
  await expectError(() => db.insertInto('kysely_items').values({ id: 1, name: 'dup', qty: 0 }).execute(), '23505', 'duplicate key')
  eq((await byId(1).execute()).length, 1, 'after a duplicate key')
  await expectError(() => sql`select 1/0`.execute(db), '22012', 'division by zero')
  await expectError(() => sql`select no_such_column from kysely_items`.execute(db), '42703', 'undefined column')
  // An error inside a transaction rolls all of it back.
  await expectError(() => db.transaction().execute(async (trx) => {
    await trx.insertInto('kysely_items').values({ id: 30, name: 'thirty', qty: 300 }).execute()
    await trx.insertInto('kysely_items').values({ id: 2, name: 'dup', qty: 0 }).execute()
  }), '23505', 'duplicate key in a transaction')
  eq((await byId(30).execute()).length, 0, 'work before the error rolled back')
  // In a controlled transaction: 25P02 until rollback.
  const trx = await db.startTransaction().execute()
  await expectError(() => sql`select 1/0`.execute(trx), '22012', 'error in transaction')
  await expectError(() => trx.selectFrom('kysely_items').select('id').execute(), '25P02', 'in a failed transaction')
  await trx.rollback().execute()
  eq((await byId(2).execute()).length, 1, 'after rollback')
  return '23505, 22012, 42703, 23505 in a transaction (rolled back), 25P02 until rollback(); all recovered'
})

await step('set_observed', async () => {
  // Settings from onCreateConnection, observed on every pooled session.
  const res = await Promise.all(Array.from({ length: 12 }, () =>
    sql<{ s: string, t: string, n: number }>`select current_schema() as s, ${'2024-01-01 00:00:00+00'}::timestamptz::text as t, (select count(*)::int from kysely_items) as n`.execute(db)))
  res.forEach((r, i) => eq(r.rows[0], { s: E.schema, t: '2024-01-01 05:30:00+05:30', n: 4 }, `pooled query ${i}`))
  // A SET on one session (db.connection()) observed by its later queries;
  // a SET rolled back is undone.
  await db.connection().execute(async (conn) => {
    await sql`set timezone to 'America/New_York'`.execute(conn)
    for (let i = 0; i < 5; i++) {
      eq((await sql<{ t: string }>`select ${'2024-01-01 00:00:00+00'}::timestamptz::text as t`.execute(conn)).rows[0].t, '2023-12-31 19:00:00-05', `after SET (query ${i})`)
    }
    await conn.transaction().execute(async (trx) => {
      await sql`set timezone to 'UTC'`.execute(trx)
      await sql`select 1/0`.execute(trx)
    }).catch(() => {})
    eq((await sql<{ TimeZone: string }>`show timezone`.execute(conn)).rows[0].TimeZone, 'America/New_York', 'after a rolled-back SET')
    await sql`set timezone to '${sql.raw(ZONE)}'`.execute(conn)
  })
  return `search_path=${E.schema} and TimeZone=${ZONE} set in onCreateConnection seen by 12 pooled queries; SET on one connection seen by 5; rolled-back SET undone`
})

await step('bulk_insert', async () => {
  // Kysely has no COPY: one multi-row INSERT with 3,000 parameters.
  const N = 1000
  const rows: NewItem[] = Array.from({ length: N }, (_, i) => ({ id: 1000 + i, name: `bulk ${i}`, qty: i }))
  const t0 = Date.now()
  const r = await db.insertInto('kysely_items').values(rows).executeTakeFirst()
  eq(Number(r.numInsertedOrUpdatedRows), N, 'inserted rows')
  const agg = await db.selectFrom('kysely_items').select((eb) => [eb.fn.countAll<string>().as('n'), eb.fn.sum<string>('qty').as('s')]).where('id', '>=', 1000).executeTakeFirstOrThrow()
  eq(agg, { n: String(N), s: String((N * (N - 1)) / 2) }, 'bulk rows')
  return `multi-row INSERT of ${N} rows (${N * 3} parameters) in ${Date.now() - t0} ms (Kysely has no COPY)`
})

skip('cancel', 'Kysely has no API to cancel a running query (pg cancel is covered by the node-pg client)')

await step('survive_replacement', async () => {
  let detail = ''
  await db.connection().execute(async (conn) => {
    await sql`set timezone to 'Asia/Tokyo'`.execute(conn)
    eq((await conn.selectFrom('kysely_items').select('name').where('id', '=', 1).execute()), [{ name: 'one' }], 'before the kill')
    const before = (await sql<{ p: number }>`select pg_backend_pid() as p`.execute(conn)).rows[0].p
    const killed = await killUpstreams(E.controlURL)
    check(killed >= 1, `the emulator cut ${killed} sessions`)
    eq((await conn.selectFrom('kysely_items').select('name').where('id', '=', 1).execute()), [{ name: 'one' }], 'unqualified table right after the kill')
    const after = (await sql<{ p: number }>`select pg_backend_pid() as p`.execute(conn)).rows[0].p
    check(after !== before, `still on backend ${before}: no replacement happened`)
    eq((await sql<{ t: string }>`select ${'2024-01-01 00:00:00+00'}::timestamptz::text as t`.execute(conn)).rows[0].t, '2024-01-01 09:00:00+09', 'TimeZone after replacement')
    // A transaction right after another kill.
    check(await killUpstreams(E.controlURL) >= 1, 'second kill cut nothing')
    await conn.transaction().execute(async (trx) => {
      await trx.insertInto('kysely_items').values({ id: 40, name: 'forty', qty: 400 }).execute()
    })
    await sql`set timezone to '${sql.raw(ZONE)}'`.execute(conn)
    detail = `killed ${killed} upstreams between two queries; backend ${before}→${after}; search_path and TimeZone held; a transaction right after a second kill`
  })
  // The whole pool's idle sessions.
  await killUpstreams(E.controlURL)
  const res = await Promise.all(Array.from({ length: 8 }, () =>
    sql<{ s: string, t: string }>`select current_schema() as s, ${'2024-01-01 00:00:00+00'}::timestamptz::text as t`.execute(db)))
  res.forEach((r, i) => eq(r.rows[0], { s: E.schema, t: '2024-01-01 05:30:00+05:30' }, `pooled query after kill ${i}`))
  eq(connections, pool.totalCount, 'pg opened no new connection (the gateway hid the replacement)')
  return `${detail}; ${pool.totalCount} pooled sessions kept onCreateConnection state`
})

await Promise.race([db.destroy(), sleep(5000)])
finish()
