// Start an in-memory PLC directory and a reference Bluesky PDS on loopback for the `bluesky` tests.
//
//   node start.mjs --modules DIR --pds-port N [--plc-port N] [--log FILE] [--rate-limits]
//
// DIR is the node_modules folder `python3 dev.py pds` fills (.pds/node_modules); it must be run by the
// Node 22 installed there. Prints one JSON line {"pds": URL, "plc": URL} on stdout once both serve,
// and nothing else on stdout (the server logs go to --log, or nowhere). SIGTERM or SIGINT stops both,
// removes the data directory and exits 0.
//
// Settings follow @atproto/pds's own dev environment (@atproto/dev-env TestPds/TestPlc): dev mode (a
// plain-http public URL), no invite codes, handles under .test, the PLC's in-memory database.
// The PDS fetches DID documents only from named hosts ("Invalid hostname" for an IP address), so the
// PLC is given to it as http://localhost:PORT; both listen on 127.0.0.1 only.

import { randomBytes } from 'node:crypto'
import { mkdtemp, rm } from 'node:fs/promises'
import { createRequire } from 'node:module'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'

const { values: args } = parseArgs({
  options: {
    modules: { type: 'string' },
    'pds-port': { type: 'string' },
    'plc-port': { type: 'string', default: '0' },
    log: { type: 'string' },
    'rate-limits': { type: 'boolean', default: false },
  },
})

function fail(message) {
  process.stderr.write(`start.mjs: ${message}\n`)
  process.exit(2)
}

if (!args.modules) fail('--modules DIR (the node_modules that `python3 dev.py pds` installed) is required')
const pdsPort = Number(args['pds-port'])
const plcPort = Number(args['plc-port'])
// The PDS's public URL (and so every DID document's service endpoint) names its port: it cannot be 0.
if (!Number.isInteger(pdsPort) || pdsPort <= 0 || pdsPort > 65535) fail('--pds-port must be a port number')
if (!Number.isInteger(plcPort) || plcPort < 0 || plcPort > 65535) fail('--plc-port must be a port number or 0')

// The atproto loggers read these when first loaded, so they are set before the packages are.
if (args.log) {
  process.env.LOG_ENABLED = 'true'
  process.env.LOG_DESTINATION = args.log
} else {
  process.env.LOG_ENABLED = 'false'
}

const require = createRequire(join(args.modules, 'noop.js'))
const { PDS, envToCfg, envToSecrets } = require('@atproto/pds')
const plc = require('@did-plc/server')
// The PDS's own copy of @atproto/crypto, wherever npm placed it.
const { Secp256k1Keypair } = createRequire(require.resolve('@atproto/pds'))('@atproto/crypto')

/** Make an express app's listen(port) bind loopback only (the packages listen on every interface). */
function loopbackOnly(app) {
  const listen = app.listen.bind(app)
  app.listen = (port) => listen(port, '127.0.0.1')
}

const dataDir = await mkdtemp(join(tmpdir(), 'geno-pds-'))
let plcServer
let pds
let stopping = false

async function stop() {
  if (stopping) return
  stopping = true
  try {
    await pds?.destroy()
    await plcServer?.destroy()
  } finally {
    await rm(dataDir, { recursive: true, force: true })
  }
  process.exit(0)
}
process.on('SIGTERM', stop)
process.on('SIGINT', stop)

try {
  plcServer = plc.PlcServer.create({ db: plc.Database.mock(), port: plcPort })
  loopbackOnly(plcServer.app)
  await plcServer.start()
  const plcUrl = `http://localhost:${plcServer.server.address().port}`

  const rotationKey = await Secp256k1Keypair.create({ exportable: true })
  const env = {
    devMode: true,
    hostname: 'localhost',
    port: pdsPort,
    dataDirectory: dataDir,
    blobstoreDiskLocation: join(dataDir, 'blobs'),
    didPlcUrl: plcUrl,
    serviceHandleDomains: ['.test'],
    inviteRequired: false,
    // The PDS's own limits (in memory), for the tests of how a client honours them (429, ratelimit-*).
    rateLimitsEnabled: args['rate-limits'],
    // Fresh secrets per run: nothing outlives the process.
    jwtSecret: randomBytes(16).toString('hex'),
    adminPassword: randomBytes(16).toString('hex'),
    plcRotationKeyK256PrivateKeyHex: Buffer.from(await rotationKey.export()).toString('hex'),
  }
  pds = await PDS.create(envToCfg(env), envToSecrets(env))
  loopbackOnly(pds.app)
  await pds.start()
  process.stdout.write(JSON.stringify({ pds: `http://localhost:${pdsPort}`, plc: plcUrl }) + '\n')
} catch (err) {
  process.stderr.write(`start.mjs: the PDS did not start: ${err?.stack ?? err}\n`)
  await pds?.destroy().catch(() => {})
  await plcServer?.destroy().catch(() => {})
  await rm(dataDir, { recursive: true, force: true })
  process.exit(1)
}
