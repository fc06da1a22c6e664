/* One view: map of the released groups of a window, slider and play over released windows,
   suppressed share per window, table, downloads; new releases arrive by server-sent events.
   The map is SVG in Web Mercator fitted to the contract's territory, so a configured tile
   layer (z/x/y) lines up under it. */
"use strict";

const [, , contractId, viewName] = location.pathname.split("/").map(decodeURIComponent);
const API = `/api/views/${pathSegment(contractId)}/${pathSegment(viewName)}`;
const AREA_RAMP = ["#ffffcc", "#fed976", "#fd8d3c", "#e31a1c", "#800026"];
// Lines are thin: their ramp starts darker so that the smallest value still shows on white.
const LINE_RAMP = ["#9ecae1", "#4292c6", "#2171b5", "#08519c", "#08306b"];
let RAMP = AREA_RAMP;
const WIDTH = 1000;
const PAD = 24;

const state = { summary: null, index: -1, measure: null, timer: null, projection: null,
                drawn: null, outlineDrawn: false };

/* ---------- projection ---------- */

function mercY(lat) {
  const rad = Math.max(-85, Math.min(85, lat)) * Math.PI / 180;
  return Math.log(Math.tan(Math.PI / 4 + rad / 2)) * 180 / Math.PI;
}

function makeProjection(rings) {
  let west = Infinity, east = -Infinity, south = Infinity, north = -Infinity;
  for (const ring of rings) {
    for (const [lon, lat] of ring) {
      west = Math.min(west, lon); east = Math.max(east, lon);
      south = Math.min(south, lat); north = Math.max(north, lat);
    }
  }
  const top = mercY(north), bottom = mercY(south);
  const scale = (WIDTH - 2 * PAD) / Math.max(east - west, 1e-9);
  const height = Math.round((top - bottom) * scale + 2 * PAD);
  return {
    width: WIDTH, height, scale, west, top,
    x: (lon) => PAD + (lon - west) * scale,
    y: (lat) => PAD + (top - mercY(lat)) * scale,
  };
}

function ringPath(ring, p) {
  return ring.map(([lon, lat], i) => `${i ? "L" : "M"}${p.x(lon).toFixed(1)},${p.y(lat).toFixed(1)}`)
    .join("") + "Z";
}

function geometryPath(geometry, p) {
  if (geometry.type === "Polygon") return geometry.coordinates.map((r) => ringPath(r, p)).join("");
  if (geometry.type === "MultiPolygon") {
    return geometry.coordinates.flat().map((r) => ringPath(r, p)).join("");
  }
  if (geometry.type === "LineString") return flowPath(geometry.coordinates, p);
  // A trip that stays in its cell is a Point in the exports (no zero-length line): a loop.
  if (geometry.type === "Point") return flowPath([geometry.coordinates, geometry.coordinates], p);
  return "";
}

/* An origin → destination flow: a curve bending to one side of its direction, so that A → B and B → A are two
   lines; a trip within one cell is a small loop at its centre. */
function flowPath(coordinates, p) {
  const [[lon0, lat0], [lon1, lat1]] = [coordinates[0], coordinates[coordinates.length - 1]];
  const [x0, y0, x1, y1] = [p.x(lon0), p.y(lat0), p.x(lon1), p.y(lat1)];
  const length = Math.hypot(x1 - x0, y1 - y0);
  if (length < 1) {
    const r = 7;
    return `M${x0.toFixed(1)},${(y0 - r).toFixed(1)}a${r},${r} 0 1,1 -0.1,0Z`;
  }
  const bend = 0.18 * length;
  const cx = (x0 + x1) / 2 - ((y1 - y0) / length) * bend;
  const cy = (y0 + y1) / 2 + ((x1 - x0) / length) * bend;
  return `M${x0.toFixed(1)},${y0.toFixed(1)}Q${cx.toFixed(1)},${cy.toFixed(1)} ${x1.toFixed(1)},${y1.toFixed(1)}`;
}

/* ---------- colour scale ---------- */

function colour(value, range) {
  if (value === null || value === undefined || !range) return "#cccccc";
  const [low, high] = range;
  const t = high > low ? (value - low) / (high - low) : 1;
  const scaled = Math.max(0, Math.min(1, t)) * (RAMP.length - 1);
  const i = Math.min(Math.floor(scaled), RAMP.length - 2);
  return mix(RAMP[i], RAMP[i + 1], scaled - i);
}

function mix(a, b, t) {
  const pa = [1, 3, 5].map((i) => parseInt(a.slice(i, i + 2), 16));
  const pb = [1, 3, 5].map((i) => parseInt(b.slice(i, i + 2), 16));
  return `rgb(${pa.map((v, i) => Math.round(v + (pb[i] - v) * t)).join(",")})`;
}

function drawLegend() {
  const box = document.getElementById("legend");
  box.replaceChildren();
  const range = state.summary.ranges[state.measure];
  if (!range) {
    box.append(el("p", { class: "muted small" }, "no published value yet"));
    return;
  }
  const ramp = el("div", { class: "ramp" });
  for (let i = 0; i <= 20; i += 1) {
    ramp.append(el("span", { style: null }));
    ramp.lastChild.style.background = colour(range[0] + (range[1] - range[0]) * i / 20, range);
  }
  const ticks = el("div", { class: "ticks", id: "legend-ticks" });
  for (let i = 0; i < 5; i += 1) {
    ticks.append(el("span", {}, formatNumber(range[0] + (range[1] - range[0]) * i / 4)));
  }
  const column = state.summary.view.measures.find((m) => m.name === state.measure);
  box.append(ramp, ticks, el("p", { class: "muted small" },
    `${column ? column.description : state.measure}; same scale for every window. ` +
    "No shape is drawn where no group was published (suppressed below k, or no event)."));
}

/* ---------- map ---------- */

function drawTiles(map, p) {
  const tiles = state.summary.tiles;
  if (!tiles || !tiles.url) return;
  const pxPerDegree = p.scale;
  const z = Math.max(0, Math.min(19, Math.round(Math.log2(360 * pxPerDegree / 256))));
  const n = 2 ** z, size = 360 / n;
  const left = Math.floor((p.west + 180) / size);
  const right = Math.floor((p.west + (WIDTH - PAD) / pxPerDegree + 180) / size);
  const first = Math.floor((180 - p.top) / size);
  const last = Math.floor((180 - (p.top - (p.height - PAD) / pxPerDegree)) / size);
  const layer = svg("g", { class: "tiles" });
  for (let tx = left; tx <= right && tx - left < 32; tx += 1) {
    for (let ty = first; ty <= last && ty - first < 32; ty += 1) {
      const href = tiles.url.replace("{z}", z).replace("{x}", tx).replace("{y}", ty);
      layer.append(svg("image", {
        href, x: PAD + (tx * size - 180 - p.west) * pxPerDegree,
        y: PAD + (p.top - (180 - ty * size)) * pxPerDegree,
        width: size * pxPerDegree, height: size * pxPerDegree, preserveAspectRatio: "none",
      }));
    }
  }
  map.prepend(layer);
}

function drawOutline() {
  const map = document.getElementById("map");
  const p = state.projection = makeProjection(state.summary.territory);
  map.setAttribute("viewBox", `0 0 ${p.width} ${p.height}`);
  map.replaceChildren();
  const outline = svg("path", { class: "territory", "fill-rule": "evenodd",
    d: state.summary.territory.map((r) => ringPath(r, p)).join("") });
  outline.append(svg("title"));
  outline.lastChild.textContent = "territory of the contract";
  map.append(outline, svg("g", { id: "groups" }));
  drawTiles(map, p);
  if (state.summary.tiles && state.summary.tiles.url) outline.style.fillOpacity = "0.15";
  state.outlineDrawn = true;
}

function label(group) {
  const dims = Object.entries(group.dimensions).map(([k, v]) => `${k} ${v}`);
  const values = Object.entries(group.measures).map(([k, v]) => `${k} ${formatNumber(v)}`);
  return `${dims.join(", ")}\n${values.join(", ")}`;
}

function drawGroups(data) {
  const layer = document.getElementById("groups");
  const p = state.projection;
  const range = state.summary.ranges[state.measure];
  layer.replaceChildren();
  const kind = state.summary.view.map;
  let placed = 0;
  const groups = [...data.groups].sort((a, b) =>
    (a.measures[state.measure] ?? -Infinity) - (b.measures[state.measure] ?? -Infinity));
  for (const group of groups) {
    if (!group.geometry) continue;
    const value = group.measures[state.measure];
    const shape = svg("path", { class: kind === "lines" ? "group line" : "group",
      d: geometryPath(group.geometry, p) });
    if (kind === "lines") {
      shape.style.stroke = colour(value, range);
      const share = range && range[1] > range[0] ? (value - range[0]) / (range[1] - range[0]) : 1;
      shape.style.strokeWidth = `${2 + 5 * Math.max(0, Math.min(1, share || 0))}px`;
    } else {
      shape.style.fill = colour(value, range);
    }
    shape.append(svg("title"));
    shape.lastChild.textContent = label(group);
    layer.append(shape);
    if (kind === "lines") {  // the destination end (a Point: the trip stayed in its cell)
      const coords = group.geometry.coordinates;
      const [lon, lat] = group.geometry.type === "Point" ? coords : coords[coords.length - 1];
      layer.append(svg("circle", { class: "destination", cx: p.x(lon), cy: p.y(lat), r: 4 }));
    }
    placed += 1;
  }
  const note = document.getElementById("map-note");
  note.textContent = kind === "none"
    ? "This view has no spatial dimension: see the table."
    : `${placed} published group${placed === 1 ? "" : "s"} drawn` +
      (placed < data.groups.length ? ` (${data.groups.length - placed} without a place)` : "");
}

/* ---------- window, report, shares, table ---------- */

function reportText(w) {
  if (w.withheld_reason) return `window withheld as a whole (${w.withheld_reason})`;
  const suppressed = w.groups_suppressed === null
    ? "suppressed groups not published (noised view)"
    : `${formatNumber(w.groups_suppressed)} suppressed: ${formatPercent(w.suppressed_share)} of the groups`;
  const eps = w.epsilon ? `, ε ${formatNumber(w.epsilon)}` : "";
  return `k=${w.k}: ${formatNumber(w.groups_published)} groups published, ${suppressed}${eps}`;
}

function drawShares() {
  const strip = document.getElementById("shares");
  const windows = state.summary.windows;
  const caption = document.getElementById("shares-caption");
  strip.replaceChildren();
  const stated = windows.some((w) => w.suppressed_share !== null);
  strip.hidden = !stated;
  caption.textContent = stated
    ? "Share of groups suppressed (below k), per released window; the window shown is red."
    : "This view adds noise: its reports do not publish how many groups were suppressed.";
  if (!stated) return;
  strip.setAttribute("viewBox", `0 0 ${Math.max(windows.length, 1)} 1`);
  strip.setAttribute("preserveAspectRatio", "none");
  windows.forEach((w, i) => {
    const share = w.suppressed_share ?? 0;
    const bar = svg("rect", { class: i === state.index ? "bar current" : "bar",
      x: i + 0.1, width: 0.8, y: 1 - share, height: Math.max(share, 0.02) });
    bar.append(svg("title"));
    bar.lastChild.textContent = `${w.start_iso}: ${formatPercent(w.suppressed_share)} of groups suppressed`;
    strip.append(bar);
  });
}

function drawTable(data) {
  const table = document.getElementById("table");
  const view = state.summary.view;
  const names = view.measures.map((m) => m.name);
  const head = el("tr", {}, ...view.dimensions.map((d) => el("th", {}, d)),
    ...names.map((m) => el("th", {}, m)));
  table.tHead.replaceChildren(head);
  const rows = [...data.groups].sort((a, b) =>
    (b.measures[state.measure] ?? -Infinity) - (a.measures[state.measure] ?? -Infinity));
  table.tBodies[0].replaceChildren(...rows.map((g) => el("tr", {},
    ...view.dimensions.map((d) => el("td", {}, g.dimensions[d] ?? "–")),
    ...names.map((m) => el("td", { class: "num" }, formatNumber(g.measures[m]))))));
  document.getElementById("table-caption").textContent =
    `${rows.length} published group${rows.length === 1 ? "" : "s"} of ${data.window.start_iso} → ${data.window.end_iso}`;
}

async function showWindow(index) {
  const windows = state.summary.windows;
  const map = document.getElementById("map");
  if (windows.length === 0) {
    document.getElementById("window-label").textContent = "no released window yet";
    document.getElementById("window-report").textContent = "";
    return;
  }
  state.index = Math.max(0, Math.min(index, windows.length - 1));
  const w = windows[state.index];
  document.getElementById("window-slider").value = state.index;
  document.getElementById("window-label").textContent =
    `${w.start_iso} → ${w.end_iso}  (${state.index + 1} of ${windows.length})`;
  document.getElementById("window-report").textContent = reportText(w);
  drawShares();
  const data = await getJSON(`${API}/windows/${w.start}`);
  if (windows[state.index] !== w) return;  // the slider moved on meanwhile
  state.drawn = data;
  drawGroups(data);
  drawTable(data);
  map.dataset.windowStart = String(w.start);
  map.dataset.groups = String(data.groups.length);
}

/* ---------- terms, downloads ---------- */

function drawTerms() {
  const { contract, view, exports } = state.summary;
  document.title = `respublica — ${contract.id} / ${view.name}`;
  document.getElementById("title").textContent = `${contract.title}: ${view.name}`;
  document.getElementById("subtitle").textContent =
    `${view.description ? `${view.description}. ` : ""}${contract.provider} → ` +
    `${contract.beneficiary}, contract ${contract.id} v${contract.version}`;
  const terms = document.getElementById("terms");
  const rows = [["window", view.window], ["k (minimum distinct subjects)", view.k],
    ["groups by", view.dimensions.join(", ")],
    ["ε per window", view.epsilon_per_window === null ? "no noise" : formatNumber(view.epsilon_per_window)]];
  terms.replaceChildren(...rows.flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, v)]));
  const links = document.getElementById("downloads");
  const names = { csv: "CSV", geojson: "GeoJSON", parquet: "Parquet", "meta.json": "metadata (JSON)" };
  links.replaceChildren(...Object.entries(exports).map(([fmt, href]) =>
    el("li", {}, el("a", { href, class: "download", "data-format": fmt, download: "" }, names[fmt] || fmt))));
  const licence = document.getElementById("licence");
  licence.replaceChildren(
    el("strong", {}, "Licence: "), contract.licence || "not stated in the contract",
    el("br"), el("strong", {}, "Attribution: "), contract.attribution || "not stated in the contract");
  if (state.summary.tiles && state.summary.tiles.attribution) {
    licence.append(el("br"), el("strong", {}, "Map tiles: "), state.summary.tiles.attribution);
  }
  const select = document.getElementById("measure");
  if (select.options.length === 0) {
    select.replaceChildren(...view.measures.map((m) => el("option", { value: m.name }, m.name)));
    state.measure = view.measures.length ? view.measures[0].name : null;
  }
}

/* ---------- load, live, play ---------- */

async function load() {
  const follow = document.getElementById("follow").checked;
  try {
    state.summary = await getJSON(API);
  } catch (error) {
    showError(`cannot load the view: ${error.message}`);
    return;
  }
  showError(state.summary.error);
  RAMP = state.summary.view.map === "lines" ? LINE_RAMP : AREA_RAMP;
  drawTerms();
  if (!state.outlineDrawn) drawOutline();
  drawLegend();
  const slider = document.getElementById("window-slider");
  const last = state.summary.windows.length - 1;
  slider.max = String(Math.max(last, 0));
  document.getElementById("window-count").textContent = String(state.summary.windows.length);
  await showWindow(follow || state.index < 0 ? last : state.index);
}

let streamOpened = false;
function listen() {
  const live = document.getElementById("live");
  const events = new EventSource("/api/events");
  events.onopen = () => {
    live.textContent = "live";
    live.classList.add("on");
    // A stream ends after its lifetime, or when this page fell behind: releases may have come
    // meanwhile, so a reconnection reloads the view.
    if (streamOpened) scheduleReload();
    streamOpened = true;
  };
  events.onerror = () => {
    live.textContent = "reconnecting…";
    live.classList.remove("on");
    // A refused stream (503: the server's limit of open streams) is not retried by the
    // browser: try again later ourselves, with some jitter.
    if (events.readyState === EventSource.CLOSED) {
      setTimeout(listen, 10000 + Math.random() * 5000);
    }
  };
  events.addEventListener("release", (message) => {
    const event = JSON.parse(message.data);
    if (event.contract !== contractId || event.view !== viewName) return;
    live.textContent = `live · last release ${new Date().toLocaleTimeString("en-GB")}`;
    scheduleReload();
  });
}

let reloadPending = null;
function scheduleReload() {
  // A burst of releases (catching up on a backlog) is loaded once.
  if (reloadPending) return;
  reloadPending = setTimeout(async () => { reloadPending = null; await load(); }, 300);
}

function togglePlay() {
  const button = document.getElementById("play");
  if (state.timer) {
    clearInterval(state.timer);
    state.timer = null;
    button.textContent = "▶ Play";
    return;
  }
  document.getElementById("follow").checked = false;
  if (state.index >= state.summary.windows.length - 1) state.index = -1;
  button.textContent = "❚❚ Pause";
  state.timer = setInterval(async () => {
    if (state.index >= state.summary.windows.length - 1) { togglePlay(); return; }
    await showWindow(state.index + 1);
  }, 1000);
}

function main() {
  const counter = el("span", { id: "window-count", hidden: "" });
  document.querySelector(".controls").append(counter);
  document.getElementById("window-slider").addEventListener("input", (event) => {
    const index = Number(event.target.value);
    document.getElementById("follow").checked = index === state.summary.windows.length - 1;
    showWindow(index);
  });
  document.getElementById("measure").addEventListener("change", (event) => {
    state.measure = event.target.value;
    drawLegend();
    if (state.drawn) { drawGroups(state.drawn); drawTable(state.drawn); }
  });
  document.getElementById("play").addEventListener("click", togglePlay);
  listen();
  load();
}

main();
