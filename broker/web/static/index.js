/* The list of views this server's principal may read, per contract. */
"use strict";

async function main() {
  let data;
  try {
    data = await getJSON("/api/views");
  } catch (error) {
    showError(`cannot list the views: ${error.message}`);
    return;
  }
  document.getElementById("principal").textContent =
    data.principal ? `as ${data.principal}` : "";
  const root = document.getElementById("contracts");
  const byContract = new Map();
  for (const row of data.views) {
    if (!byContract.has(row.contract)) byContract.set(row.contract, []);
    byContract.get(row.contract).push(row);
  }
  if (byContract.size === 0) {
    root.append(el("p", {}, "This principal may read no view of the contracts this server knows."));
  }
  for (const [contract, rows] of byContract) {
    const box = el("section", { class: "contract", "data-contract": contract });
    box.append(el("h2", {}, `${rows[0].contract_title} `, el("span", { class: "muted small" }, contract)));
    const list = el("ul");
    for (const row of rows) {
      const link = el("a", { href: `/views/${pathSegment(contract)}/${pathSegment(row.view)}`,
        class: "view-link" }, row.view);
      const note = row.error ? ` — ${row.error}` :
        ` — ${row.windows} released window${row.windows === 1 ? "" : "s"}`;
      list.append(el("li", {}, link, el("span", { class: "muted" },
        row.description ? ` ${row.description}` : "", note)));
    }
    box.append(list);
    box.append(el("p", { class: "small" }, el("a",
      { href: `/audit/${pathSegment(contract)}`, class: "audit-link" }, "Auditor page")));
    root.append(box);
  }
}

main();
