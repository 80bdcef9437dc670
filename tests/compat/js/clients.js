'use strict'
// Thin promise wrappers around nsqjs 0.13.0 Reader/Writer.

const nsq = require('nsqjs')
const {waitFor} = require('./broker')

function once(emitter, event, timeoutMs, desc) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      emitter.removeListener(event, onEvent)
      reject(new Error(`timed out after ${timeoutMs} ms waiting for ${desc}`))
    }, timeoutMs)
    function onEvent(...args) {
      clearTimeout(timer)
      resolve(args)
    }
    emitter.once(event, onEvent)
  })
}

class JsClients {
  constructor(broker) {
    this.broker = broker
    this.readers = []
    this.writers = []
    this.errors = []
  }

  // Connects a Reader and resolves once nsqd answered OK to its SUB.
  async reader(topic, channel, onMessage, options = {}) {
    const r = new nsq.Reader(topic, channel, {nsqdTCPAddresses: [this.broker.tcpAddr], maxInFlight: 1, ...options})
    r.on('message', onMessage)
    r.on('error', (err) => this.errors.push(`reader ${topic}/${channel}: ${err.message}`))
    this.readers.push(r)
    const ready = once(r, 'ready', 5000, `nsqjs Reader ${topic}/${channel} to get OK for SUB`)
    r.connect()
    await ready
    return r
  }

  async writer(options = {}) {
    const w = new nsq.Writer('127.0.0.1', this.broker.tcpPort, options)
    w.on('error', (err) => this.errors.push(`writer: ${err.message}`))
    this.writers.push(w)
    const ready = once(w, 'ready', 5000, 'nsqjs Writer to be ready (IDENTIFY)')
    w.connect()
    await ready
    return w
  }

  close() {
    for (const r of this.readers) {
      try { r.close() } catch (err) { /* already closed */ }
    }
    for (const w of this.writers) {
      try { w.close() } catch (err) { /* already closed */ }
    }
  }
}

// Writer.publish / deferPublish as promises with a 5 s limit.
function publish(writer, topic, msgs) {
  return withTimeout(new Promise((resolve, reject) => {
    writer.publish(topic, msgs, (err) => (err ? reject(err) : resolve()))
  }), 5000, `publish to ${topic}`)
}

function deferPublish(writer, topic, msgs, ms) {
  return withTimeout(new Promise((resolve, reject) => {
    writer.deferPublish(topic, msgs, ms, (err) => (err ? reject(err) : resolve()))
  }), 5000, `deferPublish to ${topic}`)
}

function withTimeout(promise, ms, desc) {
  let timer
  const t = new Promise((resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${desc}`)), ms)
  })
  return Promise.race([promise, t]).finally(() => clearTimeout(timer))
}

async function channelDrained(broker, topic, channel, finished) {
  const c = await broker.channelStats(topic, channel)
  if (c && c.in_flight_count === 0 && c.depth === 0 && c.clients.length > 0 &&
      c.clients[0].finish_count === finished) return c
  return null
}

module.exports = {JsClients, publish, deferPublish, once, waitFor, channelDrained}
