/* The auditor page: the last public audit report of one contract, in four parts:
   verdict, reconciliation, ε spent per period against the budget, pseudonym keys. */
"use strict";

const contractId = decodeURIComponent(location.pathname.split("/")[2]);
const AUDIT_API = `/api/audit/${pathSegment(contractId)}`;

function table(columns, rows, marks = () => null) {
  const head = el("tr", {}, ...columns.map(([title]) => el("th", {}, title)));
  const body = rows.map((row) => el("tr", { class: marks(row) },
    ...columns.map(([, get]) => {
      const value = get(row);
      return el("td", { class: typeof value === "number" ? "num" : null },
        typeof value === "number" ? formatNumber(value) : value ?? "–");
    })));
  return el("div", { class: "scroll" }, el("table", {}, el("thead", {}, head), el("tbody", {}, ...body)));
}

function day(ms) {
  return new Date(ms).toISOString().slice(0, 16).replace("T", " ");
}

function meter(spent, budget) {
  const bar = el("span");
  bar.style.width = `${Math.min(100, (100 * spent) / budget)}%`;
  if (spent > budget) bar.className = "over";
  return el("span", { class: "meter", title: `${formatNumber(spent)} of ${formatNumber(budget)}` }, bar);
}

function reconciliation(report) {
  const recon = report.reconciliation;
  const out = [el("h2", {}, "Reconciliation")];
  out.push(el("p", { class: "muted small" },
    "Every event in is accounted for as published, suppressed, rejected, late or filtered; " +
    "a gap is an event the audit could not account for."));
  out.push(table([
    ["stream", (s) => s.stream],
    ["rejected", (s) => s.rejected],
    ["rejected by reason", (s) => Object.entries(s.rejected_by_reason || {})
      .map(([r, n]) => `${r} ${formatNumber(n)}`).join(", ") || "none"],
    ["undecodable", (s) => s.undecodable],
  ], recon.streams));
  out.push(table([
    ["view", (v) => v.view],
    ["gap", (v) => v.gap],
    ["windows released", (v) => v.windows.released],
    ["withheld", (v) => v.windows.withheld],
    ["open", (v) => v.windows.open],
  ], recon.views, (v) => (v.gap ? "violation" : null)));
  return out;
}

function epsilon(report) {
  const out = [el("h2", {}, "Privacy budget (ε) per period")];
  const noised = report.terms.views.filter((v) => v.epsilon && v.epsilon.noise);
  if (noised.length === 0) {
    out.push(el("p", {}, "No view of this contract adds differential-privacy noise."));
    return out;
  }
  for (const view of noised) {
    const e = view.epsilon;
    out.push(el("h3", {}, `${view.view}: budget ${formatNumber(e.budget)} per period, ` +
      `${formatNumber(e.epsilon_per_window)} per window`));
    out.push(table([
      ["period from", (p) => day(p.period_start)],
      ["ε spent", (p) => p.spent],
      ["budget", () => e.budget],
      ["", (p) => meter(p.spent, e.budget)],
    ], e.spent, (p) => (p.spent > e.budget + 1e-9 ? "violation" : null)));
  }
  return out;
}

function keys(report) {
  const k = report.terms.keys;
  const epochs = (list) => list.map((e) => `${e.epoch} (${e.from})`).join(", ") || "none";
  return [
    el("h2", {}, "Pseudonym keys"),
    el("dl", {},
      el("dt", {}, "rotation"), el("dd", {}, k.rotation),
      el("dt", {}, "key retention"), el("dd", {}, k.key_retention),
      el("dt", {}, "epochs stored"), el("dd", { id: "epochs-stored" }, epochs(k.epochs_stored)),
      el("dt", {}, "epochs destroyed"), el("dd", { id: "epochs-destroyed" }, epochs(k.epochs_destroyed)),
      el("dt", {}, "destruction floor"), el("dd", {}, k.destruction_floor ?? "none yet"),
      el("dt", {}, "due for destruction below"), el("dd", {}, k.destroy_below_by_retention ?? "–")),
  ];
}

function findings(report) {
  const out = [el("h2", {}, "Findings")];
  if (report.findings.length === 0) {
    out.push(el("p", {}, "None."));
    return out;
  }
  out.push(table([
    ["severity", (f) => f.severity], ["section", (f) => f.section], ["code", (f) => f.code],
    ["what", (f) => f.message],
  ], report.findings, (f) => f.severity));
  return out;
}

function render(result) {
  const verdict = document.getElementById("verdict");
  const sections = document.getElementById("sections");
  showError(result.error ? `the audit could not run: ${result.error}` : null);
  if (result.running && !result.report) {
    verdict.className = "verdict";
    verdict.textContent = "The audit is running (it reads every topic of the contract)…";
    return;
  }
  const report = result.report;
  if (!report) {
    verdict.className = "verdict";
    verdict.textContent = "No audit result.";
    return;
  }
  const { violations, warnings } = report.summary;
  verdict.className = report.ok ? "verdict ok" : "verdict fail";
  verdict.textContent = `${report.ok ? "OK" : "FAILED"}: ${violations} violation(s), ` +
    `${warnings} warning(s). Audit run at ${result.generated_at}` +
    (result.running ? " (running again…)" : "") +
    `, contract version ${report.contract.version}, policy ${report.contract.policy_hash_short}.`;
  document.getElementById("full").hidden = false;
  sections.replaceChildren(...reconciliation(report), ...epsilon(report), ...keys(report),
    ...findings(report));
}

async function refresh(again) {
  let result;
  try {
    // Running the audit again is a POST: only this page (same origin) may start one.
    result = await getJSON(AUDIT_API, again ? "POST" : "GET");
  } catch (error) {
    showError(`cannot load the audit: ${error.message}`);
    return;
  }
  render(result);
  if (result.running) setTimeout(() => refresh(false), 2000);
}

function main() {
  document.getElementById("title").textContent = `Audit of ${contractId}`;
  document.getElementById("full").href = `/audit/${pathSegment(contractId)}/report.html`;
  document.getElementById("rerun").addEventListener("click", () => refresh(true));
  refresh(false);
}

main();
