'use strict'
// An nsqjs 0.13.0 Writer publishing under load, for tests/compat/py/test_replication.py:
//   node replication_producer.js HOST PORT TOPIC PREFIX BATCHES
// publishes BATCHES MPUBs of 10 messages "<PREFIX>-<n>" one after another and prints
// "ACK <body>" for every message nsqd acknowledged, then exits (at the first error too).

const nsq = require('nsqjs')

const [host, port, topic, prefix, batches] = process.argv.slice(2)
const w = new nsq.Writer(host, Number(port))
let done = false

function finish(code) {
  if (done) return
  done = true
  try { w.close() } catch (err) { /* already closed */ }
  process.exit(code)
}

w.on('error', (err) => {
  console.log(`ERR ${err.message}`)
  finish(0)
})
w.on('closed', () => finish(0))
w.on('ready', async () => {
  for (let b = 0; b < Number(batches); b++) {
    const bodies = []
    for (let i = 0; i < 10; i++) bodies.push(`${prefix}-${b * 10 + i}`)
    try {
      await new Promise((resolve, reject) => w.publish(topic, bodies, (err) => (err ? reject(err) : resolve())))
    } catch (err) {
      console.log(`ERR ${err.message}`)
      finish(0)
      return
    }
    console.log(bodies.map((m) => `ACK ${m}`).join('\n'))
  }
  finish(0)
})
w.connect()
setTimeout(() => finish(0), 120000)
