'use strict'
// nsqjs: PUB and MPUB fan out to every channel of a topic.
const test = require('node:test')
const assert = require('node:assert')
const {withBroker} = require('./broker')
const {JsClients, publish, waitFor, channelDrained} = require('./clients')

test('nsqjs pub/sub on two channels with PUB and MPUB', {timeout: 30000}, async () => {
  await withBroker([], async (broker) => {
    const c = new JsClients(broker)
    try {
      const topic = 'js_fanout'
      const got = {one: [], two: []}
      for (const ch of ['one', 'two']) {
        await c.reader(topic, ch, (msg) => {
          got[ch].push({id: msg.id, body: msg.body.toString(), attempts: msg.attempts, ts: msg.timestamp})
          msg.finish()
        }, {maxInFlight: 10})
      }
      const w = await c.writer()
      const before = Date.now()
      await publish(w, topic, 'single-1')
      await publish(w, topic, Buffer.from('single-2'))
      await publish(w, topic, ['batch-1', 'batch-2', 'batch-3'])
      await waitFor(() => got.one.length >= 5 && got.two.length >= 5, 5000, 'five messages per channel')
      await new Promise((r) => setTimeout(r, 300))
      const expected = ['batch-1', 'batch-2', 'batch-3', 'single-1', 'single-2']
      for (const ch of ['one', 'two']) {
        assert.deepStrictEqual(got[ch].map((m) => m.body).sort(), expected, `channel ${ch}`)
        for (const m of got[ch]) {
          assert.strictEqual(m.attempts, 1)
          assert.match(m.id, /^[0-9a-f]{16}$/)
        }
      }
      const idsOne = Object.fromEntries(got.one.map((m) => [m.body, m.id]))
      const idsTwo = Object.fromEntries(got.two.map((m) => [m.body, m.id]))
      assert.deepStrictEqual(idsOne, idsTwo, 'channel copies carry the same id')
      assert.strictEqual(new Set(got.one.map((m) => m.id)).size, 5)
      // nsqjs exposes the timestamp as a BigInt of nanoseconds; check it is near now.
      const tsMs = Number(BigInt(got.one[0].ts) / 1000000n)
      assert.ok(Math.abs(tsMs - before) < 5000, `timestamp ${got.one[0].ts} is not ns near ${before} ms`)

      for (const ch of ['one', 'two']) {
        const s = await waitFor(() => channelDrained(broker, topic, ch, 5), 3000, `FINs on ${ch}`)
        assert.strictEqual(s.message_count, 5)
        assert.strictEqual(s.client_count, 1)
      }
      const t = await broker.topicStats(topic)
      assert.strictEqual(t.message_count, 5)
      assert.strictEqual(t.message_bytes, expected.join('').length)
      assert.deepStrictEqual(c.errors, [])
    } finally {
      c.close()
    }
  })
})
