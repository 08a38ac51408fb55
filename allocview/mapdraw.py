"""Pictures (allocview.picture) drawn for a terminal (a render.Doc) and as
SVG. render.map_view / map_svg / map_html call these; the HTML report
draws the same pictures with its own script and the same palette.

How a cell looks, everywhere:
- free cells take the tone of their largest free block: warm for single
  pages, cool for large blocks (terminal: `:` `;` `=` `-` `~` `.`);
- allocated, special and invalid cells their class colour (`#`, `S`, `!`);
- a minority always shows: a stripe at the bottom of an SVG cell, a
  lower-case glyph on a terminal (`x` some allocated, `s` some special;
  `%` allocated with a quarter or more free, in the free pages' tone);
- findings: a dot in the SVG cell (black error, white warning, grey info),
  reverse video and a per-row count in the terminal gutter.
"""

from __future__ import annotations

from html import escape

from allocview.model.findings import Severity
from allocview.model.snapshot import Snapshot

from .picture import (ALLOCATED, CLASSES, FREE, INVALID, SPECIAL, TONES, Cell, Picture,
                      describe, human_size, picture, tone, tone_label, worst)
from .render import Doc

__all__ = ["TONE_FILL", "CLASS_FILL", "pictures", "terminal_map", "svg_map", "html_page",
           "glyph"]

# The palette (light backgrounds); htmlreport has the dark variant.
TONE_FILL = ("#f2a93b", "#e6d45a", "#a5d46a", "#4caf6e", "#21918c", "#2c5d9e")
CLASS_FILL = {ALLOCATED: "#d1495b", SPECIAL: "#9467d6", INVALID: "#e600e6"}
SEVERITY_DOT = {Severity.ERROR: ("#000", "#fff"), Severity.WARNING: ("#fff", "#000"),
                Severity.INFO: ("#888", "#888")}          # (fill, ring)

TONE_GLYPHS = (":", ";", "=", "-", "~", ".")
TONE_STYLES = ("yellow", "bright_yellow", "bright_green", "green", "cyan", "blue")
CLASS_GLYPH = {ALLOCATED: "#", SPECIAL: "S", INVALID: "!"}
MINORITY_GLYPH = {ALLOCATED: "x", SPECIAL: "s", INVALID: "!"}
CLASS_STYLE = {ALLOCATED: "red", SPECIAL: "magenta", INVALID: "bold bright_magenta"}
SEVERITY_LETTER = {Severity.ERROR: ("E", "bold red"), Severity.WARNING: ("W", "yellow"),
                   Severity.INFO: ("i", "cyan")}


def pictures(snap: Snapshot, findings, slot: int | None, from_addr: int | None,
             to_addr: int | None, cols: int, max_cells: int) -> list[Picture]:
    """The picture of every decoded area (or `slot`'s) with pages in range."""
    out = []
    for a in snap.areas:
        if not a.decoded or (slot is not None and a.slot != slot):
            continue
        pic = picture(snap, a, findings, from_addr=from_addr, to_addr=to_addr, cols=cols,
                      max_cells=max_cells)
        if pic is not None:
            out.append(pic)
    return out


# ----------------------------------------------------------------- terminal
def glyph(cell: Cell) -> tuple[str, str]:
    """(character, rich style) of a terminal cell."""
    if not cell.pages:
        return " ", ""
    main, minor = cell.main, cell.minority
    if INVALID in (main, minor):
        return "!", CLASS_STYLE[INVALID]
    if main == FREE:
        if minor in (SPECIAL, ALLOCATED):
            return MINORITY_GLYPH[minor], CLASS_STYLE[minor]
        return TONE_GLYPHS[cell.tone], TONE_STYLES[cell.tone]
    if main == ALLOCATED and minor == SPECIAL:
        return MINORITY_GLYPH[SPECIAL], CLASS_STYLE[SPECIAL]
    if main == ALLOCATED and minor == FREE and cell.minority_pages * 4 >= cell.pages:
        # a quarter or more free: its tone says how broken up that memory is
        return "%", TONE_STYLES[tone(cell.free_order)]
    return CLASS_GLYPH[main], CLASS_STYLE[main]


def _ruler(pic: Picture, label_w: int, every: int) -> str:
    """Column offsets from the row's address, every `every` cells."""
    line = " " * label_w
    for c in range(0, pic.cols, every):
        mark = "+" + _short(c * pic.cell_pages * pic.page_size)
        line = line.ljust(label_w + c) + mark[:every - 1]
    return line


def terminal_map(pics: list[Picture], page_size: int) -> Doc:
    doc = Doc()
    for pic in pics:
        last_row = pic.row_addr(pic.rows - 1)
        label_w = len(f"{last_row:#x}") + 1
        doc.line((f"area {pic.slot} {pic.name}", "bold"),
                 f"  [{pic.addr(pic.first):#x}, {pic.addr(pic.end):#x})  "
                 f"{human_size((pic.end - pic.first) * page_size)}")
        doc.line(pic.scale())
        doc.line((_ruler(pic, label_w, 16 if pic.cols >= 32 else 8), "dim"))
        for r in range(pic.rows):
            row = pic.cells[r * pic.cols:(r + 1) * pic.cols]
            spans = [(f"{pic.row_addr(r):#0{label_w - 1}x} ", "dim")]
            marked: dict[int, Severity] = {}
            for cell in row:
                ch, style = glyph(cell)
                sev = worst(pic, cell)
                if sev is not None:
                    style = (style + " reverse").strip()
                    for i, _ in cell.findings:
                        marked[i] = pic.findings[i].severity
                spans.append((ch, style))
            if marked:
                letter, style = SEVERITY_LETTER[max(marked.values())]
                spans.append((f" {letter}{len(marked)}", style))
            doc.line(*_merge(spans))
        _findings_lines(doc, pic)
    return doc


def _merge(spans: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Adjacent spans of one style as one (rich draws a 4096-cell map faster)."""
    out: list[list] = []
    for text, style in spans:
        if out and out[-1][1] == style:
            out[-1][0] += text
        else:
            out.append([text, style])
    return [(t, s) for t, s in out]


def _findings_lines(doc: Doc, pic: Picture) -> None:
    by_code: dict[str, list[int]] = {}
    for i, f in enumerate(pic.findings):
        by_code.setdefault(f.code, []).append(i)
    for code, idx in by_code.items():
        f0 = pic.findings[idx[0]]
        letter, style = SEVERITY_LETTER[f0.severity]
        breaches = sum(pic.findings[i].count for i in idx)
        cells = sum(1 for c in pic.cells if any(i in idx for i, _ in c.findings))
        first = min(pic.findings[i].address for i in idx)
        doc.line("  ", (f"{letter} {code}", style),
                 f": {len(idx)} finding{'s' if len(idx) > 1 else ''}"
                 + (f" ({breaches} breaches)" if breaches > len(idx) else "")
                 + f" in {cells} cell{'s' if cells != 1 else ''}, first at {first:#x}")


def _short(nbytes: int) -> str:
    """An offset for a ruler: "0", "512KiB"."""
    return "0" if not nbytes else human_size(nbytes).replace(" ", "")


def legend(page_size: int) -> Doc:
    """Lines of at most 80 characters."""
    tones = [(f"{TONE_GLYPHS[k]} {tone_label(k, page_size)}  ", TONE_STYLES[k])
             for k in range(len(TONES))]
    doc = Doc().line("legend: free, by its largest block:  ", *tones[:3])
    doc.line("        ", *tones[3:])
    doc.line("        ", ("# allocated  ", CLASS_STYLE[ALLOCATED]),
             ("x some allocated  ", CLASS_STYLE[ALLOCATED]), "% allocated, >= 1/4 free")
    doc.line("        ", ("S special  ", CLASS_STYLE[SPECIAL]),
             ("s some special  ", CLASS_STYLE[SPECIAL]), ("! invalid byte", CLASS_STYLE[INVALID]))
    doc.line("        ", ("E/W/i n", "bold"), ": n findings in the row, their cells in reverse "
             "video")
    return doc


# ---------------------------------------------------------------------- svg
FONT = 'font-family="monospace" font-size="11"'


def cell_fill(cell: Cell) -> str:
    return TONE_FILL[cell.tone] if cell.main == FREE else CLASS_FILL[cell.main]


def minority_fill(cell: Cell) -> str:
    m = cell.minority
    if m == FREE:
        return TONE_FILL[0 if cell.free_order is None else tone(cell.free_order)]
    return CLASS_FILL[m]


def stripe_height(cell: Cell, size: float) -> float:
    """A minority's stripe: its share of the cell's height, never under a
    third, so one page in thousands still shows."""
    share = cell.minority_pages / cell.pages
    return round(min(size * 0.5, max(size / 3, size * share)), 2)


def svg_map(pics: list[Picture], page_size: int, cell: int) -> str:
    """One <svg>: per area its title, a column ruler, row labels, the cells
    (each with its hover text as <title>), then the legend."""
    parts: list[str] = []
    width = 0
    y = 4
    if not pics:
        y += 14
        parts.append(f'<text x="0" y="{y}" {FONT}>no decoded page in that area or range</text>')
    for pic in pics:
        label_w = 7 * len(f"{pic.row_addr(pic.rows - 1):#x}") + 8
        width = max(width, label_w + pic.cols * cell)
        y += 14
        parts.append(f'<text x="0" y="{y}" {FONT} font-weight="bold">'
                     f'{escape(f"area {pic.slot} {pic.name}")}: [{pic.addr(pic.first):#x}, '
                     f'{pic.addr(pic.end):#x}) {human_size((pic.end - pic.first) * page_size)}; '
                     f'{escape(pic.scale())}</text>')
        y += 14
        every = 1                        # ruler marks at least 9 characters apart
        while every * cell < 64:
            every *= 2
        for c in range(0, pic.cols, every):
            off = _short(c * pic.cell_pages * page_size)
            parts.append(f'<text x="{label_w + c * cell}" y="{y}" {FONT} fill="#666">+{off}</text>')
        y += 4
        label_every = max(1, 12 // cell)
        for r in range(pic.rows):
            ry = y + r * cell
            if r % label_every == 0:
                parts.append(f'<text x="0" y="{ry + min(cell, 11)}" {FONT} fill="#666">'
                             f'{pic.row_addr(r):#x}</text>')
            for c, cl in enumerate(pic.cells[r * pic.cols:(r + 1) * pic.cols]):
                if cl.pages:
                    parts.append(_svg_cell(pic, cl, label_w + c * cell, ry, cell))
        y += pic.rows * cell + 10
    parts.append(_svg_legend(page_size, y, max(width, 600)))
    y += -(-11 // max(1, max(width, 600) // 280)) * 16 + 8
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{max(width, 600)}" height="{y}" '
            f'viewBox="0 0 {max(width, 600)} {y}">'
            f'<rect width="100%" height="100%" fill="#fff"/>' + "".join(parts) + "</svg>\n")


def _svg_cell(pic: Picture, cl: Cell, x: int, y: int, size: int) -> str:
    title = f"<title>{escape(describe(pic, cl))}</title>"
    body = f'<rect x="{x}" y="{y}" width="{size}" height="{size}" fill="{cell_fill(cl)}"/>'
    if cl.minority is not None:
        h = stripe_height(cl, size)
        body += (f'<rect x="{x}" y="{y + size - h}" width="{size}" height="{h}" '
                 f'fill="{minority_fill(cl)}"/>')
    sev = worst(pic, cl)
    if sev is not None:
        fill, ring = SEVERITY_DOT[sev]
        r = max(1.5, size * 0.3)
        body += (f'<circle cx="{x + size / 2}" cy="{y + size / 2}" r="{r}" fill="{fill}" '
                 f'stroke="{ring}" stroke-width="{max(0.5, size * 0.12):.2f}"/>')
    return f'<g class="{CLASSES[cl.main]}">{title}{body}</g>'


def _svg_legend(page_size: int, y: int, width: int) -> str:
    items = [(TONE_FILL[k], f"free, largest block {tone_label(k, page_size)}")
             for k in range(len(TONES))]
    items += [(CLASS_FILL[ALLOCATED], "allocated"), (CLASS_FILL[SPECIAL], "special (reserved)"),
              (CLASS_FILL[INVALID], "invalid byte"), ("stripe", "bottom stripe: a minority"),
              ("dot", "dot: findings (black error, white warning)")]
    per_row = max(1, width // 280)
    out = []
    for i, (fill, text) in enumerate(items):
        x, ly = (i % per_row) * 280, y + (i // per_row) * 16
        if fill == "stripe":
            out.append(f'<rect x="{x}" y="{ly}" width="10" height="10" fill="{TONE_FILL[5]}"/>'
                       f'<rect x="{x}" y="{ly + 7}" width="10" height="3" '
                       f'fill="{CLASS_FILL[ALLOCATED]}"/>')
        elif fill == "dot":
            out.append(f'<rect x="{x}" y="{ly}" width="10" height="10" fill="{TONE_FILL[2]}"/>'
                       f'<circle cx="{x + 5}" cy="{ly + 5}" r="3" fill="#000" stroke="#fff"/>')
        else:
            out.append(f'<rect x="{x}" y="{ly}" width="10" height="10" fill="{fill}"/>')
        out.append(f'<text x="{x + 14}" y="{ly + 9}" {FONT}>{escape(text)}</text>')
    return "".join(out)


def html_page(title: str, svg: str) -> str:
    """The SVG map in a minimal page, readable in light and dark."""
    return ("<!doctype html>\n<html lang=en><meta charset=utf-8>"
            "<meta name=viewport content='width=device-width, initial-scale=1'>"
            f"<title>{escape(title)}</title><style>:root{{color-scheme:light dark}}"
            "body{font-family:system-ui,sans-serif;margin:1rem}"
            "svg{max-width:100%;height:auto}</style>"
            f"<h1>{escape(title)}</h1>\n{svg}")
