"""The shell shared by the HTML pages (`report.html`, `index.html`): one look, escaping in one place, and a
sortable table, all inline so a page works offline from file:// with nothing fetched."""

from __future__ import annotations

from html import escape

_STYLE = """body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:2em auto;max-width:1200px;
padding:0 1em;color:#1f2328}
h1{font-size:1.5em}h2{font-size:1.25em;margin-top:1.6em;border-bottom:1px solid #d0d7de;padding-bottom:.2em}
pre{background:#f6f8fa;padding:.6em .8em;overflow:auto;white-space:pre-wrap;word-break:break-word;
font:12px/1.4 ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;max-height:40em}
table{border-collapse:collapse;margin:.4em 0}
td,th{border:1px solid #d0d7de;padding:.25em .6em;text-align:left;vertical-align:top}
th{background:#f6f8fa}.num{text-align:right;font-variant-numeric:tabular-nums}
.ok{background:#dafbe1}.bad{background:#ffebe9}.warn{background:#fff8c5}.muted{color:#6e7781;background:#f6f8fa}
table.sortable th{cursor:pointer;user-select:none}
th[aria-sort=ascending]::after{content:" \\25B2"}th[aria-sort=descending]::after{content:" \\25BC"}
details{margin:.3em 0}summary{cursor:pointer}.note{color:#6e7781;font-size:.9em}
pre.diff span.add{color:#116329;background:#dafbe1}pre.diff span.del{color:#82071e;background:#ffebe9}
pre.diff span.hunk{color:#0550ae}pre.diff span.file{font-weight:bold}"""

# Sorts a table.sortable by the clicked column: numbers when every non-empty cell parses as one (empty first),
# else text; a cell's (or its first descendant's) data-sort is its key; a second click reverses.
_SORT_JS = """document.addEventListener('click',e=>{const th=e.target.closest('table.sortable thead th');if(!th)return;
const t=th.closest('table'),i=[...th.parentNode.children].indexOf(th),b=t.tBodies[0];if(!b)return;
const asc=th.getAttribute('aria-sort')!=='ascending';
t.querySelectorAll('thead th').forEach(h=>h.removeAttribute('aria-sort'));
th.setAttribute('aria-sort',asc?'ascending':'descending');
const key=r=>{const c=r.children[i];if(!c)return'';const s=c.dataset.sort??c.querySelector('[data-sort]')?.dataset.sort;
return(s??c.textContent).trim()};
const rows=[...b.rows],num=rows.every(r=>key(r)===''||!isNaN(Number(key(r))));
const n=s=>s===''?-Infinity:Number(s),cmp=(p,q)=>p<q?-1:p>q?1:0;
rows.sort((x,y)=>{const p=key(x),q=key(y),d=num?cmp(n(p),n(q)):p.localeCompare(q);return asc?d:-d});
rows.forEach(r=>b.appendChild(r))});"""


def esc(text: object) -> str:
    return escape(str(text), quote=True)


def page(title: str, body: str, *, script: str = "") -> str:
    """A complete document; `body` and `script` are trusted HTML/JS the caller built from escaped pieces."""
    return (
        "<!doctype html>\n<html lang=en><head><meta charset=utf-8>"
        '<meta name=viewport content="width=device-width,initial-scale=1">'
        f"<title>{esc(title)}</title><style>{_STYLE}</style></head>\n<body>\n{body}\n"
        f"<script>{_SORT_JS}\n{script}</script>\n</body></html>\n"
    )


def _diff_class(line: str) -> str:
    if line.startswith(("diff --git", "--- ", "+++ ", "index ", "new file", "deleted file")):
        return "file"
    if line.startswith("@@"):
        return "hunk"
    if line.startswith("+"):
        return "add"
    if line.startswith("-"):
        return "del"
    return ""


def diff_html(patch: str) -> str:
    lines = []
    for line in patch.splitlines():
        kind = _diff_class(line)
        lines.append(f'<span class="{kind}">{esc(line)}</span>' if kind else f"<span>{esc(line)}</span>")
    return '<pre class="diff">' + "\n".join(lines) + "</pre>"


def table(
    headers: list[str],
    rows: list[list[str]],
    *,
    sortable: bool = False,
    id: str | None = None,
    classes: list[list[str]] | None = None,
) -> str:
    """Headers are text (escaped); cells are HTML the caller made safe. `classes[r][c]` is cell (r, c)'s class.
    A sortable column sorts by a cell's `data-sort` (on an element inside the cell) when it has one."""
    attrs = (f' id="{esc(id)}"' if id else "") + (' class="sortable"' if sortable else "")
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = []
    for r, row in enumerate(rows):
        cells = []
        for c, cell in enumerate(row):
            cls = classes[r][c] if classes and r < len(classes) and c < len(classes[r]) else ""
            cells.append(f'<td class="{esc(cls)}">{cell}</td>' if cls else f"<td>{cell}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table{attrs}><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def details(summary: str, body_html: str, *, open: bool = False) -> str:
    return f"<details{' open' if open else ''}><summary>{esc(summary)}</summary>{body_html}</details>"
