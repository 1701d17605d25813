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
const HIDDEN_COLOUR = "#98a2b3";
const HIDDEN_LABEL = "hidden (shown greyed)";
const USER_COLOUR = "#6941c6"; // a span a person added: neither a state's kind nor null's grey

const $ = (id) => document.getElementById(id);
let tagNames = [];
let selected = null;
let generation = 0; // answers of an older request than the latest are dropped
let latestDay = null; // the tenant's last materialised day ("YYYY-MM-DD"), if any
let timelineSpans = new Map(); // the spans drawn, by id (decimal text)
let timelineTag = null; // the tag whose spans are drawn

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

/** JSON text parsed with every `id` kept as its decimal text: a span id is a 64-bit integer,
 * which a JavaScript number would round (and a write would then name another span). */
function parseJson(text) {
  return JSON.parse(text, (key, value, context) =>
    key === "id" && typeof value === "number" && context ? context.source : value,
  );
}

/** A `format: "columns"` answer ({columns, data}: an array per column) as one object per row,
 * like the records form: integers are read as BigInt first, so that `id` keeps its decimal
 * text (ids pass 2^53) and every other column gets its numbers back. */
function rowsOfColumns(text) {
  const { columns, data } = JSON.parse(text, (key, value, context) =>
    typeof value === "number" && context && /^-?\d+$/.test(context.source)
      ? BigInt(context.source)
      : value,
  );
  const values = data.map((column, k) => {
    const asText = columns[k] === "id";
    if (asText) return column.map((v) => (v === null ? v : String(v)));
    return column.map((v) => (typeof v === "bigint" ? Number(v) : v));
  });
  const rows = [];
  for (let row = 0; row < (values.length ? values[0].length : 0); row += 1) {
    const record = {};
    columns.forEach((name, k) => {
      record[name] = values[k][row];
    });
    rows.push(record);
  }
  return rows;
}

/** An answer of the API that is not 2xx: its status, `error` code and parsed body. */
class ApiError extends Error {
  constructor(status, message, body) {
    super(message);
    this.status = status;
    this.body = body;
  }
}

/** Call a /v1 endpoint with the key: GET without `body`, else POST (or `method`) with `body` as
 * JSON (the service's POST forms take the GET form's parameters). The answer as `parse` reads
 * it, or an ApiError with the API's message. */
async function api(path, body = null, method = "POST", parse = parseJson) {
  const request = {
    headers: { Authorization: `Bearer ${sessionStorage.getItem(KEY_ITEM)}` },
    cache: "no-store",
    referrerPolicy: "no-referrer",
  };
  if (body !== null) {
    request.method = method;
    request.headers["Content-Type"] = "application/json";
    request.body = JSON.stringify(body);
  }
  const response = await fetch(new URL(path, window.location.origin), request);
  if (!response.ok) {
    let message = `${response.status} ${response.statusText}`;
    let answer = null;
    try {
      answer = parseJson(await response.text());
      message = answer.message || message;
    } catch {
      // not a JSON error body: keep the status line
    }
    if (response.status === 401) closeSession("The key was refused.");
    throw new ApiError(response.status, message, answer);
  }
  return parse(await response.text());
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
  delete $("chart").dataset.bound; // purge dropped the chart's handlers
  timelineTag = null;
  timelineSpans = new Map();
  keyWrites = null;
  closePanel();
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
      // As columns: the cheapest JSON for the service to write (no Python object per span).
      const spans = await api(
        "/v1/spans",
        {
          ...range,
          tag_name: tag,
          limit: String(SPAN_LIMIT),
          include_hidden: String($("show-hidden").checked),
          format: "columns",
        },
        "POST",
        rowsOfColumns,
      );
      if (token !== generation) return;
      drawSpans(tag, [start, end], spans);
    }
    $("chart").dataset.tag = tag;
    $("chart").dataset.shown = String(token); // tests wait for a redraw by this
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
  timelineTag = null;
  timelineSpans = new Map();
  closePanel();
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
  if (span.origin === "user") return "added by a person";
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

/** A timeline run's colour: grey for hidden spans, purple for people's, else the value's. */
function runColour(label, span) {
  if (label === HIDDEN_LABEL) return HIDDEN_COLOUR;
  if (span.origin === "user") return USER_COLOUR;
  return isNullSpan(span) ? NULL_COLOUR : stateColour(label);
}

function drawSpans(tag, range, spans) {
  const carried = spans.length ? carriedForward(newestRunBegin(spans, range[1]), ...range) : null;
  timelineSpans = new Map(spans.map((span) => [span.id, span]));
  timelineTag = tag;
  const byValue = new Map();
  for (const span of spans) {
    const label = span.hidden ? HIDDEN_LABEL : spanLabel(span);
    if (!byValue.has(label)) byValue.set(label, []);
    byValue.get(label).push(span);
  }
  const traces = [...byValue].map(([label, runs]) => ({
    type: "bar",
    orientation: "h",
    name: escapeHtml(label),
    marker: {
      color: runColour(label, runs[0]),
      opacity: label === HIDDEN_LABEL ? 0.5 : 1,
    },
    customdata: runs.map((span) => span.id),
    y: runs.map(() => "spans"),
    base: runs.map((span) => Date.parse(span.begin_at)),
    x: runs.map((span) => Date.parse(span.end_at) - Date.parse(span.begin_at)),
    hovertext: runs.map(
      (span) =>
        `${escapeHtml(label)}${labelsHover(span)}` +
        `<br>raw_begin_at ${span.raw_begin_at}<br>raw_end_at ` +
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
      // Drag across the timeline to select a range: a span of one's own (clicks open a span).
      dragmode: "select",
      selectdirection: "h",
      margin: { t: 48, r: 24 },
      ...carriedLayout(carried),
    },
    CONFIG,
  );
  bindTimeline();
  const shown = spans.length === SPAN_LIMIT ? ` (the newest ${SPAN_LIMIT})` : "";
  setStatus(
    spans.length
      ? `${tag}: ${spans.length} spans${shown}, coloured by value${carriedNote(carried)}`
      : `${tag} holds no value in this range`,
  );
}

// ---------------------------------------------------------------- span annotations
// Click a span of the timeline: a side panel shows its labels, note, revision, last writer and
// history; with a write key it labels it, writes a note, corrects its bounds and hides or
// unhides it (PATCH /v1/annotations/spans/{id}, from the revision shown). Drag across the
// timeline: a span of one's own over that range (POST /v1/annotations/spans). Span ids are the
// only thing a write puts in a URL path; tag names and labels travel in the JSON body.

let keyWrites = null; // whether the key may write: null until asked
let panelSpan = null; // the span the panel shows, as the API last answered it
let selectedRange = null; // [begin ms, end ms] being dragged on the timeline

/** The annotation of a span as the spans answer's columns or a write's `metadata` carry it
 * (null fields for a span nobody annotated). */
function annotationOf(span) {
  const meta = span.metadata !== undefined ? span.metadata || {} : span;
  let labels = meta.labels ?? {};
  if (typeof labels === "string") labels = JSON.parse(labels);
  return {
    labels,
    note: meta.note ?? "",
    revision: meta.revision ?? 0,
    hidden: Boolean(meta.hidden),
    origin: meta.origin ?? "computed",
    updatedAt: meta.updated_at ?? null,
    updatedBy: meta.updated_by ?? null,
    // The bounds a person corrected (their computed bounds are kept beside them).
    corrected: ["begin_at", "end_at"].filter((bound) => meta[`computed_${bound}`] != null),
  };
}

/** A span's labels for its hover text ("" without any). */
function labelsHover(span) {
  const labels = Object.entries(annotationOf(span).labels);
  return labels.length
    ? `<br>${labels.map(([k, v]) => `${escapeHtml(k)}=${escapeHtml(v)}`).join(", ")}`
    : "";
}

/** Labels as the panel's text: one `key=value` a line. */
const labelsText = (labels) =>
  Object.entries(labels)
    .map(([k, v]) => `${k}=${v}`)
    .join("\n");

/** The labels typed, one `key=value` a line (blank lines skipped); throws on a line without
 * `=` or with an empty key. */
function readLabels(text) {
  const labels = {};
  for (const line of text.split("\n")) {
    if (!line.trim()) continue;
    const at = line.indexOf("=");
    const key = at < 0 ? "" : line.slice(0, at).trim();
    if (!key) throw new Error(`write each label as key=value: "${line.trim()}"`);
    labels[key] = line.slice(at + 1).trim();
  }
  return labels;
}

const sortedEntries = (labels) => JSON.stringify(Object.entries(labels).sort());
const sameLabels = (a, b) => sortedEntries(a) === sortedEntries(b);

/** Whether the key may write, asked once per session. */
async function keyMayWrite() {
  if (keyWrites === null) keyWrites = (await api("/v1/annotations/access")).write === true;
  return keyWrites;
}

function setPanelStatus(text, isError = false) {
  $("panel-status").textContent = text;
  $("panel-status").classList.toggle("error", isError);
}

/** Show the write controls, or say the key may only read (they are then disabled). */
function applyAccess(form, writes) {
  for (const control of form.querySelectorAll("input, textarea, button")) {
    if (!control.classList.contains("cancel")) control.disabled = !writes;
  }
}

function closePanel() {
  panelSpan = null;
  const open = !$("panel").hidden || !$("new-span").hidden;
  $("panel").hidden = true;
  $("new-span").hidden = true;
  $("conflict").hidden = true;
  if (open) fitChart();
}

/** Fit the chart to the room the side panel leaves (Plotly follows only the window's size). */
function fitChart() {
  if ($("chart").data) Plotly.Plots.resize($("chart"));
}

/** The record's facts in the panel's list. */
function showFacts(span) {
  const note = annotationOf(span);
  const facts = [
    ["tag", span.tag_name],
    ["value", note.origin === "user" ? "none (added by a person)" : spanLabel(span)],
    ["begin", `${utcText(Date.parse(span.begin_at))} UTC`],
    ["end", span.end_at ? `${utcText(Date.parse(span.end_at))} UTC` : "not ended"],
    ["revision", String(note.revision)],
    ["origin", note.origin],
    ["hidden", note.hidden ? "yes" : "no"],
    [
      "last changed",
      note.updatedBy ? `by ${note.updatedBy}, ${utcText(Date.parse(note.updatedAt))} UTC` : "never",
    ],
  ];
  $("span-facts").replaceChildren(
    ...facts.flatMap(([term, value]) => {
      const dt = document.createElement("dt");
      dt.textContent = term;
      const dd = document.createElement("dd");
      dd.textContent = value;
      dd.dataset.fact = term;
      return [dt, dd];
    }),
  );
}

/** Fill the panel's form from `span` (what a write starts from). */
function fillForm(span) {
  const note = annotationOf(span);
  $("span-labels").value = labelsText(note.labels);
  $("span-note").value = note.note;
  $("span-begin").value = utcText(Date.parse(span.begin_at));
  $("span-end").value = span.end_at ? utcText(Date.parse(span.end_at)) : "";
  $("span-hide").textContent = note.hidden ? "Unhide" : "Hide";
  $("span-computed").hidden = note.corrected.length === 0;
}

async function openPanel(span) {
  panelSpan = span;
  $("new-span").hidden = true;
  $("conflict").hidden = true;
  $("panel").hidden = false;
  fitChart();
  showFacts(span);
  fillForm(span);
  setPanelStatus("");
  applyAccess($("span-form"), false);
  $("panel-readonly").hidden = true;
  await Promise.all([loadHistory(span), showAccess($("span-form"))]);
}

async function showAccess(form) {
  try {
    const writes = await keyMayWrite();
    applyAccess(form, writes);
    $("panel-readonly").hidden = writes;
    $("new-readonly").hidden = writes;
  } catch (error) {
    setPanelStatus(error.message, true);
  }
}

async function loadHistory(span) {
  const list = $("span-history");
  list.replaceChildren();
  if (annotationOf(span).revision === 0) {
    list.textContent = "nobody changed this span";
    return;
  }
  try {
    const changes = await api(`/v1/annotations/spans/${encodeURIComponent(span.id)}/history`);
    if (panelSpan !== span) return;
    list.replaceChildren(
      ...changes.map((change) => {
        const item = document.createElement("li");
        const before = change.before || {};
        const fields = Object.keys(change.after || {}).filter(
          (name) => JSON.stringify(change.after[name]) !== JSON.stringify(before[name]),
        );
        item.textContent =
          `revision ${change.revision} by ${change.by}, ${utcText(Date.parse(change.at))} UTC: ` +
          (change.before === null ? "added" : fields.join(", ") || "no field changed");
        return item;
      }),
    );
  } catch (error) {
    list.textContent = `history: ${error.message}`;
  }
}

/** The changes typed in the panel, as a PATCH body's fields ({} when nothing changed). */
function panelChanges() {
  const note = annotationOf(panelSpan);
  const changes = {};
  const labels = readLabels($("span-labels").value);
  if (!sameLabels(labels, note.labels)) changes.labels = labels;
  if ($("span-note").value !== note.note) changes.note = $("span-note").value;
  for (const [bound, input] of [
    ["begin_at", $("span-begin")],
    ["end_at", $("span-end")],
  ]) {
    const shown = panelSpan[bound] ? utcText(Date.parse(panelSpan[bound])) : "";
    if (input.value.trim() === shown) continue;
    const ms = inputMs(input);
    if (Number.isNaN(ms)) {
      throw new Error("type bounds as YYYY-MM-DD HH:MM, in UTC and 24-hour form");
    }
    changes[bound] = new Date(ms).toISOString();
  }
  return changes;
}

/** PATCH the panel's span with `changes`, from the revision the panel shows. */
async function writeSpan(changes) {
  const note = annotationOf(panelSpan);
  const body = { revision: note.revision, ...changes };
  if (note.revision === 0) {
    // A computed span's first annotation names it as the spans answer did.
    body.tag_name = panelSpan.tag_name;
    body.raw_begin_at = panelSpan.raw_begin_at;
  }
  setPanelStatus("saving …");
  try {
    const path = `/v1/annotations/spans/${encodeURIComponent(panelSpan.id)}`;
    const span = await api(path, body, "PATCH");
    await afterWrite(span, `saved: revision ${annotationOf(span).revision}`);
  } catch (error) {
    if (error.status === 409 && error.body && error.body.current) {
      showConflict(error.body.current, changes);
    } else if (error.status === 403) {
      keyWrites = false;
      applyAccess($("span-form"), false);
      $("panel-readonly").hidden = false;
      setPanelStatus(error.message, true);
    } else {
      setPanelStatus(error.message, true);
    }
  }
}

/** Someone changed the span since the panel showed it: show the record as it is now, and the
 * form filled from it with only the person's own `changes` on top, to be reapplied (saved
 * again) from the current revision. */
function showConflict(current, changes) {
  panelSpan = current;
  fillForm(current);
  if (changes.labels !== undefined) $("span-labels").value = labelsText(changes.labels);
  if (changes.note !== undefined) $("span-note").value = changes.note;
  if (changes.begin_at) $("span-begin").value = utcText(Date.parse(changes.begin_at));
  if (changes.end_at) $("span-end").value = utcText(Date.parse(changes.end_at));
  showFacts(current);
  const note = annotationOf(current);
  $("conflict-record").textContent =
    `revision ${note.revision} by ${note.updatedBy ?? "?"}` +
    `\nlabels: ${labelsText(note.labels).replaceAll("\n", ", ") || "none"}` +
    `\nnote: ${note.note || "none"}` +
    `\nbounds: ${utcText(Date.parse(current.begin_at))} to ` +
    `${current.end_at ? utcText(Date.parse(current.end_at)) : "not ended"} UTC` +
    `\nhidden: ${note.hidden ? "yes" : "no"}`;
  $("conflict").hidden = false;
  const what = changes.hidden !== undefined ? (changes.hidden ? "Hide" : "Unhide") : "Save";
  setPanelStatus(
    "Not saved: someone changed this span since you opened it. Its current record is shown " +
      `above, with your changes in the form; check them and press ${what} again to reapply.`,
    true,
  );
  loadHistory(current);
}

/** After a write: redraw the timeline and show the span as answered. */
async function afterWrite(span, message) {
  await show();
  await openPanel(span);
  setPanelStatus(message);
}

$("span-form").addEventListener("submit", (event) => {
  event.preventDefault();
  if (!panelSpan) return;
  let changes;
  try {
    changes = panelChanges();
  } catch (error) {
    setPanelStatus(error.message, true);
    return;
  }
  if (!Object.keys(changes).length) {
    setPanelStatus("nothing changed");
    return;
  }
  writeSpan(changes);
});
$("span-hide").addEventListener("click", () => {
  if (panelSpan) writeSpan({ hidden: !annotationOf(panelSpan).hidden });
});
$("span-computed").addEventListener("click", () => {
  // null drops a correction: the span is back to its computed bound.
  if (panelSpan) {
    writeSpan(Object.fromEntries(annotationOf(panelSpan).corrected.map((bound) => [bound, null])));
  }
});
$("panel-close").addEventListener("click", closePanel);
$("show-hidden").addEventListener("change", () => show());

// A span of one's own: drag across the timeline, then labels and a note.

function openNewSpan(begin, end) {
  panelSpan = null;
  $("panel").hidden = true;
  $("new-span").hidden = false;
  fitChart();
  $("new-tag").textContent = timelineTag;
  $("new-begin").value = utcText(begin);
  $("new-end").value = utcText(end);
  $("new-labels").value = "";
  $("new-note").value = "";
  $("new-status").textContent = "";
  applyAccess($("new-span-form"), false);
  $("new-readonly").hidden = true;
  showAccess($("new-span-form"));
}

$("new-span-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const status = $("new-status");
  const begin = inputMs($("new-begin"));
  const end = inputMs($("new-end"));
  let labels;
  try {
    labels = readLabels($("new-labels").value);
    if (Number.isNaN(begin) || Number.isNaN(end)) {
      throw new Error("type both times as YYYY-MM-DD HH:MM, in UTC and 24-hour form");
    }
    if (!(end > begin)) throw new Error("the span must end after it begins");
  } catch (error) {
    status.textContent = error.message;
    status.classList.add("error");
    return;
  }
  status.textContent = "adding …";
  status.classList.remove("error");
  const body = {
    tag_name: timelineTag,
    begin_at: new Date(begin).toISOString(),
    end_at: new Date(end).toISOString(),
    labels,
  };
  if ($("new-note").value) body.note = $("new-note").value;
  try {
    const span = await api("/v1/annotations/spans", body);
    await afterWrite(span, `added: ${span.tag_name}, revision 1`);
  } catch (error) {
    status.textContent = error.message;
    status.classList.add("error");
  }
});
$("new-cancel").addEventListener("click", closePanel);

/** A Plotly date-axis value (ms, or "YYYY-MM-DD HH:MM:SS.sss" in UTC) in milliseconds. */
function axisMs(value) {
  if (typeof value === "number") return value;
  return Date.parse(`${String(value).replace(" ", "T")}Z`);
}

/** The chart's click and selection handlers, bound once per chart element. */
function bindTimeline() {
  const chart = $("chart");
  if (chart.dataset.bound) return;
  chart.dataset.bound = "1";
  chart.on("plotly_click", (event) => {
    const point = event && event.points && event.points[0];
    const span = point && timelineSpans.get(point.customdata);
    if (span) openPanel(span);
  });
  chart.on("plotly_selecting", (event) => {
    if (event && event.range && event.range.x) selectedRange = event.range.x.map(axisMs);
  });
  chart.on("plotly_selected", (event) => {
    const range = event && event.range && event.range.x ? event.range.x.map(axisMs) : selectedRange;
    selectedRange = null;
    if (!range || !timelineTag || !(range[1] > range[0])) return;
    // Whole minutes, as the inputs show them.
    openNewSpan(Math.round(range[0] / 60000) * 60000, Math.round(range[1] / 60000) * 60000);
  });
}

// ---------------------------------------------------------------- start

// Until the key says which days are materialised.
setLastDays(1);
if (sessionStorage.getItem(KEY_ITEM)) openSession();
else closeSession();
