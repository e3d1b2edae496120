// Shared shape of a node client run (node-pg, postgres-js, kysely): the
// runner's environment, one JSON line per step on stdout, bounded waits.
// This directory has no run.sh, so the runner does not take it for a client.

export const STEPS = [
  'connect_tls', 'param_query', 'prepared_reuse', 'tx_commit', 'tx_rollback',
  'error_recovery', 'set_observed', 'bulk_insert', 'cancel', 'survive_replacement',
]

export function env(name) {
  const v = process.env[name]
  if (v === undefined || v === '') {
    throw new Error(`environment variable ${name} is not set (run this through the client runner)`)
  }
  return v
}

export function testEnv() {
  return {
    url: env('DSQLGATE_TEST_URL'),
    host: env('DSQLGATE_TEST_HOST'),
    port: Number(env('DSQLGATE_TEST_PORT')),
    user: env('DSQLGATE_TEST_USER'),
    password: env('DSQLGATE_TEST_PASSWORD'),
    database: env('DSQLGATE_TEST_DATABASE'),
    caFile: env('DSQLGATE_TEST_CA_FILE'),
    controlURL: env('DSQLGATE_TEST_CONTROL_URL'),
    mode: env('DSQLGATE_TEST_MODE'),
    schema: env('DSQLGATE_TEST_SCHEMA'),
  }
}

const reported = new Set()
let failures = 0

function emit(step, ok, detail) {
  if (reported.has(step)) return
  reported.add(step)
  if (!ok) failures++
  process.stdout.write(JSON.stringify({ step, ok, detail: String(detail ?? '') }) + '\n')
}

export function describe(err) {
  if (!(err instanceof Error)) return String(err)
  const parts = []
  if (err.code) parts.push(`[${err.code}]`)
  parts.push(err.message || err.name)
  if (err.detail) parts.push(`detail: ${err.detail}`)
  return parts.join(' ')
}

export function withTimeout(promise, ms, what) {
  let timer
  return Promise.race([
    promise,
    new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what} timed out after ${ms} ms`)), ms)
    }),
  ]).finally(() => clearTimeout(timer))
}

// step runs fn (which returns a detail string, or throws) under a time bound
// and reports the outcome once.
export async function step(name, fn, ms = 20000) {
  if (!STEPS.includes(name)) throw new Error(`unknown step ${name}`)
  const t0 = Date.now()
  try {
    const detail = await withTimeout(Promise.resolve().then(fn), ms, name)
    emit(name, true, `${detail ?? ''} (${Date.now() - t0} ms)`)
    return true
  } catch (err) {
    emit(name, false, `${describe(err)} (after ${Date.now() - t0} ms)`)
    return false
  }
}

export function skip(name, why) {
  emit(name, true, `skipped: ${why}`)
}

// finish reports every step that never ran as failed and exits: 0 when all
// steps passed, 1 otherwise.
export function finish(reason = 'not reached') {
  for (const s of STEPS) {
    if (!reported.has(s)) emit(s, false, reason)
  }
  process.exit(failures === 0 ? 0 : 1)
}

// watchdog bounds the whole run: past ms, every step not yet reported fails
// and the process exits.
export function watchdog(ms) {
  const t = setTimeout(() => finish(`run timed out after ${ms} ms`), ms)
  t.unref()
}

export function check(cond, msg) {
  if (!cond) throw new Error(`check failed: ${msg}`)
}

export function eq(got, want, what) {
  const g = JSON.stringify(got)
  const w = JSON.stringify(want)
  if (g !== w) throw new Error(`${what}: got ${g}, want ${w}`)
}

// expectError runs fn and returns the error it throws, which must carry the
// SQLSTATE code.
export async function expectError(fn, code, what) {
  try {
    await fn()
  } catch (err) {
    if (err && err.code === code) return err
    throw new Error(`${what}: want SQLSTATE ${code}, got ${describe(err)}`)
  }
  throw new Error(`${what}: want SQLSTATE ${code}, got success`)
}

// killUpstreams asks the emulator to cut every upstream session and returns
// how many it cut.
export async function killUpstreams(controlURL) {
  const res = await withTimeout(fetch(`${controlURL}/kill?all=1`, { method: 'POST' }), 10000, 'control kill')
  const body = await res.text()
  if (!res.ok) throw new Error(`control kill: HTTP ${res.status}: ${body}`)
  return JSON.parse(body).killed
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms))

// Uncaught errors (a socket error event nobody listened to) end the run
// with every open step failed rather than a stack trace and no report.
export function installCrashHandlers() {
  process.on('uncaughtException', (err) => {
    process.stderr.write(`uncaught: ${err && err.stack}\n`)
    finish(`process crashed: ${describe(err)}`)
  })
  process.on('unhandledRejection', (err) => {
    process.stderr.write(`unhandled rejection: ${err && err.stack}\n`)
    finish(`process crashed: ${describe(err)}`)
  })
}
