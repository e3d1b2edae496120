// A node-postgres Pool running transactions through a load balancer until
// its time is up, for the replica test bed's rolling restart
// (internal/replicas). It prints one JSON line: committed, failed and
// reconnects as the test defines them, and the first errors.
//
//   node pgpool.cjs <connection URL> <table> <seconds> <workers>
//
// It needs the pg module: NODE_PATH=testdata/clients/node-pg/node_modules
// (make deps-replicas, or deps-clients, installs it there).
'use strict'
const pg = require('pg')

const [url, table, seconds, workers] = [process.argv[2], process.argv[3], Number(process.argv[4]), Number(process.argv[5])]
const pool = new pg.Pool({ connectionString: url, max: workers, connectionTimeoutMillis: 10000 })
// An idle client the gateway closes (57P01 at drain) errors outside any
// query; the Pool drops it and this handler keeps the process alive.
let idleErrors = 0
pool.on('error', () => { idleErrors++ })
// A checked-out client the gateway closes between two of its queries
// errors outside them too: the next query fails and says so, so the event
// itself only needs a listener (without one node exits), as the
// node-postgres documentation asks of applications.
let clientErrors = 0
pool.on('connect', (client) => client.on('error', () => { clientErrors++ }))

const counts = { committed: 0, failed: 0, reconnects: 0, conflicts: 0, idleErrors: 0, clientErrors: 0, errors: [] }
const note = (kind, err) => {
  if (counts.errors.length < 5) counts.errors.push(`${kind}: ${err.code || ''} ${err.message}`)
}
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))
const end = Date.now() + seconds * 1000

async function worker(id) {
  for (let n = 0; Date.now() < end; n++) {
    let client
    try {
      client = await pool.connect()
    } catch (err) {
      counts.reconnects++ // no connection: nothing began
      await sleep(10)
      continue
    }
    try {
      await client.query('begin')
    } catch (err) {
      // Closed before the transaction began: drop it, take another.
      counts.reconnects++
      client.release(err)
      continue
    }
    try {
      await client.query(`insert into ${table} (client, n) values ($1, $2)`, [id, n])
      await client.query(`select count(*) from ${table} where client = $1`, [id])
      await client.query('commit')
      counts.committed++
      client.release()
    } catch (err) {
      if (err.code === '40001') {
        // DSQL's optimistic-concurrency failure: retried by the
        // application, not caused by the restart (counted apart).
        counts.conflicts++
        await client.query('rollback').catch(() => {})
        client.release()
        continue
      }
      counts.failed++
      note('failed', err)
      client.release(err)
    }
    await sleep(5)
  }
}

async function main() {
  await Promise.all(Array.from({ length: workers }, (_, i) => worker(i)))
  await pool.end()
  counts.idleErrors = idleErrors
  counts.clientErrors = clientErrors
  process.stdout.write(JSON.stringify(counts) + '\n')
}

main().catch((err) => { process.stderr.write(`pgpool: ${err.stack}\n`); process.exit(1) })
