'use strict'
// nsqjs: REQ (attempts), REQ with delay, TOUCH, and in-flight timeout redelivery.
const test = require('node:test')
const assert = require('node:assert')
const {withBroker, sleep} = require('./broker')
const {JsClients, publish, waitFor, channelDrained} = require('./clients')

test('nsqjs REQ 0 redelivers with attempts 2', {timeout: 30000}, async () => {
  await withBroker([], async (broker) => {
    const c = new JsClients(broker)
    try {
      const topic = 'js_req'
      const seen = []
      await c.reader(topic, 'ch', (msg) => {
        seen.push({id: msg.id, attempts: msg.attempts, body: msg.body.toString()})
        if (msg.attempts === 1) msg.requeue(0, false)
        else msg.finish()
      })
      const w = await c.writer()
      await publish(w, topic, 'req-me')
      await waitFor(() => seen.length >= 2, 5000, 'redelivery after REQ 0')
      await sleep(300)
      assert.strictEqual(seen.length, 2)
      assert.deepStrictEqual(seen.map((m) => m.attempts), [1, 2])
      assert.strictEqual(seen[0].id, seen[1].id)
      const ch = await waitFor(() => channelDrained(broker, topic, 'ch', 1), 3000, 'FIN counted')
      assert.strictEqual(ch.requeue_count, 1)
      assert.strictEqual(ch.timeout_count, 0)
      assert.strictEqual(ch.message_count, 1)
      assert.strictEqual(ch.clients[0].requeue_count, 1)
      assert.strictEqual(ch.clients[0].message_count, 2)
    } finally {
      c.close()
    }
  })
})

test('nsqjs REQ with 1000 ms delay is deferred then redelivered', {timeout: 30000}, async () => {
  await withBroker([], async (broker) => {
    const c = new JsClients(broker)
    try {
      const topic = 'js_req_delay'
      const seen = []
      await c.reader(topic, 'ch', (msg) => {
        seen.push({at: Date.now(), attempts: msg.attempts})
        if (msg.attempts === 1) msg.requeue(1000, false)
        else msg.finish()
      })
      const w = await c.writer()
      await publish(w, topic, 'later-please')
      await waitFor(() => seen.length >= 1, 3000, 'first delivery')
      const ch = await waitFor(async () => {
        const s = await broker.channelStats(topic, 'ch')
        return s && s.deferred_count === 1 && s
      }, 800, 'deferred_count == 1 after REQ 1000')
      assert.strictEqual(ch.in_flight_count, 0)
      await waitFor(() => seen.length >= 2, 4000, 'redelivery after REQ 1000')
      const gap = seen[1].at - seen[0].at
      assert.ok(gap >= 900 && gap <= 2500, `REQ 1000 ms redelivered after ${gap} ms`)
      assert.strictEqual(seen[1].attempts, 2)
      const done = await waitFor(() => channelDrained(broker, topic, 'ch', 1), 3000, 'FIN counted')
      assert.strictEqual(done.deferred_count, 0)
      assert.strictEqual(done.requeue_count, 1)
    } finally {
      c.close()
    }
  })
})

test('nsqjs TOUCH keeps a message in flight past IDENTIFY msg_timeout', {timeout: 30000}, async () => {
  await withBroker([], async (broker) => {
    const c = new JsClients(broker)
    try {
      const topic = 'js_touch'
      const seen = []
      const held = {}
      await c.reader(topic, 'ch', (msg) => {
        const body = msg.body.toString()
        seen.push({at: Date.now(), body, attempts: msg.attempts})
        if (msg.attempts === 1) held[body] = msg
        else msg.finish()
      }, {maxInFlight: 2, messageTimeout: 2000})
      const w = await c.writer()
      await publish(w, topic, ['touched', 'control'])
      await waitFor(() => Object.keys(held).length === 2, 5000, 'both messages delivered')
      const t0 = Date.now()
      while (Date.now() - t0 < 4000) {
        await sleep(700)
        held.touched.touch()
      }
      held.touched.finish()
      await sleep(300)
      const touched = seen.filter((m) => m.body === 'touched')
      const control = seen.filter((m) => m.body === 'control')
      assert.strictEqual(touched.length, 1, 'TOUCHed message must not be redelivered')
      assert.strictEqual(control.length, 2, 'untouched message must time out once')
      assert.strictEqual(control[1].attempts, 2)
      const gap = control[1].at - control[0].at
      assert.ok(gap >= 1700 && gap <= 3500, `msg_timeout 2000 but redelivery after ${gap} ms`)
      const ch = await waitFor(() => channelDrained(broker, topic, 'ch', 2), 3000, 'FINs counted')
      assert.strictEqual(ch.timeout_count, 1)
    } finally {
      c.close()
    }
  })
})

test('nsqjs un-FINed message times out (--msg-timeout=1s) and returns with attempts 2', {timeout: 30000}, async () => {
  await withBroker(['--msg-timeout=1s'], async (broker) => {
    const c = new JsClients(broker)
    try {
      const topic = 'js_timeout'
      const seen = []
      await c.reader(topic, 'ch', (msg) => {
        seen.push({at: Date.now(), id: msg.id, attempts: msg.attempts})
        if (msg.attempts >= 2) msg.finish() // first delivery: never answered
      })
      const w = await c.writer()
      await publish(w, topic, 'slow')
      await waitFor(() => seen.length >= 2, 5000, 'redelivery after msg timeout')
      const gap = seen[1].at - seen[0].at
      assert.ok(gap >= 900 && gap <= 2500, `redelivered after ${gap} ms with --msg-timeout=1s`)
      assert.strictEqual(seen[0].id, seen[1].id)
      assert.deepStrictEqual(seen.map((m) => m.attempts), [1, 2])
      const ch = await waitFor(() => channelDrained(broker, topic, 'ch', 1), 3000, 'FIN counted')
      assert.strictEqual(ch.timeout_count, 1)
      assert.strictEqual(ch.requeue_count, 0)
    } finally {
      c.close()
    }
  })
})
