// A Cloudflare Worker that talks to dsqlgate with node-postgres over the
// Workers socket API (cloudflare:sockets, through pg-cloudflare). Every
// request opens its own connection(s), as a Worker in production does.
//
// GET /?step=<name>[&tls=1] runs one step of the client scenario and answers
// {"ok":bool,"detail":"..."}; GET /health answers without touching the
// database.
//
// Bindings: DATABASE_URL (postgres://user:password@host:port/database, no
// query parameters), GATEWAY_CA (PEM; the runtime itself verifies the
// certificate against the network service's trusted certificates),
// CONTROL_URL (the DSQL emulator's control API), SCHEMA (the run's schema),
// UNTRUSTED (optional: the same Worker behind an outbound that does not
// trust the gateway's CA).
import './shim.js'
import pg from 'pg'

const TABLE = 'worker_items'

function config(env, tls) {
  const u = new URL(env.DATABASE_URL)
  return {
    host: u.hostname,
    port: Number(u.port || 5432),
    user: decodeURIComponent(u.username),
    password: decodeURIComponent(u.password),
    database: decodeURIComponent(u.pathname.slice(1)),
    // ssl makes pg open the socket with secureTransport "starttls" and
    // upgrade it after the SSLRequest is answered with 'S'.
    ssl: tls ? { ca: env.GATEWAY_CA, rejectUnauthorized: true } : false,
    connectionTimeoutMillis: 10000,
    application_name: 'dsqlgate-worker',
  }
}

async function connect(env, tls) {
  const client = new pg.Client(config(env, tls))
  // pg-cloudflare reports "This socket has been closed" once the client has
  // ended it; only errors before that are news.
  client.on('error', (err) => { if (!client._ending) console.log(`pg client error event: ${err && err.message}`) })
  await client.connect()
  return client
}

// withClient opens a client, runs fn, and always closes the client.
async function withClient(env, tls, fn) {
  const client = await connect(env, tls)
  try {
    return await fn(client)
  } finally {
    await client.end().catch(() => {})
  }
}

function check(cond, msg) {
  if (!cond) throw new Error(`check failed: ${msg}`)
}

function eq(got, want, what) {
  const g = JSON.stringify(got)
  const w = JSON.stringify(want)
  if (g !== w) throw new Error(`${what}: got ${g}, want ${w}`)
}

async function expectError(fn, code, what) {
  try {
    await fn()
  } catch (err) {
    if (err && err.code === code) return err
    throw new Error(`${what}: want SQLSTATE ${code}, got ${describe(err)}`)
  }
  throw new Error(`${what}: want SQLSTATE ${code}, got success`)
}

function describe(err) {
  if (!(err instanceof Error)) return String(err)
  return `${err.code ? `[${err.code}] ` : ''}${err.message}`
}

async function scalar(client, text, values) {
  const r = await client.query({ text, values, rowMode: 'array' })
  check(r.rows.length === 1, `${text}: one row, got ${r.rows.length}`)
  return r.rows[0][0]
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms))

function tableName(env) {
  return `${pg.escapeIdentifier(env.SCHEMA)}.${TABLE}`
}

const getItem = (env, id) => ({ name: 'worker_get_item', text: `select id, name, qty from ${tableName(env)} where id = $1`, values: [id] })

async function killUpstreams(env) {
  const res = await fetch(`${env.CONTROL_URL}/kill?all=1`, { method: 'POST' })
  const body = await res.text()
  if (!res.ok) throw new Error(`control kill: HTTP ${res.status}: ${body}`)
  return JSON.parse(body).killed
}

const steps = {
  // Connect only (used through the UNTRUSTED binding, where it must fail).
  async connect_only(env, tls) {
    return withClient(env, tls, async (c) => `connected, select 1 = ${await scalar(c, 'select 1')}`)
  },

  async connect_tls(env, tls) {
    check(tls, 'connect_tls must be asked for with tls=1')
    const detail = await withClient(env, true, async (c) => {
      const s = c.connection.stream
      check(s.constructor.name === 'CloudflareSocket', `pg is not using the Workers socket API (stream ${s.constructor.name})`)
      check(s.ssl && (s._upgrading || s._upgraded), 'the socket was not upgraded to TLS')
      const ver = await scalar(c, 'select version()')
      check(/PostgreSQL/.test(ver), `version(): ${ver}`)
      await c.query(`create table if not exists ${tableName(env)} (id int primary key, name text not null, qty int not null)`)
      return 'pg over cloudflare:sockets, SSLRequest then startTls, certificate verified by workerd against the embedded CA'
    })
    let negative = 'no UNTRUSTED binding'
    if (env.UNTRUSTED) {
      const res = await env.UNTRUSTED.fetch('http://untrusted/?step=connect_only&tls=1')
      const body = await res.json()
      check(!body.ok, `connected through an outbound that does not trust the gateway CA: ${body.detail}`)
      negative = `refused where the CA is not trusted (${body.detail.slice(0, 120)})`
    }
    return `${detail}; ${negative}`
  },

  async param_query(env, tls) {
    return withClient(env, tls, async (c) => {
      const s = `it's "quoted" ünï ☃`
      const r = await c.query('select $1::int + $2::int as sum, $3::text as t, $4::text is null as isnull', [40, 2, s, null])
      eq(r.rows[0], { sum: 42, t: s, isnull: true }, 'row')
      await c.query(`insert into ${tableName(env)} (id, name, qty) values ($1, $2, $3) on conflict (id) do nothing`, [1, 'one', 10])
      await c.query(`insert into ${tableName(env)} (id, name, qty) values ($1, $2, $3) on conflict (id) do nothing`, [2, 'two', 20])
      eq((await c.query(`select id, name from ${tableName(env)} where id = any($1::int[]) order by id`, [[1, 2]])).rows,
        [{ id: 1, name: 'one' }, { id: 2, name: 'two' }], 'rows')
      return `parameters int/text/null/int[] on a new ${tls ? 'TLS' : 'plain'} connection`
    })
  },

  async prepared_reuse(env, tls) {
    return withClient(env, tls, async (c) => {
      const t0 = Date.now()
      for (let i = 0; i < 50; i++) {
        const id = (i % 2) + 1
        eq((await c.query(getItem(env, id))).rows, [{ id, name: id === 1 ? 'one' : 'two', qty: id * 10 }], `use ${i}`)
      }
      check(c.connection.parsedStatements.worker_get_item !== undefined, 'pg did not cache the named statement')
      return `named statement parsed once and reused 50x on one connection (${((Date.now() - t0) / 50).toFixed(1)} ms a use)`
    })
  },

  async tx_commit(env, tls) {
    await withClient(env, tls, async (c) => {
      await c.query('begin')
      await c.query(`insert into ${tableName(env)} (id, name, qty) values (10, 'ten', 100)`)
      await c.query(`update ${tableName(env)} set qty = qty + 1 where id = 10`)
      await c.query('commit')
    })
    return withClient(env, tls, async (c) => {
      eq((await c.query(getItem(env, 10))).rows, [{ id: 10, name: 'ten', qty: 101 }], 'committed row from a new connection')
      return 'BEGIN/INSERT/UPDATE/COMMIT, then seen from another new connection'
    })
  },

  async tx_rollback(env, tls) {
    await withClient(env, tls, async (c) => {
      await c.query('begin')
      await c.query(`insert into ${tableName(env)} (id, name, qty) values (20, 'twenty', 200)`)
      eq((await c.query(getItem(env, 20))).rows.length, 1, 'row inside the transaction')
      await c.query('rollback')
      eq((await c.query(getItem(env, 20))).rows.length, 0, 'row after ROLLBACK')
    })
    return withClient(env, tls, async (c) => {
      eq((await c.query(getItem(env, 20))).rows.length, 0, 'row after ROLLBACK, new connection')
      return 'inserted row gone after ROLLBACK, in this connection and a new one'
    })
  },

  async error_recovery(env, tls) {
    return withClient(env, tls, async (c) => {
      await expectError(() => c.query('select 1/0'), '22012', 'division by zero')
      eq(await scalar(c, 'select 2::int'), 2, 'after an error')
      await expectError(() => c.query({ name: 'worker_bad', text: 'select $1::int', values: ['x'] }), '22P02', 'bad parameter')
      eq((await c.query(getItem(env, 1))).rows.length, 1, 'named statement after an error')
      await c.query('begin')
      await expectError(() => c.query(`insert into ${tableName(env)} (id, name, qty) values (1, 'dup', 0)`), '23505', 'duplicate key')
      await expectError(() => c.query('select 1'), '25P02', 'in a failed transaction')
      await c.query('rollback')
      eq(await scalar(c, 'select 3::int'), 3, 'after ROLLBACK')
      return '22012, 22P02, 23505 then 25P02 until ROLLBACK; the connection recovered each time'
    })
  },

  async set_observed(env, tls) {
    const initial = await withClient(env, tls, async (c) => {
      const zone = await scalar(c, 'show timezone')
      const path = await scalar(c, 'show search_path')
      await c.query(`set search_path to ${pg.escapeIdentifier(env.SCHEMA)}, public`)
      await c.query("set timezone to 'Asia/Kolkata'")
      for (let i = 0; i < 5; i++) {
        eq(await scalar(c, 'select current_schema()'), env.SCHEMA, `current_schema (query ${i})`)
        eq(await scalar(c, "select '2024-01-01 00:00:00+00'::timestamptz::text"), '2024-01-01 05:30:00+05:30', `TimeZone (query ${i})`)
        eq(await scalar(c, `select count(*)::int from ${TABLE} where id = 1`), 1, `unqualified table (query ${i})`)
      }
      return { zone, path }
    })
    // A new connection starts from the defaults: nothing leaked from the
    // previous client's session through a shared upstream.
    return withClient(env, tls, async (c) => {
      eq(await scalar(c, 'show timezone'), initial.zone, 'TimeZone on a new connection')
      eq(await scalar(c, 'show search_path'), initial.path, 'search_path on a new connection')
      return `search_path and TimeZone seen by 15 later queries; a new connection started clean (TimeZone ${initial.zone}, search_path ${initial.path})`
    })
  },

  async bulk_insert(env, tls) {
    return withClient(env, tls, async (c) => {
      const N = 500
      const values = []
      const params = []
      for (let i = 0; i < N; i++) {
        values.push(`($${3 * i + 1}, $${3 * i + 2}, $${3 * i + 3})`)
        params.push(1000 + i, `bulk ${i}`, i)
      }
      await c.query(`insert into ${tableName(env)} (id, name, qty) values ${values.join(', ')}`, params)
      eq((await c.query(`select count(*)::int as n, sum(qty)::int as s from ${tableName(env)} where id >= 1000`)).rows[0], { n: N, s: (N * (N - 1)) / 2 }, 'bulk rows')
      return `multi-row INSERT of ${N} rows (${3 * N} parameters); no COPY: pg-copy-streams needs Node streams on a Node socket`
    })
  },

  async cancel(env, tls) {
    return withClient(env, tls, async (c) => {
      const mark = `dsqlgate-worker-${crypto.randomUUID()}`
      let q
      const running = new Promise((resolve, reject) => {
        q = new pg.Query(`select pg_sleep(30) /* ${mark} */`, [], (err, res) => (err ? reject(err) : resolve(res)))
      })
      running.catch(() => {}) // awaited below
      c.query(q)
      // Wait until it runs on an upstream (seen from another connection).
      await withClient(env, tls, async (watch) => {
        const deadline = Date.now() + 10000
        for (;;) {
          if ((await scalar(watch, "select count(*)::int from pg_stat_activity where state = 'active' and query like $1", [`%${mark}%`])) > 0) break
          if (Date.now() > deadline) throw new Error('pg_sleep never showed up as active in pg_stat_activity')
          await sleep(50)
        }
      })
      const t0 = Date.now()
      // pg's cancel: a second socket from the Worker carrying a
      // CancelRequest with the key the gateway issued.
      new pg.Client(config(env, false)).cancel(c, q)
      const bounded = Promise.race([running, sleep(10000).then(() => { throw new Error('the query was not cancelled within 10 s') })])
      await expectError(() => bounded, '57014', 'cancelled pg_sleep')
      eq(await scalar(c, 'select 4::int'), 4, 'after cancel')
      return `a CancelRequest from the Worker stopped a running pg_sleep(30) ${Date.now() - t0} ms after it was sent`
    })
  },

  async survive_replacement(env, tls) {
    return withClient(env, tls, async (c) => {
      await c.query(`set search_path to ${pg.escapeIdentifier(env.SCHEMA)}, public`)
      await c.query("set timezone to 'Asia/Tokyo'")
      const named = { name: 'worker_survivor', text: `select name from ${TABLE} where id = $1`, values: [1] }
      eq((await c.query(named)).rows, [{ name: 'one' }], 'before the kill')
      const before = await scalar(c, 'select pg_backend_pid()')
      const killed = await killUpstreams(env)
      check(killed >= 1, `the emulator cut ${killed} sessions`)
      eq((await c.query(named)).rows, [{ name: 'one' }], 'named statement right after the kill')
      const after = await scalar(c, 'select pg_backend_pid()')
      check(after !== before, `still on backend ${before}: no replacement happened`)
      eq(await scalar(c, "select '2024-01-01 00:00:00+00'::timestamptz::text"), '2024-01-01 09:00:00+09', 'TimeZone after replacement')
      eq(await scalar(c, 'select current_schema()'), env.SCHEMA, 'search_path after replacement')
      return `killed ${killed} upstreams between two queries of one ${tls ? 'TLS ' : ''}connection; backend ${before}→${after}; search_path, TimeZone and a named statement held`
    })
  },
}

export default {
  async fetch(request, env) {
    const url = new URL(request.url)
    if (url.pathname === '/health') return Response.json({ ok: true, detail: 'up' })
    const name = url.searchParams.get('step')
    const tls = url.searchParams.get('tls') === '1'
    const fn = steps[name]
    if (!fn) return Response.json({ ok: false, detail: `unknown step ${name}` }, { status: 404 })
    try {
      const detail = await fn(env, tls)
      return Response.json({ ok: true, detail })
    } catch (err) {
      return Response.json({ ok: false, detail: describe(err) })
    }
  },
}
