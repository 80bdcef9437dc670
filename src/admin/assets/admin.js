// nsqrs admin: the only script the pages run (the Content-Security-Policy forbids inline
// script). Buttons carrying data-url take actions after a confirmation; forms carrying
// data-api post JSON; the replay form counts first and then polls the run's progress.
"use strict";

const TOKEN_KEY = "nsqrs-admin-token";

async function send(method, url, body) {
  const call = () => {
    const headers = { "Content-Type": "application/json" };
    const token = sessionStorage.getItem(TOKEN_KEY);
    if (token) headers["Authorization"] = "Bearer " + token;
    return fetch(url, { method, headers, body });
  };
  let resp = await call();
  if (resp.status === 401) {
    const token = window.prompt("This admin needs its token (--http-admin-token) for actions:");
    if (token) {
      sessionStorage.setItem(TOKEN_KEY, token);
      resp = await call();
    }
  }
  let data = {};
  try { data = await resp.json(); } catch (e) { data = {}; }
  return { ok: resp.ok, status: resp.status, data };
}

function say(kind, text) {
  const box = document.getElementById("status");
  if (!box) return;
  box.className = kind;
  box.textContent = text;
  box.hidden = false;
}

async function act(button) {
  if (button.dataset.confirm && !window.confirm(button.dataset.confirm)) return;
  button.disabled = true;
  const r = await send(button.dataset.method || "POST", button.dataset.url, button.dataset.body || null);
  button.disabled = false;
  if (!r.ok) {
    say("error", "Failed (" + r.status + "): " + (r.data.message || ""));
    return;
  }
  if (r.data.message) {
    say("warning", r.data.message);
    return;
  }
  if (button.dataset.after) window.location.assign(button.dataset.after);
  else window.location.reload();
}

async function postForm(form) {
  const body = {};
  for (const [k, v] of new FormData(form).entries()) if (v !== "") body[k] = v;
  const r = await send("POST", form.dataset.api, JSON.stringify(body));
  if (!r.ok) say("error", "Failed (" + r.status + "): " + (r.data.message || ""));
  else if (r.data.message) say("warning", r.data.message);
  else window.location.reload();
}

function replayBody(form, dryRun) {
  const body = { dry_run: dryRun };
  for (const [k, v] of new FormData(form).entries()) body[k] = v;
  return JSON.stringify(body);
}

async function replayCount(form) {
  const r = await send("POST", form.dataset.replay, replayBody(form, true));
  const start = form.querySelector("button[data-replay-start]");
  if (!r.ok) {
    say("error", "Failed (" + r.status + "): " + (r.data.message || ""));
    return;
  }
  const count = document.getElementById("replay-count");
  count.textContent = r.data.count + " messages in the window";
  start.hidden = r.data.count === 0;
  start.textContent = "Replay " + r.data.count + " messages";
  start.dataset.count = r.data.count;
}

async function replayStart(form, button) {
  if (!window.confirm("Republish " + button.dataset.count + " messages?")) return;
  const r = await send("POST", form.dataset.replay, replayBody(form, false));
  if (!r.ok) {
    say("error", "Failed (" + r.status + "): " + (r.data.message || ""));
    return;
  }
  button.hidden = true;
  pollReplay(form.dataset.replay + "/" + r.data.run_id);
}

async function pollReplay(url) {
  const bar = document.getElementById("replay-progress");
  const text = document.getElementById("replay-state");
  bar.hidden = false;
  for (;;) {
    const resp = await fetch(url);
    const s = await resp.json();
    bar.max = Math.max(s.total, 1);
    bar.value = s.done;
    text.textContent = "run " + s.run_id + ": " + s.state + ", " + s.done + " of " + s.total +
      " replayed to " + s.to_topic + (s.error ? " (" + s.error + ")" : "");
    if (s.state !== "running") return;
    await new Promise((ok) => setTimeout(ok, 500));
  }
}

async function pollCounter(el) {
  for (;;) {
    try {
      const resp = await fetch(el.dataset.counter);
      const data = await resp.json();
      let total = 0;
      for (const k in data.stats) total += data.stats[k].message_count;
      el.textContent = total.toLocaleString();
    } catch (e) { /* keep the last number */ }
    await new Promise((ok) => setTimeout(ok, 2000));
  }
}

document.addEventListener("click", (e) => {
  const button = e.target.closest("button[data-url]");
  if (button) {
    e.preventDefault();
    act(button);
    return;
  }
  const count = e.target.closest("button[data-replay-count]");
  if (count) {
    e.preventDefault();
    replayCount(count.form);
    return;
  }
  const start = e.target.closest("button[data-replay-start]");
  if (start) {
    e.preventDefault();
    replayStart(start.form, start);
  }
});

document.addEventListener("submit", (e) => {
  const form = e.target.closest("form[data-api]");
  if (form) {
    e.preventDefault();
    postForm(form);
  }
});

document.addEventListener("DOMContentLoaded", () => {
  const counter = document.querySelector("[data-counter]");
  if (counter) pollCounter(counter);
  for (const el of document.querySelectorAll("[data-poll-replay]")) pollReplay(el.dataset.pollReplay);
});
