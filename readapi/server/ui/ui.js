// The /ui page: search the key's tags, pick a time range, and draw what the read API answers.
// A numeric tag is drawn as its time-weighted average (twa) with a min/max band, at a bucket
// width chosen from the range; a tag without numbers in the range as a timeline of its spans,
// coloured by value. The key lives in this tab's sessionStorage and travels only in the
// Authorization header of the /v1 calls, never in a URL. Tag names travel only in JSON request
// bodies, never in a URL path: a browser rewrites '.' and '..' segments of a path (even spelled
// %2e), so `evil/../str/state` would fetch, and show, the data of `str/state`.
"use strict";

const KEY_ITEM = "tagflow.apiKey";
const DAY_MS = 86400000;
// The bucket width for a range up to each length: up to 60 days, at most 1,440 buckets.
const WIDTHS = [
  [DAY_MS, "1m"],
  [7 * DAY_MS, "15m"],
  [60 * DAY_MS, "1h"],
  [Infinity, "1d"],
];
const SPAN_LIMIT = 10000; // spans drawn at most (the newest ones)
const LISTED_TAGS = 200; // search matches listed at most

const $ = (id) => document.getElementById(id);
let tagNames = [];
let selected = null;
let generation = 0; // answers of an older request than the latest are dropped

/** The bucket width for a range of `ms` milliseconds. */
function bucketWidth(ms) {
  return WIDTHS.find(([limit]) => ms <= limit)[1];
}

function setStatus(text, isError = false) {
  $("status").textContent = text;
  $("status").classList.toggle("error", isError);
}

/** Text for Plotly's labels, which read a little HTML: a value is shown, never interpreted. */
function escapeHtml(text) {
  return String(text).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

/** Call a /v1 endpoint with the key: GET without `body`, else POST with `body` as JSON (the
 * service's POST forms take the GET form's parameters). The parsed JSON answer, or an Error
 * with the API's message. */
async function api(path, body = null) {
  const request = {
    headers: { Authorization: `Bearer ${sessionStorage.getItem(KEY_ITEM)}` },
    cache: "no-store",
    referrerPolicy: "no-referrer",
  };
  if (body !== null) {
    request.method = "POST";
    request.headers["Content-Type"] = "application/json";
    request.body = JSON.stringify(body);
  }
  const response = await fetch(new URL(path, window.location.origin), request);
  if (!response.ok) {
    let message = `${response.status} ${response.statusText}`;
    try {
      message = (await response.json()).message || message;
    } catch {
      // not a JSON error body: keep the status line
    }
    if (response.status === 401) closeSession("The key was refused.");
    throw new Error(message);
  }
  return response.json();
}

// ---------------------------------------------------------------- the key

async function openSession() {
  $("key-form").hidden = true;
  $("session").hidden = false;
  $("viewer").hidden = false;
  setStatus("loading tags …");
  try {
    tagNames = (await api("/v1/tags")).map((tag) => tag.tag_name);
  } catch (error) {
    setStatus(error.message, true);
    return;
  }
  setStatus(`${tagNames.length} tags; search and pick one`);
  listMatches();
}

function closeSession(message = "") {
  sessionStorage.removeItem(KEY_ITEM);
  tagNames = [];
  selected = null;
  generation += 1;
  $("tag-list").replaceChildren();
  Plotly.purge($("chart"));
  $("viewer").hidden = true;
  $("session").hidden = true;
  $("key-form").hidden = false;
  $("key-error").textContent = message;
  $("key").focus();
}

$("key-form").addEventListener("submit", (event) => {
  event.preventDefault(); // never a navigation: the key must not reach a URL
  const key = $("key").value.trim();
  $("key").value = "";
  $("key-error").textContent = "";
  if (!key) return;
  sessionStorage.setItem(KEY_ITEM, key);
  openSession();
});
$("forget").addEventListener("click", () => closeSession());

// ---------------------------------------------------------------- tag search and time range

function listMatches() {
  const needle = $("search").value.trim().toLowerCase();
  const matches = tagNames.filter((name) => name.toLowerCase().includes(needle));
  const items = matches.slice(0, LISTED_TAGS).map((name) => {
    const button = document.createElement("button");
    button.type = "button";
    button.textContent = name;
    button.dataset.tag = name;
    button.setAttribute("role", "option");
    button.setAttribute("aria-selected", String(name === selected));
    button.addEventListener("click", () => pick(name));
    const item = document.createElement("li");
    item.append(button);
    return item;
  });
  if (matches.length > LISTED_TAGS) {
    const more = document.createElement("li");
    more.textContent = `… ${matches.length - LISTED_TAGS} more: refine the search`;
    items.push(more);
  }
  $("tag-list").replaceChildren(...items);
}

function pick(name) {
  selected = name;
  $("search").value = name;
  listMatches();
  show();
}

/** A datetime-local value read as UTC, in milliseconds since the epoch. */
const inputMs = (input) => Date.parse(`${input.value}Z`);
const toInput = (ms) => new Date(ms).toISOString().slice(0, 16);

function setLastDays(days) {
  const end = Math.ceil(Date.now() / 60000) * 60000;
  $("end").value = toInput(end);
  $("start").value = toInput(end - days * DAY_MS);
}

$("search").addEventListener("input", listMatches);
$("range-form").addEventListener("submit", (event) => {
  event.preventDefault();
  show();
});
for (const button of document.querySelectorAll("[data-days]")) {
  button.addEventListener("click", () => {
    setLastDays(Number(button.dataset.days));
    show();
  });
}

// ---------------------------------------------------------------- drawing

/** The values of a one-tag wide samples answer: numbers, null where none ("NaN", null). */
function sampleColumn(answer) {
  return answer.rows.map((row) => (typeof row[1] === "number" ? row[1] : null));
}

async function show() {
  if (!selected) {
    setStatus("pick a tag");
    return;
  }
  const start = inputMs($("start"));
  const end = inputMs($("end"));
  if (!(end > start)) {
    setStatus("the range must end after it starts", true);
    return;
  }
  const token = ++generation;
  const tag = selected;
  const width = bucketWidth(end - start);
  const range = { start: new Date(start).toISOString(), end: new Date(end).toISOString() };
  setStatus(`loading ${tag} …`);
  $("chart").dataset.tag = "";
  try {
    const [average, min, max] = await Promise.all(
      ["average", "min", "max"].map((aggregate) =>
        api("/v1/metrics/samples", {
          ...range,
          tag: [tag],
          bucket_width: width,
          aggregate_function: aggregate,
        }),
      ),
    );
    if (token !== generation) return;
    const twa = sampleColumn(average);
    if (twa.some((value) => value !== null)) {
      const times = average.rows.map((row) => row[0]);
      drawSamples(tag, [start, end], width, times, twa, sampleColumn(min), sampleColumn(max));
    } else {
      const spans = await api("/v1/spans", { ...range, tag_name: tag, limit: String(SPAN_LIMIT) });
      if (token !== generation) return;
      drawSpans(tag, [start, end], spans);
    }
    $("chart").dataset.tag = tag;
  } catch (error) {
    if (token === generation) setStatus(error.message, true);
  }
}

const CONFIG = { displaylogo: false, responsive: true };

/** The min/max band as one closed shape per run of buckets that have both (Plotly closes each
 * segment between nulls), so a gap in the data stays a gap in the band. */
function bandShape(times, min, max) {
  const x = [];
  const y = [];
  let start = 0;
  for (let i = 0; i <= times.length; i += 1) {
    if (i < times.length && min[i] !== null && max[i] !== null) continue;
    if (i > start) {
      const forward = [...Array(i - start).keys()].map((k) => start + k);
      const back = [...forward].reverse();
      x.push(...forward.map((k) => times[k]), ...back.map((k) => times[k]), null);
      y.push(...forward.map((k) => max[k]), ...back.map((k) => min[k]), null);
    }
    start = i + 1;
  }
  return { x, y };
}

function drawSamples(tag, range, width, times, twa, min, max) {
  Plotly.react(
    $("chart"),
    [
      {
        type: "scatter",
        mode: "lines",
        name: "min–max",
        ...bandShape(times, min, max),
        fill: "toself",
        fillcolor: "rgba(31,119,180,0.2)",
        line: { width: 0 },
        hoverinfo: "skip",
      },
      {
        type: "scatter",
        mode: "lines",
        name: "twa",
        x: times,
        y: twa,
        line: { color: "#1f77b4", width: 1.5 },
        hovertemplate: "%{x}<br>twa %{y}<extra></extra>",
      },
    ],
    {
      title: { text: escapeHtml(tag) },
      xaxis: { type: "date", range, title: { text: `UTC, buckets of ${width}` } },
      yaxis: { title: { text: "time-weighted average" } },
      margin: { t: 48, r: 24 },
    },
    CONFIG,
  );
  setStatus(`${tag}: ${times.length} buckets of ${width} (twa with its min/max band)`);
}

/** A span's value as a label: a string as it is, a number in JSON's spelling, or null. */
function spanLabel(span) {
  if (span.value_string !== null) return span.value_string;
  if (span.value_double !== null) return String(span.value_double);
  return "null";
}

function drawSpans(tag, range, spans) {
  const byValue = new Map();
  for (const span of spans) {
    const label = spanLabel(span);
    if (!byValue.has(label)) byValue.set(label, []);
    byValue.get(label).push(span);
  }
  const traces = [...byValue].map(([label, runs]) => ({
    type: "bar",
    orientation: "h",
    name: escapeHtml(label),
    y: runs.map(() => "spans"),
    base: runs.map((span) => Date.parse(span.begin_at)),
    x: runs.map((span) => Date.parse(span.end_at) - Date.parse(span.begin_at)),
    hovertext: runs.map(
      (span) =>
        `${escapeHtml(label)}<br>raw_begin_at ${span.raw_begin_at}<br>raw_end_at ` +
        (span.raw_end_at ?? "none (not ended before the range end)"),
    ),
    hovertemplate: "%{hovertext}<extra></extra>",
  }));
  Plotly.react(
    $("chart"),
    traces,
    {
      title: { text: escapeHtml(tag) },
      barmode: "overlay",
      xaxis: { type: "date", range, title: { text: "UTC" } },
      yaxis: { visible: false },
      hovermode: "closest",
      margin: { t: 48, r: 24 },
    },
    CONFIG,
  );
  const shown = spans.length === SPAN_LIMIT ? ` (the newest ${SPAN_LIMIT})` : "";
  setStatus(
    spans.length
      ? `${tag}: ${spans.length} spans${shown}, coloured by value`
      : `${tag} holds no value in this range`,
  );
}

// ---------------------------------------------------------------- start

setLastDays(1);
if (sessionStorage.getItem(KEY_ITEM)) openSession();
else closeSession();
