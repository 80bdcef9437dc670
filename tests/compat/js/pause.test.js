'use strict'
// nsqjs consumer + HTTP admin: a paused channel delivers nothing until unpaused;
// an ephemeral channel disappears when its consumer leaves.
const test = require('node:test')
const assert = require('node:assert')
const {withBroker, sleep} = require('./broker')
const {JsClients, publish, waitFor} = require('./clients')

test('paused channel holds messages until /channel/unpause', {timeout: 30000}, async () => {
  await withBroker([], async (broker) => {
    const c = new JsClients(broker)
    try {
      const topic = 'js_pause'
      for (const [p, q] of [['/topic/create', `topic=${topic}`], ['/channel/create', `topic=${topic}&channel=ch`],
        ['/channel/pause', `topic=${topic}&channel=ch`]]) {
        const res = await broker.http('POST', `${p}?${q}`)
        assert.strictEqual(res.status, 200, `${p}: ${res.status} ${res.body}`)
        assert.strictEqual(res.body.length, 0, `${p} must answer an empty body, got ${JSON.stringify(res.body.toString())}`)
      }
      const got = []
      await c.reader(topic, 'ch', (msg) => { got.push(msg.body.toString()); msg.finish() }, {maxInFlight: 5})
      const w = await c.writer()
      await publish(w, topic, ['p1', 'p2', 'p3'])
      await sleep(1000)
      assert.deepStrictEqual(got, [], 'paused channel delivered messages')
      const s = await broker.channelStats(topic, 'ch')
      assert.strictEqual(s.paused, true)
      assert.strictEqual(s.depth, 3)
      assert.strictEqual(s.in_flight_count, 0)
      const res = await broker.http('POST', `/channel/unpause?topic=${topic}&channel=ch`)
      assert.strictEqual(res.status, 200)
      await waitFor(() => got.length === 3, 3000, 'delivery after unpause')
      assert.deepStrictEqual(got.sort(), ['p1', 'p2', 'p3'])
    } finally {
      c.close()
    }
  })
})

test('paused topic holds messages from a live consumer until /topic/unpause', {timeout: 30000}, async () => {
  await withBroker([], async (broker) => {
    const c = new JsClients(broker)
    try {
      const topic = 'js_topic_pause'
      const got = []
      await c.reader(topic, 'ch', (msg) => { got.push(msg.body.toString()); msg.finish() }, {maxInFlight: 5})
      let res = await broker.http('POST', `/topic/pause?topic=${topic}`)
      assert.strictEqual(res.status, 200)
      const w = await c.writer()
      await publish(w, topic, ['t1', 't2'])
      await sleep(1000)
      assert.deepStrictEqual(got, [], 'paused topic delivered messages')
      const t = await broker.topicStats(topic)
      assert.strictEqual(t.paused, true)
      assert.strictEqual(t.depth, 2)
      assert.strictEqual(t.channels[0].depth, 0)
      res = await broker.http('POST', `/topic/unpause?topic=${topic}`)
      assert.strictEqual(res.status, 200)
      await waitFor(() => got.length === 2, 3000, 'delivery after /topic/unpause')
      assert.deepStrictEqual(got.sort(), ['t1', 't2'])
    } finally {
      c.close()
    }
  })
})

test('ephemeral channel is removed after its consumer disconnects', {timeout: 30000}, async () => {
  await withBroker([], async (broker) => {
    const c = new JsClients(broker)
    try {
      const topic = 'js_eph'
      const got = []
      const r = await c.reader(topic, 'tmp#ephemeral', (msg) => { got.push(msg.body.toString()); msg.finish() })
      const w = await c.writer()
      await publish(w, topic, 'e')
      await waitFor(() => got.length === 1, 3000, 'message on ephemeral channel')
      const s = await broker.channelStats(topic, 'tmp#ephemeral')
      assert.ok(s, 'ephemeral channel listed while subscribed')
      assert.strictEqual(s.client_count, 1)
      r.close()
      await waitFor(async () => (await broker.channelStats(topic, 'tmp#ephemeral')) === null, 3000,
        'ephemeral channel to vanish from /stats')
      const t = await broker.topicStats(topic)
      assert.deepStrictEqual(t.channels, [])
    } finally {
      c.close()
    }
  })
})
