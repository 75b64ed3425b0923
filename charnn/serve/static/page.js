// charnn's playground: every figure comes from `charnn serve`'s API (docs/serve.md), or, in a page
// written by `charnn show`, from the data it holds (window.CHARNN_OFFLINE). Plain JavaScript, no build.
"use strict";

const $ = (id) => document.getElementById(id);
const LN2 = Math.log(2);
const OFFLINE = window.CHARNN_OFFLINE || null;
const state = { models: [], write: { entries: [], history: [], abort: null }, cells: null, inspected: null };

// ---- the API ---------------------------------------------------------------------------------

function say(message) {
  $("status").textContent = message || "";
}

// A server started with --api-key: open the page as http://HOST:PORT/#key=KEY. The key is all that follows
// "key=", as typed (URLSearchParams would read a "+" of a base64 key as a space), percent-escapes decoded.
const KEY = (() => {
  const fragment = location.hash.slice(1);
  if (!fragment.startsWith("key=")) return null;
  try {
    return decodeURIComponent(fragment.slice(4));
  } catch {
    return fragment.slice(4);
  }
})();

async function api(path, body, signal) {
  let response;
  const headers = KEY ? { Authorization: `Bearer ${KEY}` } : {};
  try {
    response = await fetch(path, body === undefined ? { headers } : {
      method: "POST", headers: { ...headers, "Content-Type": "application/json" }, body: JSON.stringify(body), signal,
    });
  } catch (error) {
    if (error.name === "AbortError") throw error;
    throw new Error(`The server is unreachable (${location.origin}): is charnn serve running?`);
  }
  if (!response.ok) {
    let message = `The server answered ${response.status}`;
    try { message = (await response.json()).error.message; } catch (_) { /* not JSON */ }
    if (response.status === 401 && !KEY) {  // the API's words are for programs: a browser sends no header
      message = `this server needs its API key: open the page as ${location.origin}/#key=KEY`;
    } else if (response.status === 401) {
      message = "the key in this page's address (#key=) is not this server's: check it";
    }
    throw new Error(`Refused: ${message}`);
  }
  return response;
}

async function post(path, body) {
  return (await api(path, body)).json();
}

async function get(path) {
  return (await api(path)).json();
}

// Server-sent events of a streamed completion: calls onChunk with each event's first choice.
async function streamCompletion(body, signal, onChunk) {
  const response = await api("/v1/completions", { ...body, stream: true }, signal);
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  let finish = null;
  for (;;) {
    let read;
    try {
      read = await reader.read();
    } catch (error) {
      if (error.name === "AbortError") throw error;
      throw new Error(`The connection to the server was lost (${location.origin}): is charnn serve still running?`);
    }
    const { value, done } = read;
    if (done) return finish;
    buffer += decoder.decode(value, { stream: true });
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const event = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      if (!event.startsWith("data: ") || event === "data: [DONE]") continue;
      const data = JSON.parse(event.slice(6));
      if (data.error) throw new Error(`Refused: ${data.error.message}`);
      if (data.choices && data.choices.length) {
        onChunk(data.choices[0]);
        finish = data.choices[0].finish_reason || finish;
      }
    }
  }
}

// A completion's logprobs as entries: {text, logprob, top: [[text, logprob], ...]}.
function entriesOf(logprobs) {
  if (!logprobs) return [];
  return logprobs.tokens.map((text, i) => ({
    text,
    logprob: logprobs.token_logprobs[i],
    top: logprobs.top_logprobs[i] ? Object.entries(logprobs.top_logprobs[i]).sort((a, b) => b[1] - a[1]) : null,
  }));
}

// ---- characters, shading and the inspector -----------------------------------------------------

function shade(p) {
  // probability 1: white; 0: a strong red.
  const light = 100 - Math.round((1 - p) * 45);
  return `hsl(4, 85%, ${light}%)`;
}

function renderEntries(box, entries, options = {}) {
  box.textContent = "";
  const fragment = document.createDocumentFragment();
  entries.forEach((entry, i) => fragment.appendChild(charSpan(entry, i, options)));
  box.appendChild(fragment);
}

function charSpan(entry, i, options = {}) {
  const span = document.createElement("span");
  span.className = "ch" + (entry.prime ? " prime" : "") + (entry.chosen ? " chosen" : "");
  span.textContent = entry.text;
  span.dataset.index = i;
  span.tabIndex = -1;
  if (options.shade !== false && entry.logprob !== null && entry.logprob !== undefined) {
    span.style.background = shade(Math.exp(entry.logprob));
  }
  return span;
}

function showInspector(span, entries, onChoose) {
  const entry = entries[Number(span.dataset.index)];
  const box = $("inspect");
  if (!entry || entry.logprob === null || entry.logprob === undefined) { box.hidden = true; return; }
  state.inspected = { span, entries, onChoose };
  box.textContent = "";
  const p = document.createElement("div");
  p.className = "p";
  p.textContent = `${JSON.stringify(entry.text)}: p = ${Math.exp(entry.logprob).toFixed(4)} (${(-entry.logprob / LN2).toFixed(2)} bits)`;
  box.appendChild(p);
  if (entry.top) {
    const list = document.createElement("ol");
    list.setAttribute("aria-label", "The most likely characters here");
    for (const [text, logprob] of entry.top) {
      const item = document.createElement("li");
      const button = document.createElement("button");
      button.className = "alt";
      button.dataset.text = text;
      button.dataset.p = Math.exp(logprob);
      button.innerHTML = "<span></span><span></span>";
      button.firstChild.textContent = JSON.stringify(text);
      button.lastChild.textContent = Math.exp(logprob).toFixed(4);
      button.disabled = !onChoose;
      if (onChoose) {  // a click the keyboard made (Enter, Space: no pointer, detail 0) keeps the keyboard's place
        button.addEventListener("click", (event) => onChoose(Number(span.dataset.index), text, logprob, !event.detail));
      }
      item.appendChild(button);
      list.appendChild(item);
    }
    box.appendChild(list);
  }
  const rect = span.getBoundingClientRect();
  box.hidden = false;
  // Under the character, kept inside the window's width (a character near the right edge of a narrow window)
  const room = document.documentElement.clientWidth - box.offsetWidth - 4;
  box.style.left = `${window.scrollX + Math.max(0, Math.min(rect.left, room))}px`;
  box.style.top = `${window.scrollY + rect.bottom + 4}px`;
}

// Hover, focus and arrow keys over a text of characters show the inspector.
function inspectable(box, getEntries, onChoose) {
  const open = (target) => {
    if (state.quietFocus) { state.quietFocus = false; return; }  // focus given back to a character (quietly)
    if (target && target.classList && target.classList.contains("ch")) showInspector(target, getEntries(), onChoose);
  };
  box.addEventListener("mouseover", (event) => open(event.target));
  box.addEventListener("focusin", (event) => open(event.target));
  box.addEventListener("keydown", (event) => {
    const spans = box.querySelectorAll(".ch");
    if (!spans.length) return;
    const at = document.activeElement && document.activeElement.classList.contains("ch")
      ? Number(document.activeElement.dataset.index) : -1;
    let next = null;
    if (event.key === "ArrowRight") next = Math.min(spans.length - 1, at + 1);
    if (event.key === "ArrowLeft") next = Math.max(0, at < 0 ? spans.length - 1 : at - 1);
    if (event.key === "Enter" && at >= 0 && !$("inspect").hidden) {
      const first = $("inspect").querySelector("button:not([disabled])");
      if (first) { first.focus(); event.preventDefault(); }
      return;
    }
    if (event.key === "Escape") { $("inspect").hidden = true; return; }
    if (next !== null) { spans[next].focus(); event.preventDefault(); }
  });
}

document.addEventListener("keydown", (event) => {
  if (event.key !== "Escape") return;
  const inside = document.activeElement && document.activeElement.closest && document.activeElement.closest("#inspect");
  $("inspect").hidden = true;
  if (inside && state.inspected) backTo(state.inspected.span);  // not to the page's start
});

// Keyboard focus back on a character (the inspector's, or the one just chosen), without opening the inspector.
function backTo(span) {
  if (!span || !span.isConnected) return;
  state.quietFocus = true;
  span.focus();
  state.quietFocus = false;
}
document.addEventListener("click", (event) => {
  if (!event.target.closest("#inspect") && !event.target.closest(".ch")) $("inspect").hidden = true;
});

// ---- models ------------------------------------------------------------------------------------

async function loadModels() {
  let data;
  try {
    data = await get("/v1/models");
  } catch (error) {  // each Model list says so, and Write repeats why rather than "no model is served"
    state.listed = false;
    state.listing = error.message;
    for (const select of document.querySelectorAll("select[data-endpoint]")) {
      select.textContent = "";
      select.add(new Option("(could not list the models)", ""));
    }
    throw error;
  }
  state.listed = true;
  state.models = data.data;
  for (const select of document.querySelectorAll("select[data-endpoint]")) {
    const endpoint = select.dataset.endpoint;
    const fits = state.models.filter((m) => endpoint === "cells" || endpoint === "completions"
      ? m.endpoint === "/v1/completions" && !m.reverse  // a right-to-left run is refused (charnn eval scores it)
      : m.endpoint === `/v1/${endpoint}`);
    select.textContent = "";
    for (const model of fits) select.add(new Option(model.id, model.id));
    if (!fits.length) select.add(new Option(`(no ${endpoint === "cells" ? "language" : endpoint} model served)`, ""));
  }
  modelChanged();
  scoreModelChanged();
  cellsModelChanged();
  if (!$("write-model").value) {  // no language model: open on a view that has something to use
    const view = ["classify", "tag"].find((name) => $(`${name}-model`).value);
    if (view) showTab(view);
  }
}

// "1 character", "2 characters".
function counted(n, noun) {
  return `${n} ${noun}${n === 1 ? "" : "s"}`;
}

function model(id) {
  return state.models.find((m) => m.id === id) || null;
}

// Shows a view's Style box (VIEW-style-label, its list VIEW-styles) where the model has styles.
function offerStyles(view, m) {
  const styles = (m && m.styles) || [];
  $(`${view}-style-label`).hidden = !styles.length;
  $(`${view}-styles`).textContent = "";
  for (const name of styles) $(`${view}-styles`).appendChild(new Option(name));
  return styles;
}

// What a run reads under a style or blend (its records and separator, from /v1/models' style_records): that of
// the style with the largest weight, the first of the run's styles among equals, as the server picks it. A run
// without styles, or a style the page cannot read (the server says what is wrong), reads as the run does.
function readAs(m, spec) {
  if (!m || !m.styles || !m.style_records || !spec) return m;
  const weights = m.styles.map(() => 0);
  const parts = spec.split(",").map((p) => p.trim());
  for (const part of parts.length === 1 && !parts[0].includes("=") ? [`${parts[0]}=1`] : parts) {
    const [name, weight] = part.split("=").map((p) => p.trim());
    const i = m.styles.indexOf(name);
    if (i >= 0) weights[i] = Number(weight);
  }
  const main = weights.reduce((best, w, i) => (w > weights[best] ? i : best), 0);
  return weights[main] > 0 ? { ...m, ...m.style_records[main] } : m;
}

// The model a view's select names, or null where none of its kind is served (said in the status line).
function chosen(selectId, noun) {
  const id = $(selectId).value;
  if (!id) {
    say(state.listed ? `No ${noun} model is served: start charnn serve with a ${noun} run.`
      : state.listing || "The models are not listed yet.");
    if (state.listed === false && !state.relisting && !OFFLINE) {  // a listing failed: the server may be up now
      state.relisting = true;
      loadModels()
        .then(() => say("The server answers now and its models are listed: try again."))
        .catch(() => {})
        .finally(() => { state.relisting = false; });
    }
  }
  return id || null;
}

function modelChanged() {
  if (state.write.abort) state.write.abort.abort();  // a stream goes on under the model that began it: stop it
  const m = model($("write-model").value);
  offerStyles("write", m);
  anotherShown();
}

// Another (a new record) is offered where the run, or the style asked for, reads records.
function anotherShown() {
  const m = readAs(model($("write-model").value), $("write-style").value.trim());
  $("write-another").hidden = !(m && m.records);
}

// A style run scores under a style (or blend), as `charnn eval --style` does: its first style until
// another is given (with none, the server would pick one at random for each request).
function scoreModelChanged() {
  const styles = offerStyles("score", model($("score-model").value));
  if (styles.length) $("score-style").value = styles[0];
  clearScore();  // another run's figure does not stay under this one's name
}

function clearScore() {
  state.scored = null;
  $("score-out").textContent = "";
  $("score-bpc").textContent = "";
  delete $("score-bpc").dataset.bpc;
}

// ---- Write ---------------------------------------------------------------------------------------

function writeEntries() {
  return state.write.entries;
}

function renderWrite() {
  renderEntries($("write-out"), writeEntries(), { shade: $("write-shade").checked });
  $("write-undo").disabled = !state.write.history.length;
}

// Write's length and temperature, or null (said) where a box is empty or out of range: it wrote 1 character, or
// greedily, without a word.
function writeSettings() {
  const read = (box) => ($(box).value.trim() === "" ? NaN : Number($(box).value));
  const length = read("write-length");
  const temperature = read("write-temp");
  if (!(length >= 1)) { say("Give a length of 1 character or more."); return null; }
  if (!(temperature >= 0)) { say("Give a temperature of 0 (always the likeliest character) or more."); return null; }
  return { length, temperature };
}

async function generate(prime) {
  const w = state.write;
  if (w.abort) w.abort.abort();
  say("");
  const id = chosen("write-model", "language");
  if (!id) return;
  const settings = writeSettings();
  if (!settings) return;
  const { length, temperature } = settings;
  const body = {
    model: id,
    prompt: prime + w.entries.filter((e) => !e.prime).map((e) => e.text).join(""),
    max_tokens: length,
    temperature,
    logprobs: 5,
  };
  const style = $("write-style").value.trim();
  if (style && !$("write-style-label").hidden) body.style = style;
  // This call's own controller and text: a choice, Write or Undo while it streams starts another call (or
  // restores another text), and neither the stopped stream's last characters nor its end may touch them.
  const controller = new AbortController();
  const entries = w.entries;
  w.abort = controller;
  $("write-stop").disabled = false;
  const box = $("write-out");
  const m = model(id);
  try {
    const finish = await streamCompletion(body, controller.signal, (choice) => {
      if (controller.signal.aborted || w.entries !== entries) return;
      for (const entry of entriesOf(choice.logprobs)) {
        entries.push(entry);
        box.appendChild(charSpan(entry, entries.length - 1, { shade: $("write-shade").checked }));
      }
    });
    // Without records or styles (a style may read records) nothing but the server's stopping ends a text early.
    if (finish === "stop" && m && !m.records && !m.styles && w.abort === controller) {
      say("The server ended the text before its length: it is stopping (Ctrl-C or SIGTERM).");
    }
  } catch (error) {
    if (error.name !== "AbortError" && w.abort === controller) say(error.message);
  } finally {
    if (w.abort === controller) {  // else a later call owns Stop
      w.abort = null;
      $("write-stop").disabled = true;
    }
    $("write-undo").disabled = !w.history.length;
  }
}

function choose(index, text, logprob, byKeyboard = false) {
  const w = state.write;
  if (w.abort) w.abort.abort();  // the text changes under the stream: stop it (generate starts the next)
  w.history.push(w.entries.slice());
  const top = w.entries[index].top;
  w.entries = w.entries.slice(0, index).concat([{ text, logprob, top, chosen: true }]);
  $("inspect").hidden = true;
  renderWrite();
  if (byKeyboard) backTo($("write-out").querySelectorAll(".ch")[index]);  // the chosen character, for the next
  const m = readAs(model($("write-model").value), $("write-style").value.trim());
  if (m && m.records && text === "") {  // a record run's end ("" in the alternatives): the record ends here
    say("The record ends here; Another writes the next one.");
    return;
  }
  generate($("write-prime").value);
}

function setUpWrite() {
  $("write-model").addEventListener("change", modelChanged);
  $("write-style").addEventListener("input", anotherShown);
  $("write-style").addEventListener("change", () => {  // a stream goes on under the style that began it: stop it
    if (state.write.abort) state.write.abort.abort();
  });
  $("write-go").addEventListener("click", () => {
    if (!writeSettings()) return;  // the text stays: nothing will replace it
    state.write.history.push(state.write.entries.slice());
    state.write.entries = [];
    renderWrite();
    generate($("write-prime").value);
  });
  $("write-another").addEventListener("click", () => {
    if (!writeSettings()) return;
    state.write.history.push(state.write.entries.slice());
    state.write.entries = [];
    renderWrite();
    generate("");
  });
  $("write-stop").addEventListener("click", () => state.write.abort && state.write.abort.abort());
  $("write-undo").addEventListener("click", () => {
    if (state.write.abort) state.write.abort.abort();
    if (state.write.history.length) state.write.entries = state.write.history.pop();
    renderWrite();
  });
  $("write-shade").addEventListener("change", renderWrite);
  inspectable($("write-out"), writeEntries, choose);
}

// ---- Score ---------------------------------------------------------------------------------------

// Each view's requests are numbered: an answer is shown only if no request of its view was made after it and
// its model (or layer) was not changed since; a slow answer must not land under another model's name.
const asked = { score: 0, cells: 0, classify: 0, tag: 0 };
function ask(view) { return ++asked[view]; }
function latest(view, n) { return asked[view] === n; }

function showScore(entries, m = OFFLINE || model($("score-model").value)) {  // m: the run that scored them
  state.scored = entries;
  renderEntries($("score-out"), entries);
  // charnn show's data, or the served run's description, says whether its run reads records
  const separator = separatorTest(m);
  let nats = 0;
  let chars = 0;
  for (const e of entries) {
    if (e.logprob === null) continue;
    nats -= e.logprob;
    chars += separator && separator(e.text) ? 1 : [...e.text].length;  // a record's end is one character
  }
  const bpc = chars ? nats / LN2 / chars : NaN;
  const how = m && m.records
    ? "as charnn eval scores records: each separator is scored as the end of the record before it and " +
      "counts as one character, and charnn eval also counts the last record's end where the text does not " +
      "end with a separator"
    : OFFLINE && OFFLINE.style
      ? `as charnn eval --style ${OFFLINE.style} scores it`
      : "as charnn eval scores it";
  $("score-bpc").textContent = chars
    ? `${bpc.toFixed(4)} bits per character over ${counted(chars, "character")} (${how})`
    : "Too short to score: give at least two characters.";
  $("score-bpc").dataset.bpc = bpc;
}

// Whether an entry's text is a record run's separator (its regular expression, from the server or the page's
// data): eval counts one character for it, whatever its length ("\n\n" between blocks). None where the run
// reads no records, or where JavaScript cannot read the expression (the figure then counts every character).
function separatorTest(m) {
  if (!m || !m.separator) return null;
  try {
    const whole = new RegExp(`^(?:${m.separator})$`);
    return (text) => whole.test(text);
  } catch (error) {
    return null;
  }
}

async function score() {
  say("");
  const n = ask("score");
  const m = model($("score-model").value);
  if (!chosen("score-model", "language")) return;
  try {
    const body = { model: $("score-model").value, prompt: $("score-text").value, max_tokens: 0, echo: true, logprobs: 5 };
    const style = $("score-style").value.trim();
    if (!$("score-style-label").hidden) {
      if (!style) { say("Give a style or a blend (a=0.5,b=0.5) to score under."); return; }
      body.style = style;
    }
    const out = await post("/v1/completions", body);
    if (latest("score", n)) showScore(entriesOf(out.choices[0].logprobs), readAs(m, body.style));
  } catch (error) {
    if (latest("score", n)) {
      clearScore();  // the figure of a text before this one would read as this one's
      say(error.message);
    }
  }
}

// ---- Cells ---------------------------------------------------------------------------------------

function cellsModelChanged() {
  const m = model($("cells-model").value);
  if (state.cells && !OFFLINE) {  // its units (their number, their values) are another run's: kept (so are the
    state.cells.stale = true;     // spans, to compare rankings), but not coloured or ranked until read again
    $("cells-info").textContent = "Read by another run: press Read to read the text with this one.";
    $("cells-out").querySelectorAll(".ch").forEach((span) => { span.style.background = ""; span.title = ""; });
  }
  $("cells-layer").textContent = "";
  for (let i = 0; m && i < m.layers; i++) $("cells-layer").add(new Option(`${i + 1} of ${m.layers}`, i));
  if (m) $("cells-layer").value = m.layers - 1;
  $("cells-state").textContent = "";
  $("cells-state").add(new Option("hidden state h", "hidden"));
  if (m && m.cell === "lstm") {
    $("cells-state").add(new Option("cell c", "cell"));
    $("cells-state").add(new Option("cell through tanh, tanh(c)", "tanh"));
  }
}

// A unit's mean and standard deviation over some characters, in two passes (as numpy's var): one pass's
// E[x²] - E[x]² loses the spread of values near ±1 (tanh(c) of a saturated cell) to rounding.
function stats(values, unit, rows) {
  let sum = 0;
  for (const t of rows) sum += values[t][unit];
  const mean = sum / rows.length;
  let squares = 0;
  for (const t of rows) squares += (values[t][unit] - mean) ** 2;
  return { mean, sd: Math.sqrt(squares / rows.length) };
}

function showCells(data) {
  const all = data.values.map((_, t) => t);
  const units = [];
  for (let u = 0; u < data.units; u++) units.push({ unit: u, sd: stats(data.values, u, all).sd });
  units.sort((a, b) => b.sd - a.sd);
  // Spans stay when the same text is read again as the same tokens (in another layer or view), to compare the
  // rankings; they count tokens, so a run that cuts the text otherwise (a subword run after a character run)
  // starts without them.
  const before = state.cells && state.cells.tokens;
  const same = before && before.length === data.tokens.length && before.every((t, i) => t === data.tokens[i]);
  state.cells = { ...data, order: units, spans: same ? state.cells.spans : [] };
  renderEntries($("cells-out"), data.tokens.map((text) => ({ text, logprob: null })), { shade: false });
  showSpans();
  const what = { hidden: "hidden state h", cell: "cell c", tanh: "tanh(c), the cell through tanh" }[data.state];
  const chars = [...data.tokens.join("")].length;
  const read = data.tokens.length === chars
    ? counted(chars, "character")
    : `${counted(chars, "character")} in ${counted(data.tokens.length, "token")}`;
  $("cells-info").textContent = `${read}; layer ${data.layer + 1}, ${what}, ${data.units} units`;
  listByVariance();
  if (units.length) colourBy(units[0].unit);
}

// The units, most varied over the text first: what the list shows until a selection ranks them.
function listByVariance() {
  listUnits(state.cells.order.slice(0, 64).map((u) => ({ unit: u.unit, label: `σ ${u.sd.toFixed(3)}` })));
  $("cells-units-title").textContent = "Units, most varied first";
}

function listUnits(items) {
  const list = $("cells-units");
  list.textContent = "";
  for (const item of items) {
    const li = document.createElement("li");
    const button = document.createElement("button");
    button.dataset.unit = item.unit;
    button.setAttribute("aria-pressed", "false");
    button.textContent = `unit ${item.unit}  ${item.label}`;
    button.addEventListener("click", () => colourBy(item.unit));
    li.appendChild(button);
    list.appendChild(li);
  }
}

// Whether the Cells view holds values of the text read by the chosen run (else it says what to do).
function cellsRead() {
  if (!state.cells) say("Read a text first.");
  else if (state.cells.stale) say("Read the text with this run first (Read).");
  return Boolean(state.cells && !state.cells.stale);
}

function colourBy(unit) {
  if (!cellsRead()) return;
  const { values } = state.cells;
  let most = 1e-9;
  for (const row of values) most = Math.max(most, Math.abs(row[unit]));
  const spans = $("cells-out").querySelectorAll(".ch");
  spans.forEach((span, t) => {
    const v = values[t][unit] / most;
    span.style.background = v >= 0 ? `hsla(4, 85%, 55%, ${v.toFixed(3)})` : `hsla(215, 85%, 55%, ${(-v).toFixed(3)})`;
    span.title = `unit ${unit}: ${values[t][unit].toFixed(4)}`;
  });
  state.cells.unit = unit;
  for (const button of $("cells-units").querySelectorAll("button")) {
    button.setAttribute("aria-pressed", String(Number(button.dataset.unit) === unit));
  }
}

// Any unit by its number, not only those listed.
function colourByNumber() {
  if (!cellsRead()) return;
  const unit = Number($("cells-unit").value);
  if ($("cells-unit").value === "" || !Number.isInteger(unit) || unit < 0 || unit >= state.cells.units) {
    say(`Give a unit from 0 to ${state.cells.units - 1}.`);
    return;
  }
  say("");
  colourBy(unit);
}

// The characters a mouse selection covers in the cell text: [from, to).
function selectedSpan() {
  const selection = window.getSelection();
  if (!selection.rangeCount || selection.isCollapsed) return null;
  const range = selection.getRangeAt(selection.rangeCount - 1);  // the latest, where a browser keeps several
  const spans = [...$("cells-out").querySelectorAll(".ch")].filter((s) => range.intersectsNode(s));
  if (!spans.length) return null;
  return [Number(spans[0].dataset.index), Number(spans[spans.length - 1].dataset.index) + 1];
}

// The span in From and To, checked: [from, to), or null after saying what is wrong.
function fromTo() {
  const n = state.cells.tokens.length;
  const from = Number($("cells-from").value);
  const to = Number($("cells-to").value);
  const whole = Number.isInteger(from) && Number.isInteger(to);
  if ($("cells-from").value === "" || $("cells-to").value === "" || !whole || !(to > from) || from < 0 || to > n) {
    say(`Give a span inside the text: 0 ≤ from < to ≤ ${n}.`);
    return null;
  }
  return [from, to];
}

// Spans added to the selection: listed with a button to take each out, and outlined in the text.
function showSpans() {
  const list = $("cells-spans");
  list.textContent = "";
  const spans = state.cells ? state.cells.spans : [];
  for (const [i, [from, to]] of spans.entries()) {
    const li = document.createElement("li");
    li.textContent = `${from}–${to - 1} `;
    const remove = document.createElement("button");
    remove.textContent = "×";
    remove.setAttribute("aria-label", `Take characters ${from}–${to - 1} out of the selection`);
    remove.addEventListener("click", () => {
      state.cells.spans.splice(i, 1);
      spansChanged();
      const left = $("cells-spans").querySelectorAll("button");  // keep the keyboard's place
      (left[Math.min(i, left.length - 1)] || $("cells-add")).focus();
    });
    li.appendChild(remove);
    list.appendChild(li);
  }
  const picked = new Set();
  for (const [from, to] of spans) for (let t = from; t < to; t++) picked.add(t);
  $("cells-out").querySelectorAll(".ch").forEach((span, t) => span.classList.toggle("picked", picked.has(t)));
}

// After spans were added or taken out: the list, and a ranking by what is left (or the units by variance).
function spansChanged() {
  showSpans();
  if (state.cells.spans.length) rankUnits();
  else listByVariance();
}

// Adds From–To to the selection; spans it overlaps or touches merge with it into one.
function addSpan() {
  if (!cellsRead()) return;
  const span = fromTo();
  if (!span) return;
  say("");
  let [from, to] = span;
  const kept = [];
  for (const [a, b] of state.cells.spans) {
    if (b < from || a > to) kept.push([a, b]);
    else { from = Math.min(from, a); to = Math.max(to, b); }
  }
  kept.push([from, to]);
  kept.sort((x, y) => x[0] - y[0]);
  state.cells.spans = kept;
  spansChanged();
}

// LSTMVis's selection, over one span or several: units that split the spans from the characters
// around them (around each span, as many before and after it as it holds), by the difference of the
// means in pooled standard deviations (each side's spread about its own mean), clearest first
// whatever the sign (a unit off inside the spans is as telling); charnn.tasks.lm.cells.rank_units.
function rankUnits() {
  if (!cellsRead()) return;
  let spans = state.cells.spans;
  if (!spans.length) {
    const span = fromTo();
    if (!span) return;
    spans = [span];
  }
  const n = state.cells.tokens.length;
  const inside = new Uint8Array(n);
  const near = new Uint8Array(n);
  for (const [from, to] of spans) {  // addSpan merged those that touch: each is a run, as rank_units reads it
    for (let t = Math.max(0, 2 * from - to); t < Math.min(n, 2 * to - from); t++) near[t] = 1;
    for (let t = from; t < to; t++) inside[t] = 1;
  }
  const rowsIn = [];
  const rowsOut = [];
  for (let t = 0; t < n; t++) if (near[t]) (inside[t] ? rowsIn : rowsOut).push(t);
  if (!rowsOut.length) { say("The selection holds the whole text: leave some of it out."); return; }
  say("");
  const ranked = [];
  for (let u = 0; u < state.cells.units; u++) {
    const a = stats(state.cells.values, u, rowsIn);
    const b = stats(state.cells.values, u, rowsOut);
    // At least 1e-4, what the answer's four decimals tell apart (charnn.tasks.lm.cells.SPREAD_FLOOR).
    const pooled = Math.max(1e-4, Math.sqrt((a.sd ** 2 * rowsIn.length + b.sd ** 2 * rowsOut.length) / (rowsIn.length + rowsOut.length)));
    ranked.push({ unit: u, gap: (a.mean - b.mean) / pooled });
  }
  ranked.sort((x, y) => Math.abs(y.gap) - Math.abs(x.gap));
  listUnits(ranked.slice(0, 20).map((r) => ({ unit: r.unit, label: `${r.gap >= 0 ? "+" : "−"}${Math.abs(r.gap).toFixed(2)} sd` })));
  const which = spans.length === 1 ? `characters ${spans[0][0]}–${spans[0][1] - 1}` : `${spans.length} spans`;
  $("cells-units-title").textContent = `Units that split ${which} from the characters around them (+ on inside, − off)`;
  colourBy(ranked[0].unit);
}

// A cell's values read through tanh, as the cell reaches the output (the page's own view, not the API's).
function throughTanh(cells) {
  return { ...cells, state: "tanh", values: cells.values.map((row) => row.map(Math.tanh)) };
}

async function readCells() {
  say("");
  const n = ask("cells");
  if (!chosen("cells-model", "language")) return;
  try {
    const wanted = $("cells-state").value;
    const data = await post("/v1/cells", {
      model: $("cells-model").value, input: $("cells-text").value,
      layer: Number($("cells-layer").value), state: wanted === "tanh" ? "cell" : wanted,
    });
    if (latest("cells", n)) showCells(wanted === "tanh" ? throughTanh(data) : data);
  } catch (error) { if (latest("cells", n)) say(error.message); }
}

function setUpCells() {
  $("cells-model").addEventListener("change", cellsModelChanged);
  $("cells-go").addEventListener("click", readCells);
  $("cells-rank").addEventListener("click", rankUnits);
  $("cells-add").addEventListener("click", addSpan);
  $("cells-colour").addEventListener("click", colourByNumber);
  $("cells-unit").addEventListener("keydown", (event) => { if (event.key === "Enter") colourByNumber(); });
  $("cells-clear").addEventListener("click", () => { if (state.cells) { state.cells.spans = []; spansChanged(); } });
  $("cells-out").addEventListener("mouseup", (event) => {
    const span = selectedSpan();
    if (!span) return;
    $("cells-from").value = span[0];
    $("cells-to").value = span[1];
    if (event.ctrlKey || event.metaKey) {  // a selection made with Ctrl (⌘) held is added at once
      addSpan();
      window.getSelection().removeAllRanges();
    }
  });
}

// ---- Classify and tag ----------------------------------------------------------------------------

async function classify() {
  say("");
  const out = $("classify-out");
  const n = ask("classify");
  if (!chosen("classify-model", "classifier")) return;
  if (!$("classify-text").value.trim()) { say("Give a text to classify."); return; }
  try {
    const data = await post("/v1/classify", { model: $("classify-model").value, input: $("classify-text").value, attention: true });
    if (!latest("classify", n)) return;
    const result = data.data[0];
    out.textContent = "";
    const bars = document.createElement("div");
    for (const [label, p] of Object.entries(result.probabilities).sort((a, b) => b[1] - a[1])) {
      const bar = document.createElement("div");
      bar.className = "bar";
      bar.innerHTML = '<span class="name"></span><span class="fill"></span><span class="value"></span>';
      bar.children[0].textContent = label;
      bar.children[1].style.width = `${Math.round(p * 300)}px`;
      bar.children[2].textContent = p.toFixed(4);
      bars.appendChild(bar);
    }
    out.appendChild(bars);
    const tokens = document.createElement("div");
    tokens.className = "tokens";
    const most = result.attention ? Math.max(...result.attention) : 1;
    result.tokens.forEach((text, i) => {
      const span = document.createElement("span");
      span.className = "tok";
      span.textContent = text;
      if (result.attention) {
        span.style.background = `hsla(215, 85%, 55%, ${(result.attention[i] / most).toFixed(3)})`;
        span.title = `attention ${result.attention[i].toFixed(4)}`;
      }
      tokens.appendChild(span);
    });
    out.appendChild(tokens);
    if (!result.attention) out.appendChild(document.createTextNode("This classifier pools without attention: no weights to show."));
  } catch (error) { if (latest("classify", n)) say(error.message); }
}

function tagColour(tag) {
  const name = tag.replace(/^[BI]-/, "");
  if (name === "O") return "#f1f3f5";
  let hash = 0;
  for (const c of name) hash = (hash * 31 + c.charCodeAt(0)) % 360;
  return `hsl(${hash}, 70%, 85%)`;
}

async function tag() {
  say("");
  const out = $("tag-out");
  const n = ask("tag");
  if (!chosen("tag-model", "tagger")) return;
  if (!$("tag-text").value.trim()) { say("Give a sentence to tag."); return; }
  try {
    const data = await post("/v1/tag", { model: $("tag-model").value, input: $("tag-text").value });
    if (!latest("tag", n)) return;
    const result = data.data[0];
    out.textContent = "";
    let group = null;
    result.tokens.forEach((token, i) => {
      const t = result.tags[i];
      const chip = document.createElement("span");
      chip.className = "chip";
      chip.style.background = tagColour(t);
      chip.title = `${t} (${result.probabilities[i].toFixed(4)})`;
      chip.innerHTML = '<span class="word"></span><span class="tagname"></span>';
      chip.children[0].textContent = token;
      chip.children[1].textContent = t;
      const entity = /^([BI])-(.+)$/.exec(t);
      if (entity && (entity[1] === "B" || !group || group.dataset.label !== entity[2])) {
        group = document.createElement("span");
        group.className = "entity";
        group.dataset.label = entity[2];
        out.appendChild(group);
      } else if (!entity) {
        group = null;
      }
      (group || out).appendChild(chip);
    });
  } catch (error) { if (latest("tag", n)) say(error.message); }
}

// ---- tabs and start --------------------------------------------------------------------------------

function showTab(name) {
  for (const tab of document.querySelectorAll("[role=tab]")) {
    const on = tab.getAttribute("aria-controls") === name;
    tab.setAttribute("aria-selected", String(on));
    tab.tabIndex = on ? 0 : -1;
    $(tab.getAttribute("aria-controls")).hidden = !on;
  }
  $("inspect").hidden = true;
}

function setUpTabs(names) {
  const tabs = [...document.querySelectorAll("[role=tab]")];
  for (const tab of tabs) {
    const name = tab.getAttribute("aria-controls");
    if (!names.includes(name)) { tab.hidden = true; continue; }
    tab.addEventListener("click", () => showTab(name));
    tab.addEventListener("keydown", (event) => {
      const shown = tabs.filter((t) => !t.hidden);
      const at = shown.indexOf(tab);
      const step = event.key === "ArrowRight" ? 1 : event.key === "ArrowLeft" ? -1 : 0;
      if (step) {
        const next = shown[(at + step + shown.length) % shown.length];
        next.focus();
        showTab(next.getAttribute("aria-controls"));
      }
    });
  }
  showTab(names[0]);
}

function startOffline(data) {
  // A page written by `charnn show`: the scoring and cell views of one text, no server.
  setUpTabs(["score", "cells"]);
  for (const id of ["score-go", "cells-go", "score-model", "cells-model", "cells-layer", "cells-state"]) $(id).disabled = true;
  $("score-model").add(new Option(data.model, data.model));
  $("cells-model").add(new Option(data.model, data.model));
  $("score-text").value = data.text;
  $("cells-text").value = data.text;
  $("score-text").readOnly = true;
  $("cells-text").readOnly = true;
  if (data.style) {  // a style run's page: read under one style or blend, named here
    $("score-style-label").hidden = false;
    $("score-style").value = data.style;
    $("score-style").readOnly = true;
  }
  $("cells-layer").add(new Option(String(data.cells.layer + 1), data.cells.layer));
  // The page holds one layer's values; a cell's can also be read through tanh, here in the page.
  $("cells-state").textContent = "";
  if (data.cells.state === "cell") {
    $("cells-state").add(new Option("cell c", "cell"));
    $("cells-state").add(new Option("cell through tanh, tanh(c)", "tanh"));
    $("cells-state").disabled = false;
    $("cells-state").addEventListener("change", () => {
      showCells($("cells-state").value === "tanh" ? throughTanh(data.cells) : data.cells);
      if (state.cells.spans.length) rankUnits();
    });
  } else {
    $("cells-state").add(new Option("hidden state h", "hidden"));
  }
  inspectable($("score-out"), () => state.scored, null);
  setUpCells();
  showScore(data.score.map((e) => ({ text: e.text, logprob: e.logprob, top: e.top })));
  showCells(data.cells);
}

function start() {
  if (OFFLINE) { startOffline(OFFLINE); return; }
  setUpTabs(["write", "score", "cells", "classify", "tag"]);
  setUpWrite();
  setUpCells();
  inspectable($("score-out"), () => state.scored || [], null);
  $("score-go").addEventListener("click", score);
  $("score-model").addEventListener("change", scoreModelChanged);
  $("classify-go").addEventListener("click", classify);
  $("tag-go").addEventListener("click", tag);
  const inputs = { score: ["score-model", "score-style"], cells: ["cells-model", "cells-layer", "cells-state"],
                   classify: ["classify-model"], tag: ["tag-model"] };
  for (const [view, ids] of Object.entries(inputs)) {  // an answer asked of what is no longer chosen is dropped
    for (const id of ids) $(id).addEventListener("change", () => ask(view));
  }
  window.addEventListener("hashchange", () => location.reload());  // a #key= typed into the address
  if (KEY && /[^\x20-\x7e]/.test(KEY)) {  // fetch refuses such a header as if the server were unreachable
    say("The key in this page's address holds characters an API key cannot (charnn serve refuses such keys): check it.");
    return;
  }
  loadModels().catch((error) => say(error.message));
}

start();
