// pg and its helpers call require("events"), require("crypto"), ... The
// bundle keeps those calls (they are external), and esbuild's require
// helper uses a global `require` when there is one: this is it, backed by
// workerd's node: modules (compatibility flag nodejs_compat). Import this
// module before anything that uses pg.
import * as events from 'node:events'
import * as crypto from 'node:crypto'
import * as dns from 'node:dns'
import * as fs from 'node:fs'
import * as net from 'node:net'
import * as path from 'node:path'
import * as stream from 'node:stream'
import * as stringDecoder from 'node:string_decoder'
import * as tls from 'node:tls'
import * as util from 'node:util'
import * as utilTypes from 'node:util/types'

const namespaces = {
  events, crypto, dns, fs, net, path, stream, string_decoder: stringDecoder, tls, util, 'util/types': utilTypes,
}
const mods = Object.fromEntries(Object.entries(namespaces).map(([k, ns]) => [k, ns.default ?? ns]))

globalThis.require = (m) => {
  const name = m.replace(/^node:/, '')
  if (!(name in mods)) throw new Error(`require shim: module "${m}" is not available in this Worker`)
  return mods[name]
}
