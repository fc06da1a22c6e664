/* respublica web: helpers every page uses. Text always goes in with textContent, never as HTML. */
"use strict";

const SVG_NS = "http://www.w3.org/2000/svg";

async function getJSON(url, method = "GET") {
  const response = await fetch(url, { method, headers: { Accept: "application/json" } });
  if (!response.ok) {
    throw new Error(`${response.status} ${(await response.text()).trim()}`);
  }
  return response.json();
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value !== null && value !== undefined) node.setAttribute(name, value);
  }
  for (const child of children) {
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function svg(tag, attrs = {}) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, value);
  return node;
}

function showError(message) {
  const box = document.getElementById("error");
  if (!box) return;
  box.hidden = !message;
  box.textContent = message || "";
}

function formatNumber(value) {
  if (value === null || value === undefined) return "–";
  if (Number.isInteger(value)) return value.toLocaleString("en-GB");
  const digits = Math.abs(value) >= 100 ? 0 : Math.abs(value) >= 10 ? 1 : 2;
  return value.toLocaleString("en-GB", { maximumFractionDigits: digits });
}

function formatPercent(share) {
  return share === null || share === undefined ? "not published" :
    `${(100 * share).toLocaleString("en-GB", { maximumFractionDigits: 1 })} %`;
}

function pathSegment(text) {
  return encodeURIComponent(text);
}
