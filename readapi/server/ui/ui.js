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
// A value held unchanged over at least this share of the range, up to its end, is marked as
// carried forward: drawn plain, a flat line to the range end reads as a fault of the chart.
const CARRIED_SHARE = 0.05;
// Times are typed and shown as UTC text ("2026-03-02 13:30"; a "T" is accepted too), never
// through datetime-local, which the browser shows in its own locale (AM/PM).
const UTC_TEXT = /^(\d{4}-\d{2}-\d{2})[ T](\d{2}:\d{2})$/;
// A state's colour says what kind of state it is: a fault-like state (a word starting with one
// of these) is never drawn in a reassuring colour, a healthy one never in an alarming one, and
// within its kind a state's colour follows from its name, the same on every chart.
const FAULT_STATE = /(^|[^a-z])(fault|alarm|error|trip|fail|alert|critical)/i;
const GOOD_STATE =
  /(^|[^a-z])(ok|okay|run|running|normal|on|active|ready|healthy|online|good|nominal)([^a-z]|$)/i;
const PALETTES = {
  fault: ["#d62728", "#e6550d", "#a50f15", "#fd8d3c", "#cb181d", "#f16913"],
  good: ["#2ca02c", "#1f77b4", "#238b45", "#4292c6", "#31a354", "#08519c"],
  // Neither red, orange, green nor blue: a state of no known kind must look like neither kind.
  other: ["#9467bd", "#e377c2", "#7f7f7f", "#bcbd22", "#7b4173", "#a55194", "#525252", "#bdb76b"],
};
const NULL_COLOUR = "#c7c7c7";

const $ = (id) => document.getElementById(id);
let tagNames = [];
let selected = null;
let generation = 0; // answers of an older request than the latest are dropped
let latestDay = null; // the tenant's last materialised day ("YYYY-MM-DD"), if any

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
    // The window is set before the tags are listed, so a tag picked is read over it.
    showCoverage(await api("/v1/coverage"));
    tagNames = (await api("/v1/tags")).map((tag) => tag.tag_name);
  } catch (error) {
    setStatus(error.message, true);
    return;
  }
  setStatus(`${tagNames.length} tags; search and pick one`);
  listMatches();
}

/** Say which days are materialised and open on the latest: today usually has no data yet. */
function showCoverage(coverage) {
  latestDay = coverage.last_day;
  $("latest-day").hidden = latestDay === null;
  if (latestDay === null) {
    $("coverage").textContent =
      "Nothing is materialised for this tenant yet: the window shows the last day, answered " +
      "from the source database where the service has one.";
    setLastDays(1);
    return;
  }
  const days = coverage.days === 1 ? "1 day" : `${coverage.days} days`;
  $("coverage").textContent =
    `Materialised: ${coverage.first_day} to ${latestDay} (UTC; ${days}). ` +
    `Opened on the latest, ${latestDay}.`;
  setLatestDay();
}

function closeSession(message = "") {
  sessionStorage.removeItem(KEY_ITEM);
  tagNames = [];
  selected = null;
  latestDay = null;
  generation += 1;
  $("tag-list").replaceChildren();
  $("coverage").textContent = "";
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

/** A time as the inputs show it: UTC, 24-hour, "YYYY-MM-DD HH:MM". */
const utcText = (ms) => new Date(ms).toISOString().slice(0, 16).replace("T", " ");

/** An input's text read as a UTC time, in milliseconds since the epoch; NaN unless it is one
 * (a date that does not exist, such as 2026-02-30, included). */
function inputMs(input) {
  const parts = UTC_TEXT.exec(input.value.trim());
  const ms = parts ? Date.parse(`${parts[1]}T${parts[2]}:00Z`) : NaN;
  return parts && utcText(ms) === `${parts[1]} ${parts[2]}` ? ms : NaN;
}

function setWindow(start, end) {
  $("start").value = utcText(start);
  $("end").value = utcText(end);
}

function setLastDays(days) {
  const end = Math.ceil(Date.now() / 60000) * 60000;
  setWindow(end - days * DAY_MS, end);
}

function setLatestDay() {
  const start = Date.parse(`${latestDay}T00:00:00Z`);
  setWindow(start, start + DAY_MS);
}

$("search").addEventListener("input", listMatches);
$("range-form").addEventListener("submit", (event) => {
  event.preventDefault();
  show();
});
$("latest-day").addEventListener("click", () => {
  setLatestDay();
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
  if (Number.isNaN(start) || Number.isNaN(end)) {
    setStatus("type both times as YYYY-MM-DD HH:MM, in UTC and 24-hour form", true);
    return;
  }
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
    const [average, min, max, count] = await Promise.all(
      ["average", "min", "max", "count"].map((aggregate) =>
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
      const since = lastChangeBucketEnd(times, sampleColumn(count), width, start);
      const band = [sampleColumn(min), sampleColumn(max)];
      drawSamples(tag, [start, end], width, times, twa, ...band, carriedForward(since, start, end));
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
const WIDTH_MS = { m: 60000, h: 3600000, d: DAY_MS };

/** The end of the last bucket holding a transition (the value is carried forward from there
 * on), or `start` if none does. */
function lastChangeBucketEnd(times, counts, width, start) {
  const last = counts.findLastIndex((n) => n > 0);
  if (last < 0) return start;
  return Date.parse(times[last]) + Number.parseInt(width, 10) * WIDTH_MS[width.slice(-1)];
}

/** The marks of a value carried forward from `since` to the range end, when that is long
 * enough to read as a flat line: the part shaded, its start a dotted line, a note saying since
 * when nothing changed. Null when there is nothing to mark. */
function carriedForward(since, start, end) {
  if (end - since < CARRIED_SHARE * (end - start)) return null;
  const from = Math.max(since, start);
  const text =
    since <= start
      ? "no new values in this range: the value before it is carried forward"
      : `no new values since ${utcText(since)} UTC: the last value is carried forward`;
  const x0 = new Date(from).toISOString();
  const wide = end - from > 0.4 * (end - start); // room for the note inside the shaded part
  return {
    text,
    shapes: [
      {
        name: "carried forward",
        type: "rect",
        xref: "x",
        yref: "paper",
        x0,
        x1: new Date(end).toISOString(),
        y0: 0,
        y1: 1,
        fillcolor: "rgba(102,112,133,0.15)",
        line: { width: 0 },
        layer: "below",
      },
      {
        name: "last change",
        type: "line",
        xref: "x",
        yref: "paper",
        x0,
        x1: x0,
        y0: 0,
        y1: 1,
        line: { color: "#475467", width: 1.5, dash: "dot" },
      },
    ],
    annotations: [
      {
        name: "carried forward",
        text: escapeHtml(text),
        x: x0,
        xref: "x",
        y: 1,
        yref: "paper",
        xanchor: wide ? "left" : "right",
        yanchor: "top",
        xshift: wide ? 4 : -4,
        showarrow: false,
        bgcolor: "rgba(255,255,255,0.8)",
        font: { color: "#344054" },
      },
    ],
  };
}

/** The layout and status text of a chart with `carried` marks (or none). */
const carriedLayout = (carried) =>
  carried ? { shapes: carried.shapes, annotations: carried.annotations } : {};
const carriedNote = (carried) => (carried ? `; ${carried.text}` : "");

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

function drawSamples(tag, range, width, times, twa, min, max, carried) {
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
      ...carriedLayout(carried),
    },
    CONFIG,
  );
  setStatus(
    `${tag}: ${times.length} buckets of ${width} (twa with its min/max band)` +
      carriedNote(carried),
  );
}

const isNullSpan = (span) => span.value_string === null && span.value_double === null;

/** A span's value as a label: a string as it is, a number in JSON's spelling, or null. */
function spanLabel(span) {
  if (span.value_string !== null) return span.value_string;
  if (span.value_double !== null) return String(span.value_double);
  return "null";
}

/** Hash of a state's name (FNV-1a), so its colour does not depend on what else is drawn. */
function nameHash(name) {
  let hash = 0x811c9dc5;
  for (const c of name) hash = Math.imul(hash ^ c.codePointAt(0), 0x01000193) >>> 0;
  return hash;
}

/** A state's colour: red/orange shades for fault-like states, green/blue for healthy ones,
 * a neutral palette for the rest. */
function stateColour(label) {
  let kind = "other";
  if (FAULT_STATE.test(label)) kind = "fault";
  else if (GOOD_STATE.test(label)) kind = "good";
  const palette = PALETTES[kind];
  return palette[nameHash(label) % palette.length];
}

/** Where the newest span's value has been carried forward from: its raw begin when it has not
 * ended before the range end (the newest span first; none: nothing to mark). */
function newestRunBegin(spans, end) {
  if (!spans.length || spans[0].raw_end_at !== null) return end;
  return Date.parse(spans[0].raw_begin_at);
}

function drawSpans(tag, range, spans) {
  const carried = spans.length ? carriedForward(newestRunBegin(spans, range[1]), ...range) : null;
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
    marker: { color: isNullSpan(runs[0]) ? NULL_COLOUR : stateColour(label) },
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
      ...carriedLayout(carried),
    },
    CONFIG,
  );
  const shown = spans.length === SPAN_LIMIT ? ` (the newest ${SPAN_LIMIT})` : "";
  setStatus(
    spans.length
      ? `${tag}: ${spans.length} spans${shown}, coloured by value${carriedNote(carried)}`
      : `${tag} holds no value in this range`,
  );
}

// ---------------------------------------------------------------- start

// Until the key says which days are materialised.
setLastDays(1);
if (sessionStorage.getItem(KEY_ITEM)) openSession();
else closeSession();
