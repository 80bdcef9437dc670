'use strict'
// nsqjs: DPUB (Writer.deferPublish takes the messages as an array).
const test = require('node:test')
const assert = require('node:assert')
const {withBroker} = require('./broker')
const {JsClients, publish, deferPublish, waitFor} = require('./clients')

test('nsqjs DPUB 1500 ms arrives after ~1.5 s, PUB right away', {timeout: 30000}, async () => {
  await withBroker([], async (broker) => {
    const c = new JsClients(broker)
    try {
      const topic = 'js_dpub'
      const arrivals = {}
      await c.reader(topic, 'ch', (msg) => {
        arrivals[msg.body.toString()] = {at: Date.now(), attempts: msg.attempts}
        msg.finish()
      }, {maxInFlight: 5})
      const w = await c.writer()
      const t0 = Date.now()
      await deferPublish(w, topic, ['later'], 1500)
      await publish(w, topic, 'now')
      const ch = await waitFor(async () => {
        const s = await broker.channelStats(topic, 'ch')
        return s && s.deferred_count === 1 && s
      }, 1000, 'deferred_count == 1 while DPUB pending')
      assert.strictEqual(ch.deferred_count, 1)
      assert.ok(!('later' in arrivals), 'deferred message arrived too early')
      await waitFor(() => Object.keys(arrivals).length === 2, 5000, 'both messages')
      const now = arrivals.now.at - t0
      const later = arrivals.later.at - t0
      assert.ok(now < 1000, `PUB took ${now} ms`)
      assert.ok(later >= 1400 && later <= 3000, `DPUB 1500 ms arrived after ${later} ms (want 1400..3000)`)
      assert.strictEqual(arrivals.later.attempts, 1)
      assert.deepStrictEqual(c.errors, [])
    } finally {
      c.close()
    }
  })
})

test('DPUB beyond --max-req-timeout is rejected with E_INVALID', {timeout: 30000}, async () => {
  await withBroker(['--max-req-timeout=10s'], async (broker) => {
    const c = new JsClients(broker)
    try {
      const w = await c.writer()
      await assert.rejects(deferPublish(w, 'js_dpub_bad', ['x'], 10001), /E_INVALID/)
    } finally {
      c.close()
    }
  })
})
