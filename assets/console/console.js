/* hrmig operator console: one page, plain JavaScript, the public API only.
 *
 * How it is organised, top to bottom:
 *   1. constants of the API's contract (tables, error codes, statuses);
 *   2. DOM helpers: h() builds elements (text always goes in as text nodes,
 *      never as HTML), plus number, size and time formatters;
 *   3. messages: the alert banner and the polite status line;
 *   4. keys and the API client: api() sends the key from sessionStorage and,
 *      on 401 / 403, asks for the API key / admin key and retries;
 *   5. the confirmation <dialog>;
 *   6. charts (uPlot): hires per quarter as stacked bars, departments above
 *      the mean as horizontal bars with the mean drawn as a line;
 *   7. the views (overview, tables, rejections, reports, backups), each an
 *      async function that reads the API, then mounts its elements;
 *   8. the hash router (#/view?param=value), which sets body[data-ready]
 *      once a view has rendered.
 */
"use strict";

// 1. The API's contract ------------------------------------------------------

const TABLES = ["departments", "jobs", "hired_employees"];
const CODES = ["missing", "type", "range", "format", "too_long", "encoding", "columns", "duplicate", "foreign_key"];
const STATUSES = ["open", "resolved", "dismissed"];
const PAGE_SIZE = 50;
// The API lives beside the console: /api/console/ -> /api.
const API_BASE = location.pathname.replace(/\/console(\/.*)?$/, "") || "/api";

// 2. DOM helpers -------------------------------------------------------------

/** An element with attributes and children; strings become text nodes. */
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value == null || value === false) continue;
    if (name.startsWith("on")) el.addEventListener(name.slice(2), value);
    else el.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat(Infinity)) {
    if (child == null || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
  return el;
}

const $ = (id) => document.getElementById(id);
const fmtInt = (n) => Number(n).toLocaleString("en-US");

function fmtBytes(n) {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return `${i ? n.toFixed(1) : n} ${units[i]}`;
}

function fmtAge(iso) {
  const minutes = (Date.now() - Date.parse(iso)) / 60000;
  if (!Number.isFinite(minutes)) return "";
  if (minutes < 1) return "just now";
  if (minutes < 60) return `${Math.floor(minutes)} min ago`;
  if (minutes < 48 * 60) return `${Math.floor(minutes / 60)} h ago`;
  return `${Math.floor(minutes / 1440)} days ago`;
}

/** A table in a horizontally scrolling, keyboard-focusable box. */
function dataTable(caption, headers, rows, attrs = {}) {
  const head = h("tr", null, headers.map((c) => h("th", { scope: "col", class: c.num ? "num" : null }, c.label ?? c)));
  const tall = rows.length > 15 ? " tall" : "";
  return h("div", { class: "table-wrap" + tall, role: "region", "aria-label": caption, tabindex: 0 },
    h("table", attrs, h("caption", null, caption), h("thead", null, head), h("tbody", null, rows)));
}

const num = (n, attrs = {}) => h("td", { class: "num", ...attrs }, fmtInt(n));
const tag = (text) => h("span", { class: `tag ${text}` }, text);
const empty = (text) => h("p", { class: "empty" }, text);

// 3. Messages ----------------------------------------------------------------

function showBanner(text) {
  $("banner-text").textContent = text;
  $("banner").hidden = false;
}

function hideBanner() {
  $("banner").hidden = true;
  $("banner-text").textContent = "";
}

function announce(text) {
  $("status").textContent = text;
}

/** What to tell an operator about a failed request. */
function describe(err) {
  if (!(err instanceof ApiError)) return `Something went wrong in the console: ${err.message}`;
  if (err.code === "database_unavailable") return `The database is unavailable: ${err.message.replace(/^the database is unavailable;?\s*/i, "")}`;
  if (err.code === "storage_unavailable") return `The storage is unavailable: ${err.message}`;
  if (err.status === 0) return `The server cannot be reached: ${err.message}`;
  return `${err.message} (${err.code}, HTTP ${err.status})`;
}

// 4. Keys and the API client ------------------------------------------------

const KEY_NAMES = { api: "hrmig.apiKey", admin: "hrmig.adminKey" };
const keys = {
  get: (kind) => sessionStorage.getItem(KEY_NAMES[kind]) || "",
  set(kind, value) {
    if (value) sessionStorage.setItem(KEY_NAMES[kind], value);
    else sessionStorage.removeItem(KEY_NAMES[kind]);
    keys.showForget();
  },
  showForget: () => { $("forget-keys").hidden = !(keys.get("api") || keys.get("admin")); },
};

class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

let keyRequest = null; // the one key form shown at a time: {kind, promise}

/** Shows the key form and resolves once a key is entered (rejects on Cancel). */
function askForKey(kind, refused) {
  if (keyRequest?.kind === kind) return keyRequest.promise;
  const label = kind === "admin" ? "Admin key" : "API key";
  $("key-title").textContent = kind === "admin" ? "Admin key needed" : "API key needed";
  $("key-label").textContent = label;
  $("key-why").textContent = refused
    ? `The server refused the ${label.toLowerCase()} given. Enter it again.`
    : kind === "admin"
      ? "This operation needs the admin key."
      : "This server needs an API key for every request.";
  const box = $("key-box"), form = $("key-form"), input = $("key-input");
  const promise = new Promise((resolve, reject) => {
    const done = (value) => {
      form.removeEventListener("submit", onSubmit);
      $("key-cancel").removeEventListener("click", onCancel);
      box.hidden = true;
      input.value = "";
      keyRequest = null;
      if (value) { keys.set(kind, value); resolve(); }
      else reject(new ApiError(kind === "admin" ? 403 : 401, kind === "admin" ? "forbidden" : "unauthorized",
        `no ${label.toLowerCase()} was given`));
    };
    const onSubmit = (e) => { e.preventDefault(); if (input.value.trim()) done(input.value.trim()); };
    const onCancel = () => done("");
    form.addEventListener("submit", onSubmit);
    $("key-cancel").addEventListener("click", onCancel);
  });
  keyRequest = { kind, promise };
  box.hidden = false;
  announce(`${label} needed.`);
  input.focus();
  return promise;
}

/**
 * Calls the API: JSON in and out (or CSV text with csv: true). Sends the
 * API key, or the admin key for admin operations; asks for a key and tries
 * again on 401 (API key) and 403 (admin key). Throws ApiError otherwise.
 */
async function api(path, { method = "GET", body, admin = false, csv = false } = {}) {
  for (;;) {
    const key = admin ? keys.get("admin") || keys.get("api") : keys.get("api") || keys.get("admin");
    const headers = { accept: csv ? "text/csv" : "application/json" };
    if (key) headers["x-api-key"] = key;
    if (body !== undefined) headers["content-type"] = "application/json";
    let res;
    try {
      res = await fetch(API_BASE + path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    } catch (e) {
      throw new ApiError(0, "unreachable", e.message);
    }
    if (res.status === 401) {
      const refused = Boolean(keys.get("api"));
      keys.set("api", "");
      await askForKey("api", refused);
      continue;
    }
    if (res.status === 403) {
      const refused = Boolean(keys.get("admin"));
      keys.set("admin", "");
      admin = true;
      await askForKey("admin", refused);
      continue;
    }
    if (!res.ok) throw await errorOf(res);
    return csv ? res.text() : res.json();
  }
}

async function errorOf(res) {
  const text = await res.text();
  try {
    const { error } = JSON.parse(text);
    return new ApiError(res.status, error.code, error.message);
  } catch {
    return new ApiError(res.status, "http_" + res.status, text.slice(0, 200) || res.statusText);
  }
}

/** Fetches a report as CSV (the API's own) and hands it to the browser as a download. */
async function downloadCsv(path, filename) {
  const text = await api(path, { csv: true });
  const url = URL.createObjectURL(new Blob([text], { type: "text/csv;charset=utf-8" }));
  const link = h("a", { href: url, download: filename, hidden: true });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60000);
  announce(`Downloaded ${filename}.`);
}

// 5. The confirmation dialog ---------------------------------------------------

/** Asks in the <dialog>; resolves true on Confirm, false on Cancel or Escape. */
function confirmAction(title, text, confirmLabel, danger) {
  const dialog = $("confirm");
  const opener = document.activeElement;
  $("confirm-title").textContent = title;
  $("confirm-text").textContent = text;
  $("confirm-ok").textContent = confirmLabel;
  $("confirm-ok").className = danger ? "danger" : "";
  dialog.returnValue = "";
  dialog.showModal();
  $("confirm-cancel").focus();
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => {
      opener?.focus?.();
      resolve(dialog.returnValue === "confirm");
    }, { once: true });
  });
}

// 6. Charts --------------------------------------------------------------------

// Okabe-Ito and Tableau hues, told apart by the legend; the tables beside the charts carry every value as text.
const PALETTE = ["#0072b2", "#d55e00", "#009e73", "#cc79a7", "#7a5195", "#e69f00",
  "#56799b", "#b2182b", "#4d9221", "#8c564b", "#1f4e79", "#6c6c6c"];
const charts = []; // the charts of the current view: {plot, observer}

function destroyCharts() {
  for (const { plot, observer } of charts.splice(0)) { observer.disconnect(); plot.destroy(); }
}

/** Draws a uPlot chart into its container, at the container's width, and keeps it fitted. */
function drawChart(container, opts, data, height) {
  const width = () => Math.max(260, container.clientWidth);
  const hooks = { draw: [...(opts.hooks?.draw ?? []), () => { container.dataset.drawn = "true"; }] };
  const plot = new uPlot({ ...opts, width: width(), height, hooks }, data, container);
  let lastWidth = width();
  const observer = new ResizeObserver(() => requestAnimationFrame(() => {
    if (width() !== lastWidth) { lastWidth = width(); plot.setSize({ width: lastWidth, height }); }
  }));
  observer.observe(container);
  charts.push({ plot, observer });
}

/** A chart container: role=img with a text alternative; or, without data, a message. */
function chartBox(testid, label, emptyText) {
  const box = h("div", { class: "chart", role: "img", "aria-label": emptyText || label, "data-testid": testid });
  if (emptyText) { box.dataset.empty = "true"; box.append(empty(emptyText)); }
  return box;
}

/** Hires per quarter summed by department or job: the largest groups, the rest as "Other". */
function quarterGroups(rows, by, most = 11) {
  const sums = new Map();
  for (const r of rows) {
    const q = sums.get(r[by]) || [0, 0, 0, 0];
    [r.q1, r.q2, r.q3, r.q4].forEach((n, i) => { q[i] += n; });
    sums.set(r[by], q);
  }
  const total = (q) => q[0] + q[1] + q[2] + q[3];
  const groups = [...sums].map(([name, q]) => ({ name, q })).sort((a, b) => total(b.q) - total(a.q));
  if (groups.length <= most + 1) return groups;
  const rest = groups.slice(most);
  const other = [0, 1, 2, 3].map((i) => rest.reduce((s, g) => s + g.q[i], 0));
  return [...groups.slice(0, most), { name: `Other (${rest.length})`, q: other }];
}

/** Quarter totals of the report rows. */
const quarterTotals = (rows) => [0, 1, 2, 3].map((i) => rows.reduce((s, r) => s + r[`q${i + 1}`], 0));

/** Stacked bars per quarter (Q1..Q4): each group's bar drawn from 0 to its running total, top first. */
function drawQuarterChart(container, rows, by) {
  const groups = quarterGroups(rows, by);
  const cumulative = [];
  groups.reduce((acc, g) => { const next = acc.map((v, i) => v + g.q[i]); cumulative.push(next); return next; }, [0, 0, 0, 0]);
  const top = Math.max(1, ...cumulative[cumulative.length - 1]);
  const order = groups.map((_, i) => groups.length - 1 - i); // the top of the stack first
  const bars = uPlot.paths.bars({ size: [0.6, 120] });
  const series = [{ label: "Quarter", value: (u, v) => (v == null ? "" : `Q${v}`) }].concat(order.map((gi) => ({
    label: groups[gi].name,
    stroke: PALETTE[gi % PALETTE.length],
    fill: PALETTE[gi % PALETTE.length],
    paths: bars,
    points: { show: false },
    value: (u, v, si, idx) => (idx == null ? "–" : fmtInt(groups[gi].q[idx])),
  })));
  const data = [[1, 2, 3, 4], ...order.map((gi) => cumulative[gi])];
  drawChart(container, {
    series,
    scales: { x: { time: false, range: [0.4, 4.6] }, y: { range: [0, Math.ceil(top * 1.08)] } },
    axes: [
      { splits: () => [1, 2, 3, 4], values: (u, splits) => splits.map((v) => `Q${v}`) },
      { label: "Hires", values: (u, splits) => splits.map((v) => (Number.isInteger(v) ? fmtInt(v) : "")) },
    ],
    legend: { live: true },
    cursor: { points: { show: false } },
  }, data, 320);
}

/** Horizontal bars of the departments above the mean, and the mean as a dashed vertical line. */
function drawAboveMeanChart(container, rows, mean) {
  const n = rows.length;
  const names = rows.map((r) => (r.department.length > 18 ? r.department.slice(0, 17) + "…" : r.department));
  const drawMean = (u) => {
    const x = u.valToPos(mean, "y", true);
    const { ctx, bbox } = u;
    ctx.save();
    ctx.strokeStyle = PALETTE[1];
    ctx.lineWidth = 2 * devicePixelRatio;
    ctx.setLineDash([6 * devicePixelRatio, 4 * devicePixelRatio]);
    ctx.beginPath();
    ctx.moveTo(x, bbox.top);
    ctx.lineTo(x, bbox.top + bbox.height);
    ctx.stroke();
    ctx.restore();
  };
  drawChart(container, {
    series: [
      { label: "Department", value: (u, v, si, idx) => (idx == null ? "" : rows[idx].department) },
      { label: "Hires", stroke: PALETTE[0], fill: PALETTE[0], paths: uPlot.paths.bars({ size: [0.6, 36] }), points: { show: false } },
    ],
    scales: {
      x: { time: false, ori: 1, dir: -1, range: [0.5, n + 0.5] },
      y: { ori: 0, range: (u, lo, hi) => [0, Math.ceil(Math.max(hi, mean) * 1.1) || 1] },
    },
    axes: [
      { scale: "x", side: 3, size: 150, splits: () => rows.map((_, i) => i + 1), values: (u, splits) => splits.map((v) => names[v - 1] ?? "") },
      { scale: "y", side: 2, label: `Hires (dashed line: the mean, ${mean.toFixed(1)})` },
    ],
    hooks: { draw: [drawMean] },
    legend: { live: true },
    cursor: { points: { show: false } },
  }, [rows.map((_, i) => i + 1), rows.map((r) => r.hired)], 90 + 36 * n);
}

/** The latest year with hires, probing years back from this one (the API has no list of years). */
async function latestYearWithHires() {
  const thisYear = new Date().getUTCFullYear();
  for (let first = thisYear; first > thisYear - 30; first -= 5) {
    const years = [0, 1, 2, 3, 4].map((i) => first - i);
    const reports = await Promise.all(years.map((y) => api(`/reports/hires-by-quarter?year=${y}`)));
    const found = reports.findIndex((rows) => rows.length > 0);
    if (found >= 0) return { year: years[found], rows: reports[found] };
  }
  return null;
}

// 7. Views -----------------------------------------------------------------------

function viewHead(title, ...extra) {
  return h("div", { class: "view-head" }, h("h2", { tabindex: -1, id: "view-title" }, title), extra);
}

/** Rejections counted by code, over all tables and statuses unless filtered. */
function countsByCode(summary) {
  const counts = new Map();
  for (const { code, status, count } of summary) {
    const c = counts.get(code) || { total: 0, open: 0 };
    c.total += count;
    if (status === "open") c.open += count;
    counts.set(code, c);
  }
  return CODES.filter((code) => counts.has(code)).map((code) => ({ code, ...counts.get(code) }));
}

function codeCountsTable(summary, caption, link) {
  const byCode = countsByCode(summary);
  if (!byCode.length) return empty("No rejections yet.");
  return dataTable(caption, ["Code", { label: "Open", num: true }, { label: "All", num: true }],
    byCode.map(({ code, open, total }) => h("tr", null,
      h("td", null, link ? h("a", { href: link(code) }, code) : code),
      num(open), num(total, { "data-testid": `rejections-code-${code}` }))));
}

async function overviewView(ctx) {
  const [tables, summary] = await Promise.all([api("/tables"), api("/rejections/summary")]);
  const employees = tables.find((t) => t.name === "hired_employees")?.rows ?? 0;
  const latest = employees > 0 ? await latestYearWithHires() : null;

  const tableCard = h("section", { class: "card", "aria-labelledby": "ov-tables" },
    h("h3", { id: "ov-tables" }, "Tables"),
    dataTable("Rows per table", ["Table", { label: "Rows", num: true }],
      tables.map((t) => h("tr", null, h("td", null, t.name), num(t.rows, { "data-testid": `count-${t.name}` })))),
    h("p", null, h("a", { href: "#/tables" }, "Rows and load history")));

  const rejectionCard = h("section", { class: "card", "aria-labelledby": "ov-rejections" },
    h("h3", { id: "ov-rejections" }, "Rejected rows by code"),
    codeCountsTable(summary, "Rejections per error code", (code) => `#/rejections?code=${code}`),
    h("p", null, h("a", { href: "#/rejections" }, "The rejection log")));

  const hiresCard = h("section", { class: "card wide", "aria-labelledby": "ov-hires" },
    h("h3", { id: "ov-hires" }, latest ? `Hires per quarter in ${latest.year}, by department` : "Hires per quarter"));
  let chart;
  if (latest) {
    const totals = quarterTotals(latest.rows);
    chart = chartBox("chart-quarters", `Hires per quarter in ${latest.year}: ` + totals.map((n, i) => `Q${i + 1} ${n}`).join(", "));
    chart.dataset.year = latest.year;
    hiresCard.append(chart,
      dataTable(`Hires per quarter in ${latest.year}`, ["Q1", "Q2", "Q3", "Q4"].map((q) => ({ label: q, num: true })),
        [h("tr", null, totals.map((n) => num(n)))]),
      h("p", null, h("a", { href: `#/reports?year=${latest.year}` }, `Reports for ${latest.year}`)));
  } else {
    hiresCard.append(chartBox("chart-quarters", "", employees ? "No hires in the last 30 years: pick a year in Reports." : "No hires yet."));
  }

  ctx.mount(viewHead("Overview"), h("div", { class: "grid" }, tableCard, rejectionCard, hiresCard));
  if (latest) drawQuarterChart(chart, latest.rows, "department");
}

/** A load job's status, progress and per-file reports; polled while it runs. */
async function jobSection(ctx, id) {
  const box = h("section", { class: "card", "aria-labelledby": "job-title" }, h("h3", { id: "job-title" }, `Load job ${id}`));
  const fill = async () => {
    let job;
    try { job = await api(`/loads/${encodeURIComponent(id)}`); } catch (err) {
      box.replaceChildren(box.firstChild, h("p", { class: "error-text" }, `This job cannot be read: ${describe(err)}`));
      return;
    }
    const progress = job.progress
      ? `reading ${job.progress.table}: ${fmtInt(job.progress.rows_read)} rows read so far`
      : "no file being read";
    box.replaceChildren(box.firstChild,
      h("p", null, tag(job.status), ` ${progress}. Created ${job.created_at}, last heartbeat ${job.updated_at}.`),
      ...(job.error ? [h("p", { class: "error-text" }, job.error)] : []),
      job.tables.length ? loadReportsTable(job.tables) : empty("No file done yet."));
    if (["queued", "running"].includes(job.status) && ctx.current()) setTimeout(() => ctx.current() && fill(), 2000);
  };
  await fill();
  return box;
}

function loadReportsTable(reports) {
  return dataTable("Files of this job", ["Table", "Source", "Status", ...["Read", "Inserted", "Updated", "Rejected", "Blank"].map((l) => ({ label: l, num: true })), "Message"],
    reports.map((r) => h("tr", null, h("td", null, r.table), h("td", null, r.source), h("td", null, tag(r.status)),
      num(r.rows_read), num(r.inserted), num(r.updated), num(r.rejected), num(r.blank), h("td", null, r.message ?? ""))));
}

async function tablesView(ctx) {
  const p = ctx.params;
  const browse = TABLES.includes(p.get("table")) ? p.get("table") : "departments";
  const after = Number.parseInt(p.get("after_id") ?? "", 10);
  const jobId = p.get("job");
  const rowsQuery = `/tables/${browse}/rows?limit=${PAGE_SIZE}` + (Number.isFinite(after) ? `&after_id=${after}` : "");
  const [tables, history, rows, recentJobs] = await Promise.all([api("/tables"), api("/loads?limit=100"), api(rowsQuery),
    api("/loads/jobs?limit=10")]);
  const job = jobId ? await jobSection(ctx, jobId) : null;
  // Jobs in progress come first; a running one shows the file it reads.
  const jobProgress = (j) => j.progress ? `${j.progress.table}: ${fmtInt(j.progress.rows_read)} rows read` : "";
  const jobsTable = recentJobs.length
    ? dataTable("Load jobs, newest first", ["Job", "Status", "Progress", { label: "Files done", num: true }, "Created", "Error"],
      recentJobs.map((j) => h("tr", { "data-testid": "job-row", "data-status": j.status },
        h("td", null, h("a", { href: `#/tables?${new URLSearchParams({ table: browse, job: j.id })}` }, h("code", null, j.id))),
        h("td", null, tag(j.status)), h("td", null, jobProgress(j)), num(j.tables.length),
        h("td", { class: "nowrap" }, j.created_at), h("td", null, j.error ?? ""))))
    : empty("No load jobs yet: POST /api/loads starts one.");
  if (recentJobs.some((j) => ["queued", "running"].includes(j.status)) && !jobId) {
    setTimeout(() => ctx.current() && route(), 2000);
  }

  const columns = tables.find((t) => t.name === browse).columns.map((c) => c.name);
  const tableList = dataTable("Tables", ["Table", "Columns", { label: "Rows", num: true }],
    tables.map((t) => h("tr", null, h("td", null, t.name),
      h("td", null, t.columns.map((c) => `${c.name} ${c.type}${c.references ? ` → ${c.references}` : ""}`).join(", ")),
      num(t.rows, { "data-testid": `table-rows-${t.name}` }))));

  const browseForm = h("form", { class: "inline", onsubmit: (e) => {
    e.preventDefault();
    const f = new FormData(e.target);
    const q = new URLSearchParams({ table: f.get("table") });
    if (f.get("after_id")) q.set("after_id", f.get("after_id"));
    navigate(`#/tables?${q}`);
  } },
  h("div", { class: "field" }, h("label", { for: "browse-table" }, "Table"),
    h("select", { id: "browse-table", name: "table", "data-testid": "browse-table" },
      TABLES.map((t) => h("option", { value: t, selected: t === browse }, t)))),
  h("div", { class: "field" }, h("label", { for: "browse-after" }, "Ids above"),
    h("input", { id: "browse-after", name: "after_id", type: "number", value: Number.isFinite(after) ? after : null })),
  h("button", { type: "submit" }, "Show rows"));

  const lastId = rows.length ? rows[rows.length - 1].id : null;
  const rowTable = rows.length
    ? dataTable(`Rows of ${browse}`, columns, rows.map((r) => h("tr", { "data-testid": "table-row", "data-id": r.id },
      columns.map((c) => h("td", null, String(r[c] ?? ""))))))
    : empty(Number.isFinite(after) ? "No rows above this id." : "No rows yet.");
  const pager = h("div", { class: "pager" },
    rows.length === PAGE_SIZE ? h("a", { href: `#/tables?table=${browse}&after_id=${lastId}` }, "Next rows") : null,
    Number.isFinite(after) ? h("a", { href: `#/tables?table=${browse}` }, "First rows") : null);

  const historyTable = history.length
    ? dataTable("Load history, newest first", ["Id", "Kind", "Table", "Source", "Status",
      ...["Read", "Inserted", "Updated", "Rejected", "Blank"].map((l) => ({ label: l, num: true })), "Started", "Finished", "Message"],
    history.map((r) => h("tr", { "data-testid": "load-row" }, h("td", { class: "num" }, r.id), h("td", null, r.kind), h("td", null, r.table),
      h("td", null, r.source), h("td", { class: "nowrap" }, tag(r.status), r.undone_by != null ? ` undone by #${r.undone_by}` : ""),
      num(r.rows_read), num(r.inserted), num(r.updated), num(r.rejected), num(r.blank),
      h("td", { class: "nowrap" }, r.started_at), h("td", { class: "nowrap" }, r.finished_at), h("td", null, r.message ?? ""))))
    : empty("No rows yet: nothing has been loaded.");

  const jobForm = h("form", { class: "inline", onsubmit: (e) => {
    e.preventDefault();
    const id = new FormData(e.target).get("job").trim();
    if (id) navigate(`#/tables?${new URLSearchParams({ table: browse, job: id })}`);
  } },
  h("div", { class: "field" }, h("label", { for: "job-id" }, "Load job id"),
    h("input", { id: "job-id", name: "job", type: "text", size: 34, value: jobId, autocomplete: "off", spellcheck: "false" })),
  h("button", { type: "submit" }, "Follow job"));

  ctx.mount(viewHead("Tables & loads"),
    h("section", { class: "card" }, h("h3", null, "Tables"), tableList),
    h("section", { class: "card" }, h("h3", null, "Load jobs"), jobsTable,
      h("p", { class: "hint" }, "Open a job to follow it, or enter the id a load started with POST /api/loads answered with."),
      jobForm),
    job,
    h("section", { class: "card" }, h("h3", null, "Load history"), historyTable),
    h("section", { class: "card" }, h("h3", null, "Rows"), browseForm, rowTable, pager));
}

function rejectionRows(list) {
  return list.flatMap((r) => {
    const codes = [...new Set(r.errors.map((e) => e.code))];
    const detailId = `rejection-${r.id}`;
    const detail = h("tr", { class: "detail", id: detailId, hidden: true },
      h("td", { colspan: 8 },
        h("p", null, h("strong", null, "Raw text")),
        h("pre", { class: "raw", "data-testid": "rejection-raw" }, r.raw),
        h("p", null, h("strong", null, "Errors")),
        h("ul", { class: "errors" }, r.errors.map((e) => h("li", null, h("code", null, e.column ?? "(record)"), " ", tag(e.code), " ", e.message))),
        r.resolved_by != null ? h("p", null, `Resolved by operation #${r.resolved_by}.`) : null));
    const toggle = h("button", { type: "button", class: "small quiet", "aria-expanded": "false", "aria-controls": detailId,
      onclick: () => {
        detail.hidden = !detail.hidden;
        toggle.setAttribute("aria-expanded", String(!detail.hidden));
        toggle.textContent = detail.hidden ? "Details" : "Hide";
      } }, "Details");
    const row = h("tr", { "data-testid": "rejection-row", "data-id": r.id, "data-codes": codes.join(" ") },
      h("td", { class: "num" }, r.id), h("td", null, r.table), h("td", null, r.source), h("td", { class: "num" }, r.position),
      h("td", null, codes.map(tag)), h("td", null, tag(r.status)), h("td", { class: "nowrap" }, r.rejected_at), h("td", null, toggle));
    return [row, detail];
  });
}

async function rejectionsView(ctx) {
  const p = ctx.params;
  const filter = {
    table: TABLES.includes(p.get("table")) ? p.get("table") : "",
    code: CODES.includes(p.get("code")) ? p.get("code") : "",
    source: p.get("source") || "",
    status: STATUSES.includes(p.get("status")) ? p.get("status") : "",
  };
  const after = p.get("after") || "";
  const query = new URLSearchParams(Object.entries(filter).filter(([, v]) => v));
  const summaryQuery = new URLSearchParams([...query].filter(([k]) => k !== "code"));
  // The API spells the code filter `error_code` too: under the Functions
  // host `?code=` is the caller's function key.
  const apiQuery = [...query].map(([k, v]) => [k === "code" ? "error_code" : k, v]);
  const listQuery = new URLSearchParams([...apiQuery, ["limit", PAGE_SIZE], ...(after ? [["after", after]] : [])]);
  const [list, summary] = await Promise.all([api(`/rejections?${listQuery}`), api(`/rejections/summary?${summaryQuery}`)]);

  const choice = (name, label, values) => h("div", { class: "field" },
    h("label", { for: `filter-${name}` }, label),
    h("select", { id: `filter-${name}`, name, "data-testid": `filter-${name}` },
      h("option", { value: "" }, "any"), values.map((v) => h("option", { value: v, selected: v === filter[name] }, v))));
  const form = h("form", { class: "filters", "aria-label": "Filter the rejection log", onsubmit: (e) => {
    e.preventDefault();
    const q = new URLSearchParams([...new FormData(e.target)].filter(([, v]) => v.trim()));
    navigate(`#/rejections?${q}`);
  } },
  choice("table", "Table", TABLES), choice("code", "Code", CODES),
  h("div", { class: "field" }, h("label", { for: "filter-source" }, "Source"),
    h("input", { id: "filter-source", name: "source", type: "text", value: filter.source, placeholder: "file:… or api:…", "data-testid": "filter-source" })),
  choice("status", "Status", STATUSES),
  h("button", { type: "submit", "data-testid": "filter-apply" }, "Apply filters"),
  query.toString() ? h("a", { href: "#/rejections" }, "Clear filters") : null);

  const codeLink = (code) => `#/rejections?${new URLSearchParams([...summaryQuery, ["code", code]])}`;
  const next = new URLSearchParams([...query, ["after", list.length ? list[list.length - 1].id : ""]]);
  const listBox = list.length
    ? dataTable("Rejected rows, oldest first", [{ label: "Id", num: true }, "Table", "Source", { label: "Line / index", num: true }, "Codes", "Status", "Rejected at", "Raw text and errors"],
      rejectionRows(list), { "data-testid": "rejection-list", "data-limit": PAGE_SIZE })
    : empty(after ? "No more rejections." : query.toString() ? "No rejection matches these filters." : "No rows yet: nothing was rejected.");

  ctx.mount(viewHead("Rejection log"),
    h("section", { class: "card" }, form),
    h("section", { class: "card" }, h("h3", null, "Counts per code"), codeCountsTable(summary, "Rejections per code (table, source and status filters apply)", codeLink)),
    h("section", { class: "card" }, h("h3", null, "Rejected rows"), listBox,
      h("div", { class: "pager" },
        after ? h("a", { href: `#/rejections?${query}` }, "First page") : null,
        list.length === PAGE_SIZE ? h("a", { href: `#/rejections?${next}`, "data-testid": "next-page" }, "Next page") : null)));
  announce(`${list.length} rejected row${list.length === 1 ? "" : "s"} shown.`);
}

async function reportsView(ctx) {
  const p = ctx.params;
  const by = p.get("by") === "job" ? "job" : "department";
  let year = Number.parseInt(p.get("year") ?? "", 10);
  let quarters;
  if (!(year >= 1 && year <= 9999)) {
    const latest = await latestYearWithHires();
    year = latest ? latest.year : new Date().getUTCFullYear();
    quarters = latest?.rows;
  }
  const [tables, above, rows] = await Promise.all([api("/tables"), api(`/reports/departments-above-mean?year=${year}`),
    quarters ?? api(`/reports/hires-by-quarter?year=${year}`)]);
  quarters = rows;
  // The API gives no mean: hires in the year over all departments (those without hires count as 0).
  const departments = tables.find((t) => t.name === "departments").rows;
  const hired = quarterTotals(quarters).reduce((a, b) => a + b, 0);
  const mean = departments ? hired / departments : 0;

  const form = h("form", { class: "inline", onsubmit: (e) => {
    e.preventDefault();
    const f = new FormData(e.target);
    navigate(`#/reports?${new URLSearchParams({ year: f.get("year"), by: f.get("by") })}`);
  } },
  h("div", { class: "field" }, h("label", { for: "report-year" }, "Year"),
    h("input", { id: "report-year", name: "year", type: "number", min: 1, max: 9999, required: true, value: year, "data-testid": "report-year" })),
  h("div", { class: "field" }, h("label", { for: "report-by" }, "Chart hires by"),
    h("select", { id: "report-by", name: "by", "data-testid": "report-by" },
      ["department", "job"].map((v) => h("option", { value: v, selected: v === by }, v)))),
  h("button", { type: "submit" }, "Show"));

  const totals = quarterTotals(quarters);
  const quarterChart = chartBox("chart-quarters", `Hires per quarter in ${year} by ${by}: ` + totals.map((n, i) => `Q${i + 1} ${n}`).join(", ") + ". The table below lists every department and job.",
    quarters.length ? "" : `No hires in ${year}.`);
  quarterChart.dataset.year = year;
  const csvButton = (path, name, testid) => h("button", { type: "button", class: "quiet", "data-testid": testid,
    onclick: () => downloadCsv(path, name).catch((err) => showBanner(`The CSV download failed: ${describe(err)}`)) }, "Download CSV");
  const quarterTable = quarters.length
    ? dataTable(`Hires per quarter in ${year}, by department and job`, ["Department", "Job", ...["Q1", "Q2", "Q3", "Q4"].map((q) => ({ label: q, num: true }))],
      quarters.map((r) => h("tr", { "data-testid": "quarter-row" }, h("td", null, r.department), h("td", null, r.job), num(r.q1), num(r.q2), num(r.q3), num(r.q4))))
    : empty(`No rows yet for ${year}.`);

  const aboveChart = chartBox("chart-above-mean", `Departments hiring above the mean of ${mean.toFixed(1)} in ${year}: ` + above.map((r) => `${r.department} ${r.hired}`).join(", "),
    above.length ? "" : `No department hired above the mean in ${year}.`);
  aboveChart.dataset.year = year;
  const aboveTable = above.length
    ? dataTable(`Departments hiring above the mean in ${year}, most first`, [{ label: "Id", num: true }, "Department", { label: "Hired", num: true }],
      above.map((r) => h("tr", { "data-testid": "above-mean-row" }, h("td", { class: "num" }, r.id), h("td", null, r.department), num(r.hired))))
    : null;

  ctx.mount(viewHead("Reports"),
    h("section", { class: "card" }, form),
    h("section", { class: "card", "aria-labelledby": "rep-q" },
      h("h3", { id: "rep-q" }, `Hires per quarter in ${year}, by ${by}`),
      quarterChart, h("div", { class: "actions" }, csvButton(`/reports/hires-by-quarter?year=${year}`, `hires-by-quarter-${year}.csv`, "csv-quarters")),
      quarterTable),
    h("section", { class: "card", "aria-labelledby": "rep-m" },
      h("h3", { id: "rep-m" }, `Departments hiring above the mean in ${year}`),
      h("p", { class: "chart-note" }, `Mean: ${mean.toFixed(2)} hires per department (${fmtInt(hired)} hires over ${fmtInt(departments)} departments).`),
      aboveChart, h("div", { class: "actions" }, csvButton(`/reports/departments-above-mean?year=${year}`, `departments-above-mean-${year}.csv`, "csv-above-mean")),
      aboveTable));
  if (quarters.length) drawQuarterChart(quarterChart, quarters, by);
  if (above.length) drawAboveMeanChart(aboveChart, above, mean);
}

/** Verify or restore a table from a backup, after the confirmation dialog. */
async function backupAction(kind, backup) {
  const restore = kind === "restore";
  const ok = await confirmAction(
    restore ? `Restore ${backup.table}?` : `Verify ${backup.backup}?`,
    restore
      ? `Replace every row of ${backup.table} with the ${fmtInt(backup.rows)} rows of backup ${backup.backup} (taken ${backup.created_at}). The table is unchanged if anything is wrong.`
      : `Check backup ${backup.backup} of ${backup.table} (manifest, checksum, every row) without touching the database.`,
    restore ? "Restore" : "Verify", restore);
  if (!ok) { announce(`${restore ? "Restore" : "Verification"} cancelled.`); return; }
  announce(`${restore ? "Restoring" : "Verifying"} ${backup.backup}…`);
  try {
    const result = await api(`/tables/${backup.table}/${kind}`, { method: "POST", body: { backup: backup.backup }, admin: restore });
    hideBanner();
    if (restore) announce(`Restored ${result.table}: it now holds ${fmtInt(result.rows)} rows from ${result.backup} (operation #${result.load_id}).`);
    else if (result.ok) announce(`Backup ${result.backup} is sound: ${fmtInt(result.rows)} rows.`);
    else showBanner(`Backup ${result.backup} is damaged: ${result.problems.join("; ")}`);
  } catch (err) {
    showBanner(`${restore ? "The restore" : "The verification"} failed: ${describe(err)}`);
    announce("");
  }
}

async function backupsView(ctx) {
  const backups = await api("/backups");
  const byTable = new Map(TABLES.map((t) => [t, backups.filter((b) => b.table === t)]));
  const rows = TABLES.map((t) => {
    const list = byTable.get(t);
    const newest = list[list.length - 1]; // the API lists them oldest first
    const button = (kind, label, cls) => h("button", { type: "button", class: `small ${cls}`, disabled: !newest,
      "data-testid": `${kind}-${t}`, "aria-label": `${label} ${t}`, onclick: () => backupAction(kind, newest) }, label);
    return h("tr", { "data-testid": `backup-${t}` }, h("td", null, t), num(list.length),
      newest ? [h("td", null, newest.backup), h("td", { class: "nowrap" }, fmtAge(newest.created_at), h("br"), h("span", { class: "muted" }, newest.created_at)),
        num(newest.rows), h("td", { class: "num" }, fmtBytes(newest.bytes)), h("td", null, newest.codec)]
        : h("td", { colspan: 5, class: "empty" }, "No backups yet."),
      h("td", { class: "nowrap" }, button("verify", "Verify", "quiet"), " ", button("restore", "Restore", "danger")));
  });
  const all = backups.slice().reverse();
  ctx.mount(viewHead("Backups"),
    h("section", { class: "card" }, h("h3", null, "Newest backup of each table"),
      h("p", { class: "hint" }, "Verify checks a backup without touching the database; restore replaces the table's rows with it (admin key)."),
      dataTable("Backups per table", ["Table", { label: "Backups", num: true }, "Newest", "Age", { label: "Rows", num: true }, { label: "Size", num: true }, "Codec", "Actions"], rows)),
    h("section", { class: "card" }, h("h3", null, "Every backup, newest first"),
      all.length ? dataTable("Every backup", ["Name", "Table", "Created", { label: "Rows", num: true }, { label: "Size", num: true }, "Codec", "SHA-256"],
        all.map((b) => h("tr", null, h("td", null, b.backup), h("td", null, b.table), h("td", { class: "nowrap" }, b.created_at),
          num(b.rows), h("td", { class: "num" }, fmtBytes(b.bytes)), h("td", null, b.codec), h("td", null, h("code", null, b.sha256.slice(0, 16) + "…")))))
        : empty("No backups yet: POST /api/backups or `hrmig backup` makes them.")));
}

// 8. The router --------------------------------------------------------------------

const VIEWS = { overview: overviewView, tables: tablesView, rejections: rejectionsView, reports: reportsView, backups: backupsView };
let renderCount = 0;

/** Goes to a hash, marking the page as not ready at once (tests wait on data-ready). */
function navigate(hash) {
  delete document.body.dataset.ready;
  if (location.hash === hash) route(); else location.hash = hash;
}

async function route(moveFocus = false) {
  let [, name = "", query = ""] = location.hash.match(/^#\/([a-z]*)\??(.*)$/) || [];
  if (!VIEWS[name]) {
    history.replaceState(null, "", "#/overview");
    [name, query] = ["overview", ""];
  }
  const render = ++renderCount;
  delete document.body.dataset.ready;
  for (const a of document.querySelectorAll(".top nav a")) {
    if (a.getAttribute("href") === `#/${name}`) a.setAttribute("aria-current", "page"); else a.removeAttribute("aria-current");
  }
  announce("Loading…");
  const ctx = {
    params: new URLSearchParams(query),
    current: () => render === renderCount,
    mount(...nodes) {
      if (!ctx.current()) throw new Error("stale view");
      destroyCharts();
      $("view").replaceChildren(...nodes.filter(Boolean));
    },
  };
  try {
    await VIEWS[name](ctx);
    if (!ctx.current()) return;
    hideBanner();
    if ($("status").textContent === "Loading…") announce("");
    document.title = `${name[0].toUpperCase()}${name.slice(1)} · hrmig console`;
    if (moveFocus) $("view-title")?.focus();
    document.body.dataset.ready = name;
  } catch (err) {
    if (!ctx.current()) return;
    destroyCharts();
    $("view").replaceChildren(viewHead(name[0].toUpperCase() + name.slice(1)), empty("Nothing to show: see the message above."));
    showBanner(describe(err));
    announce("");
    document.body.dataset.ready = "error";
  }
}

function start() {
  keys.showForget();
  $("forget-keys").addEventListener("click", () => { keys.set("api", ""); keys.set("admin", ""); announce("Keys forgotten."); navigate("#/overview"); });
  $("banner-retry").addEventListener("click", () => navigate(location.hash));
  window.addEventListener("hashchange", () => route(true));
  route();
}

start();
