"""The audit report as one self-contained HTML page: inline CSS, no script, nothing fetched.

A reader opens it from a file or an e-mail: the verdict is a coloured banner, violation rows
are red and warning rows amber (``Table.marks``), and tables scroll sideways on a phone.
"""

from __future__ import annotations

import html

from broker.audit.blocks import Block, Heading, Para, Table

CSS = """
body { font: 15px/1.5 system-ui, -apple-system, "Segoe UI", sans-serif; color: #1d2430;
       max-width: 72rem; margin: 2rem auto; padding: 0 1rem; }
h1 { font-size: 1.6rem; margin-bottom: .5rem; }
h2 { font-size: 1.25rem; margin-top: 2.2rem; border-bottom: 1px solid #d6dbe3; }
h3 { font-size: 1.05rem; margin-top: 1.6rem; }
code { font: .85em ui-monospace, SFMono-Regular, Menlo, monospace; background: #f1f3f6;
       padding: 0 .25em; border-radius: 3px; word-break: break-all; }
.verdict { padding: .8rem 1rem; border-radius: 6px; font-size: 1.05rem; }
.verdict.ok { background: #e6f4ea; border-left: 6px solid #1e7e34; }
.verdict.fail { background: #fdecea; border-left: 6px solid #b3261e; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; margin: .6rem 0 1rem; font-size: .9rem; }
th, td { border: 1px solid #d6dbe3; padding: .3rem .55rem; text-align: left;
         vertical-align: top; }
th { background: #f1f3f6; }
tbody tr:nth-child(even) { background: #fafbfc; }
tr.violation, tr.violation:nth-child(even) { background: #fdecea; }
tr.violation td:first-child { border-left: 4px solid #b3261e; font-weight: 600; }
tr.warning, tr.warning:nth-child(even) { background: #fff6e0; }
tr.warning td:first-child { border-left: 4px solid #b26a00; }
hr { margin-top: 2rem; border: 0; border-top: 1px solid #d6dbe3; }
"""


def html_page(blocks: list[Block], title: str, generated_at: str | None) -> str:
    """The page: a head with the style, then one element per block."""
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{html.escape(title)}</title>",
        f"<style>{CSS}</style></head><body>",
    ]
    for block in blocks:
        out += _element(block)
    if generated_at is not None:
        out.append(f"<hr><p>generated_at: {html.escape(generated_at)}</p>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"


def _element(block: Block) -> list[str]:
    if isinstance(block, Heading):
        return [f"<h{block.level}>{html.escape(block.text)}</h{block.level}>"]
    if isinstance(block, Para):
        mark = f' class="verdict {block.mark}"' if block.mark else ""
        return [f"<p{mark}>{_inline(block.text)}</p>"]
    return _table(block)


def _table(table: Table) -> list[str]:
    marks = list(table.marks) or [""] * len(table.rows)
    head = "".join(f"<th>{html.escape(h)}</th>" for h in table.header)
    out = [f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>']
    for row, mark in zip(table.rows, marks, strict=True):
        cls = f' class="{mark}"' if mark in ("violation", "warning") else ""
        out.append(f"<tr{cls}>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in row) + "</tr>")
    out.append("</tbody></table></div>")
    return out


def _inline(text: str) -> str:
    """Escape, then the two Markdown marks the outline uses: **bold** and `code`."""
    escaped = html.escape(text)
    parts = escaped.split("**")
    escaped = "".join(f"<strong>{p}</strong>" if i % 2 else p for i, p in enumerate(parts))
    parts = escaped.split("`")
    return "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(parts))
