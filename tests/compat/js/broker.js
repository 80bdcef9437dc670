'use strict'
// Starts one nsqrs broker on loopback with port 0 and a fresh data directory,
// learns its ports from the `TCP: listening on ...` / `HTTP: listening on ...`
// lines on stderr, and waits for GET /ping to answer OK.

const {spawn} = require('node:child_process')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const http = require('node:http')

const REPO_ROOT = path.resolve(__dirname, '..', '..', '..')
const LISTEN_RE = /(?<![A-Za-z])(TCP|HTTP): listening on (\S+):(\d+)/
const START_TIMEOUT_MS = 15000
const STOP_GRACE_MS = 5000

function brokerBinary() {
  const raw = process.env.NSQRS_BIN || 'target/debug/nsqrs'
  return path.isAbsolute(raw) ? raw : path.join(REPO_ROOT, raw)
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

async function waitFor(predicate, timeoutMs, desc, intervalMs = 50) {
  const deadline = Date.now() + timeoutMs
  let last
  for (;;) {
    try {
      const v = await predicate()
      if (v) return v
      last = v
    } catch (err) {
      last = err
    }
    if (Date.now() >= deadline) {
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${desc} (last: ${last instanceof Error ? last.message : JSON.stringify(last)})`)
    }
    await sleep(intervalMs)
  }
}

function request(port, method, urlPath, body) {
  return new Promise((resolve, reject) => {
    const payload = body === undefined ? undefined : Buffer.from(body)
    const req = http.request(
      {host: '127.0.0.1', port, method, path: urlPath, timeout: 5000,
        headers: payload ? {'Content-Length': payload.length} : {}},
      (res) => {
        const chunks = []
        res.on('data', (c) => chunks.push(c))
        res.on('end', () => resolve({status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks)}))
        res.on('error', reject)
      }
    )
    req.on('timeout', () => req.destroy(new Error(`HTTP ${method} ${urlPath} timed out`)))
    req.on('error', reject)
    if (payload) req.write(payload)
    req.end()
  })
}

class Broker {
  constructor(extraArgs = []) {
    this.extraArgs = extraArgs
    this.lines = []
    this.tcpPort = null
    this.httpPort = null
    this.proc = null
    this.exitCode = undefined
  }

  async start() {
    const bin = brokerBinary()
    try {
      fs.accessSync(bin, fs.constants.X_OK)
    } catch (err) {
      throw new Error(`broker binary not found or not executable: ${bin} (run cargo build or set NSQRS_BIN)`)
    }
    this.dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'nsqrs-compat-js-'))
    this.argv = [bin, 'serve', '--tcp-address=127.0.0.1:0', '--http-address=127.0.0.1:0', '--embedded-lookupd=false', '--embedded-admin=false',
      `--data-path=${this.dataDir}`, ...this.extraArgs]
    this.proc = spawn(this.argv[0], this.argv.slice(1), {cwd: this.dataDir, stdio: ['ignore', 'pipe', 'pipe']})
    this.exited = new Promise((resolve) => {
      this.proc.on('exit', (code, signal) => {
        this.exitCode = code === null ? signal : code
        resolve(this.exitCode)
      })
      this.proc.on('error', (err) => {
        this.lines.push(`harness| spawn error: ${err.message}`)
        this.exitCode = 'spawn-error'
        resolve(this.exitCode)
      })
    })
    this._pipe(this.proc.stderr, 'stderr')
    this._pipe(this.proc.stdout, 'stdout')

    const deadline = Date.now() + START_TIMEOUT_MS
    while (this.tcpPort === null || this.httpPort === null) {
      if (this.exitCode !== undefined) throw new Error(`broker exited (${this.exitCode}) before reporting its ports\n${this.describe()}`)
      if (Date.now() >= deadline) throw new Error(`broker did not report both listen addresses\n${this.describe()}`)
      await sleep(20)
    }
    let last
    while (Date.now() < deadline) {
      if (this.exitCode !== undefined) throw new Error(`broker exited (${this.exitCode}) during start-up\n${this.describe()}`)
      try {
        const res = await this.http('GET', '/ping')
        last = `${res.status} ${res.body}`
        if (res.status === 200 && res.body.toString() === 'OK') return this
      } catch (err) {
        last = err.message
      }
      await sleep(50)
    }
    throw new Error(`GET /ping never answered 200 OK (last: ${last})\n${this.describe()}`)
  }

  _pipe(stream, name) {
    let buf = ''
    stream.setEncoding('utf8')
    stream.on('data', (chunk) => {
      buf += chunk
      let idx
      while ((idx = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, idx)
        buf = buf.slice(idx + 1)
        this.lines.push(`${name}| ${line}`)
        if (name === 'stderr') {
          const m = LISTEN_RE.exec(line)
          if (m) {
            if (m[1] === 'TCP' && this.tcpPort === null) this.tcpPort = Number(m[3])
            if (m[1] === 'HTTP' && this.httpPort === null) this.httpPort = Number(m[3])
          }
        }
      }
    })
  }

  describe() {
    return `argv: ${(this.argv || []).join(' ')}\n--- broker output ---\n${this.lines.slice(-200).join('\n')}`
  }

  async stop() {
    if (!this.proc) return
    if (this.exitCode === undefined) {
      this.proc.kill('SIGTERM')
      if ((await this._exitWithin(STOP_GRACE_MS)) === 'timeout') {
        this.lines.push('harness| broker ignored SIGTERM, sending SIGKILL')
        this.proc.kill('SIGKILL')
        await this._exitWithin(STOP_GRACE_MS)
      }
    }
    try {
      fs.rmSync(this.dataDir, {recursive: true, force: true})
    } catch (err) {
      // best effort
    }
  }

  // Resolves 'exited' or 'timeout'; the timer is cleared so it cannot keep node alive.
  _exitWithin(ms) {
    let timer
    const t = new Promise((resolve) => { timer = setTimeout(() => resolve('timeout'), ms) })
    return Promise.race([this.exited.then(() => 'exited'), t]).finally(() => clearTimeout(timer))
  }

  get tcpAddr() {
    return `127.0.0.1:${this.tcpPort}`
  }

  http(method, urlPath, body) {
    return request(this.httpPort, method, urlPath, body)
  }

  async stats() {
    const res = await this.http('GET', '/stats?format=json')
    if (res.status !== 200) throw new Error(`GET /stats?format=json -> ${res.status} ${res.body}`)
    return JSON.parse(res.body.toString())
  }

  async topicStats(topic) {
    const s = await this.stats()
    return (s.topics || []).find((t) => t.topic_name === topic) || null
  }

  async channelStats(topic, channel) {
    const t = await this.topicStats(topic)
    if (!t) return null
    return (t.channels || []).find((c) => c.channel_name === channel) || null
  }
}

// Runs fn(broker) against a fresh broker; always stops the broker and, when fn
// fails, attaches the broker's output to the error.
async function withBroker(extraArgs, fn) {
  const broker = new Broker(extraArgs)
  try {
    await broker.start()
    await fn(broker)
  } catch (err) {
    err.message += `\n${broker.describe()}`
    throw err
  } finally {
    await broker.stop()
  }
}

module.exports = {Broker, withBroker, waitFor, sleep, brokerBinary}
