// allocview's HTML report: draws each area's map from the embedded data,
// zooms down to single pages, links findings to their place.
//
// Cells follow allocview/picture.py exactly (the overview is its output;
// zoomed views are aggregated here from the metadata bytes by the same
// rules, and tests/render compare the two cell by cell).
"use strict";
(() => {
  const D = JSON.parse(document.getElementById("allocview-data").textContent);
  const SHIFT = BigInt(D.page_shift);
  const OFF = BigInt(D.phys_offset);
  const PAGE = 2 ** D.page_shift;
  const [ST, FO, AO] = D.tables;
  const CLASSES = ["free", "allocated", "special", "invalid"];
  const RANK = { info: 0, warning: 1, error: 2 };
  const F = D.findings;          // [code, severity, slot, address, pfn, last pfn, count, message]
  const ZOOM_CELLS = 4096;       // cells of a zoomed view
  const ZOOM_STEP = 16;          // each click: cells of 1/16 the pages

  const hex = (pfn) => "0x" + ((BigInt(pfn) << SHIFT) + OFF).toString(16);
  const toPfn = (addr) => Number((BigInt(addr) - OFF) >> SHIFT);

  function humanSize(n) {        // picture.human_size
    const units = ["B", "KiB", "MiB", "GiB", "TiB"];
    for (const u of units) {
      if (n < 1024 || u === "TiB") {
        return u === "B" ? `${n} B` : `${parseFloat(n.toPrecision(4))} ${u}`;
      }
      n /= 1024;
    }
    return String(n);
  }

  function tone(order) {
    for (let k = 0; k < D.tones.length; k++) {
      const hi = D.tones[k][1];
      if (hi < 0 || order <= hi) return k;
    }
    return D.tones.length - 1;
  }

  // ------------------------------------------------ cells (picture.py)
  function geometry(first, end, cols, maxCells) {
    let n = 1;
    for (;;) {
      const row = n * cols;
      const origin = first - (first % row);
      const rows = Math.max(1, Math.ceil((end - origin) / row));
      if (rows * cols <= Math.max(maxCells, cols) || row >= 2 ** 52) return { n, origin, rows };
      n *= 2;
    }
  }

  function breachesIn(first, last, count, lo, hi) {
    if (count === 1 || last === first) return lo <= first && first < hi ? count : 0;
    const span = last - first, gaps = count - 1;
    const kLo = Math.max(0, Math.ceil(((lo - first) * gaps) / span));
    const kHi = Math.min(count, Math.ceil(((hi - first) * gaps) / span));
    return Math.max(0, kHi - kLo);
  }

  function blockStart(pfn, order) {
    const size = 2 ** order;
    return pfn - (pfn % size);
  }

  // The findings of an area with breaches in [first, end): indexes into F.
  function findingsIn(area, first, end) {
    const out = [];
    F.forEach((f, i) => {
      if (f[2] !== area.slot || f[4] === null) return;
      if (f[4] < area.base || f[4] >= area.end) return;
      if (f[4] < end && f[5] >= first) out.push(i);
    });
    return out;
  }

  function makeCells(area, first, end, n, origin, ncells) {
    const meta = area.bytes, base = area.base;
    const marks = new Map();
    for (const i of findingsIn(area, first, end)) {
      const [, , , , p0, p1, count] = F[i];
      const c0 = Math.floor((Math.max(p0, first) - origin) / n);
      const c1 = Math.floor((Math.min(p1, end - 1) - origin) / n);
      for (let c = Math.max(c0, 0); c <= Math.min(c1, ncells - 1); c++) {
        const lo = origin + c * n;
        const k = breachesIn(p0, p1, count, Math.max(lo, first), Math.min(lo + n, end));
        if (k) {
          if (!marks.has(c)) marks.set(c, []);
          marks.get(c).push([i, k]);
        }
      }
    }
    const cells = [];
    for (let c = 0; c < ncells; c++) {
      const pfn = origin + c * n;
      const lo = Math.max(pfn, first), hi = Math.min(pfn + n, end);
      if (hi <= lo) { cells.push(outside(pfn)); continue; }
      const counts = [0, 0, 0, 0, 0];
      let fo = 0, fAt = -1, ao = 0, aAt = -1;
      for (let p = lo; p < hi; p++) {
        const b = meta[p - base];
        counts[ST[b]]++;
        if (FO[b] > fo) { fo = FO[b]; fAt = p; }
        if (AO[b] > ao) { ao = AO[b]; aAt = p; }
      }
      cells.push({
        pfn, pages: hi - lo, counts,
        fo: fo - 1, fb: fo ? blockStart(fAt, fo - 1) : -1,
        ao: ao - 1, ab: ao ? blockStart(aAt, ao - 1) : -1,
        f: marks.get(c) || [],
      });
    }
    return cells;
  }

  function outside(pfn) {
    return { pfn, pages: 0, counts: [0, 0, 0, 0, 0], fo: -1, fb: -1, ao: -1, ab: -1, f: [] };
  }

  // The overview as htmlreport wrote it (runs of like cells; block offsets).
  function expand(ov) {
    const cells = [];
    for (const [repeat, c] of ov.cells) {
      for (let r = 0; r < repeat; r++) {
        const pfn = ov.origin + cells.length * ov.n;
        const [pages, counts, fo, fOff, ao, aOff, f] = c;
        cells.push({
          pfn, pages, counts, fo, ao, f,
          fb: fo < 0 ? -1 : blockStart(pfn + fOff, fo),
          ab: ao < 0 ? -1 : blockStart(pfn + aOff, ao),
        });
      }
    }
    return { first: ov.first, end: ov.end, n: ov.n, origin: ov.origin, cols: ov.cols,
      rows: ov.rows, cells };
  }

  const classPages = (c) => [c.counts[0] + c.counts[1], c.counts[2], c.counts[3], c.counts[4]];

  function mainOf(c) {
    if (!c.pages) return -1;
    const cp = classPages(c);
    let best = 0;
    for (let k = 1; k < 4; k++) if (cp[k] >= cp[best]) best = k;
    return best;
  }

  function minorityOf(c) {
    const cp = classPages(c), main = mainOf(c);
    for (const k of [3, 2, 1, 0]) if (k !== main && cp[k]) return k;
    return -1;
  }

  function cellClass(c) {
    const m = mainOf(c);
    return m === 0 ? `free t${tone(c.fo)}` : CLASSES[m];
  }

  function worst(c) {
    let w = -1;
    for (const [i] of c.f) w = Math.max(w, RANK[F[i][1]]);
    return w < 0 ? null : ["info", "warning", "error"][w];
  }

  function describe(view, c) {     // picture.describe
    const lo = Math.max(c.pfn, view.first);
    const lines = [`[${hex(lo)}, ${hex(lo + c.pages)}) ${c.pages} page${c.pages !== 1 ? "s" : ""}, ` +
      humanSize(c.pages * PAGE)];
    const names = ["fresh", "free", "allocated", "special", "invalid"];
    lines.push(names.map((n, k) => (c.counts[k] ? `${n} ${c.counts[k]}` : "")).filter(Boolean)
      .join(", "));
    if (c.fo >= 0) {
      lines.push(`largest free block ${hex(c.fb)} order ${c.fo} (${humanSize(PAGE * 2 ** c.fo)})`);
    }
    if (c.ao >= 0 && (c.fo < 0 || c.pages === 1)) {
      lines.push(`largest allocated block ${hex(c.ab)} order ${c.ao} ` +
        `(${humanSize(PAGE * 2 ** c.ao)})`);
    }
    for (const [i, k] of c.f) {
      const f = F[i];
      lines.push(`${f[1]} ${f[0]}` + (k > 1 ? ` x${k}` : "") + (f[6] === 1 ? `: ${f[7]}` : ""));
    }
    return lines.join("\n");
  }

  // ------------------------------------------------------------ inflate
  async function inflate(b64) {
    const raw = atob(b64);
    const bin = new Uint8Array(raw.length);
    for (let i = 0; i < raw.length; i++) bin[i] = raw.charCodeAt(i);
    const stream = new Blob([bin]).stream().pipeThrough(new DecompressionStream("deflate"));
    return new Uint8Array(await new Response(stream).arrayBuffer());
  }

  // ------------------------------------------------------------ drawing
  const tip = document.getElementById("tip");

  class AreaView {
    constructor(section, area) {
      this.section = section;
      this.area = area;
      this.map = section.querySelector(".map");
      this.map.tabIndex = 0;
      this.overview = expand(area.overview);
      this.view = this.overview;
      this.stack = [];
      this.highlight = null;        // the finding outlined (F index)
      this.width = 0;               // the map's width when last drawn
      // the page-level bytes zoom needs, inflated once (null: no zoom)
      this.bytes = area.meta && "DecompressionStream" in window
        ? inflate(area.meta).then((b) => (area.bytes = b)) : null;
      this.map.addEventListener("mousemove", (e) => this.hover(e));
      this.map.addEventListener("mouseleave", () => { tip.hidden = true; });
      this.map.addEventListener("click", (e) => this.click(e));
      this.map.addEventListener("keydown", (e) => { if (e.key === "Escape") this.out(); });
      section.querySelector("button.out").addEventListener("click", () => this.out());
      section.querySelector("form.range").addEventListener("submit", (e) => this.range(e));
      this.crumbs = section.querySelector(".crumbs");
      this.crumbs.addEventListener("click", (e) => {
        const a = e.target.closest("a[data-depth]");
        if (!a) return;
        e.preventDefault();
        this.back(Number(a.dataset.depth));
      });
    }

    layout() {
      const v = this.view;
      const labelChars = hex(v.origin + v.rows * v.cols * v.n).length;
      const lw = labelChars * 7 + 10;
      const avail = Math.max(160, this.map.clientWidth - lw - 4);
      let cols = v.cols;
      while (cols > 8 && avail / cols < 6) cols /= 2;
      const size = Math.max(4, Math.min(16, Math.floor(avail / cols)));
      return { cols, size, lw };
    }

    draw() {
      this.width = this.map.clientWidth;
      const v = this.view, { cols, size, lw } = this.layout();
      const rowPages = cols * v.n;
      // rows of the new width that hold a page of the range
      const r0 = Math.floor((v.first - v.origin) / rowPages);
      const r1 = Math.ceil((v.end - v.origin) / rowPages);
      const top = 18;
      let every = 1;
      while (every * size < 70) every *= 2;
      let labelEvery = 1;
      while (labelEvery * size < 13) labelEvery *= 2;
      const out = [];
      for (let c = 0; c < cols; c += every) {
        const off = c * v.n * PAGE;
        out.push(`<text x="${lw + c * size}" y="12">+${off ? humanSize(off).replace(" ", "") : 0}</text>`);
      }
      for (let r = r0; r < r1; r++) {
        const y = top + (r - r0) * size;
        if ((r - r0) % labelEvery === 0) {
          out.push(`<text x="0" y="${y + Math.min(size, 11)}">${hex(v.origin + r * rowPages)}</text>`);
        }
        for (let k = 0; k < cols; k++) {
          const i = r * cols + k;
          const c = v.cells[i];
          if (!c || !c.pages) continue;
          const x = lw + k * size;
          out.push(`<rect class="c ${cellClass(c)}" x="${x}" y="${y}" width="${size}" ` +
            `height="${size}" data-i="${i}" data-pfn="${c.pfn}"/>`);
          const m = minorityOf(c);
          if (m >= 0) {
            const share = classPages(c)[m] / c.pages;
            const h = Math.min(size * 0.5, Math.max(size / 3, size * share));
            const cls = m === 0 ? `free t${tone(c.fo)}` : CLASSES[m];
            out.push(`<rect class="s ${cls}" x="${x}" y="${y + size - h}" width="${size}" height="${h}"/>`);
          }
          const w = worst(c);
          if (w) {
            out.push(`<circle class="fd ${w}" cx="${x + size / 2}" cy="${y + size / 2}" ` +
              `r="${Math.max(1.5, size * 0.3)}" stroke-width="${Math.max(0.5, size * 0.12)}" ` +
              `data-pfn="${c.pfn}" data-n="${v.n}" data-f="${c.f.map((x) => x[0]).join(",")}"/>`);
          }
        }
      }
      this.r0 = r0;
      this.cols = cols;
      this.size = size;
      if (this.highlight !== null) this.outline(out, v, lw, top);
      const width = lw + cols * size, height = top + (r1 - r0) * size + 2;
      this.map.innerHTML = `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" ` +
        `height="${height}" viewBox="0 0 ${width} ${height}">${out.join("")}</svg>`;
      this.map.dataset.n = v.n;
      this.map.dataset.first = v.first;
      this.map.dataset.end = v.end;
      this.map.dataset.depth = this.stack.length;
      const n = v.n;
      this.section.querySelector(".scale").textContent =
        `[${hex(v.first)}, ${hex(v.end)}) ${humanSize((v.end - v.first) * PAGE)}; one cell = ` +
        `${humanSize(n * PAGE)} (${n} page${n > 1 ? "s" : ""}), one row = ${humanSize(rowPages * PAGE)}`;
      this.section.querySelector("button.out").disabled = !this.stack.length;
      const crumbs = [`<a href="#" data-depth="0">whole area</a>`];
      this.stack.slice(1).concat(this.stack.length ? [v] : []).forEach((s, d) => {
        crumbs.push(`› <a href="#" data-depth="${d + 1}">${hex(s.first)}</a>`);
      });
      this.crumbs.innerHTML = crumbs.join(" ");
    }

    cellAt(e) {
      const rect = e.target.closest && e.target.closest("rect.c");
      return rect ? this.view.cells[Number(rect.dataset.i)] : null;
    }

    hover(e) {
      const c = this.cellAt(e);
      if (!c) { tip.hidden = true; return; }
      tip.textContent = describe(this.view, c);
      tip.hidden = false;
      const pad = 14, w = tip.offsetWidth, h = tip.offsetHeight;
      let x = e.clientX + pad, y = e.clientY + pad;
      if (x + w > innerWidth) x = Math.max(0, e.clientX - w - pad);
      if (y + h > innerHeight) y = Math.max(0, e.clientY - h - pad);
      tip.style.left = `${x}px`;
      tip.style.top = `${y}px`;
    }

    click(e) {
      const c = this.cellAt(e);
      if (c && this.view.n > 1) this.zoomAt(Math.max(c.pfn, this.view.first));
    }

    async zoomTo(first, end) {
      first = Math.max(first, this.area.base);
      end = Math.min(end, this.area.end);
      if (!this.bytes || end <= first) return false;
      await this.bytes;
      const { n, origin, rows } = geometry(first, end, 128, ZOOM_CELLS);
      const cells = makeCells(this.area, first, end, n, origin, rows * 128);
      this.stack.push(this.view);
      this.view = { first, end, n, origin, cols: 128, rows, cells };
      this.highlight = null;
      this.draw();
      return true;
    }

    zoomAt(pfn) {
      const n = Math.max(1, this.view.n / ZOOM_STEP);
      const span = n * ZOOM_CELLS;
      const start = pfn - (pfn % span);
      return this.zoomTo(start, start + span);
    }

    out() { if (this.stack.length) this.back(this.stack.length - 1); }

    back(depth) {
      if (depth >= this.stack.length) return;
      this.view = this.stack[depth];
      this.stack.length = depth;
      this.highlight = null;
      this.draw();
    }

    range(e) {
      e.preventDefault();
      const form = e.target;
      form.from.setCustomValidity("");
      try {
        const lo = form.from.value.trim(), hi = form.to.value.trim();
        const first = lo ? toPfn(lo) : this.area.base;
        const end = hi ? toPfn(BigInt(hi) - 1n) + 1 : this.area.end;
        this.zoomTo(first, end);
      } catch (err) {
        form.from.setCustomValidity("an address: 0x... or decimal");
        form.from.reportValidity();
      }
    }

    async showFinding(i) {
      const f = F[i];
      this.section.scrollIntoView({ block: "start" });
      if (f[4] === null || f[4] < this.area.base || f[4] >= this.area.end) return;
      const start = f[4] - (f[4] % ZOOM_CELLS);
      const end = Math.max(start + ZOOM_CELLS, f[5] + 1);
      if (!(await this.zoomTo(start, end))) this.back(0);
      this.highlight = i;
      this.draw();
      this.map.focus({ preventScroll: true });
    }

    // An outline around each cell of the finding being shown.
    outline(out, v, lw, top) {
      const i = this.highlight, s = this.size;
      v.cells.forEach((c, k) => {
        if (!c.f.some(([j]) => j === i)) return;
        const r = Math.floor(k / this.cols) - this.r0;
        if (r < 0) return;
        const x = lw + (k % this.cols) * s, y = top + r * s;
        out.push(`<rect class="hlbox" x="${x - 1.5}" y="${y - 1.5}" width="${s + 3}" ` +
          `height="${s + 3}" data-f="${i}"/>`);
      });
    }
  }

  // -------------------------------------------------------------- wiring
  const views = new Map();
  for (const area of D.areas) {
    const section = document.getElementById(`area-${area.slot}`);
    if (!section) continue;
    const v = new AreaView(section, area);
    views.set(area.slot, v);
    v.draw();
    if (!v.bytes) {
      section.querySelector(".hint").textContent = "Hover a cell for its pages. Zoom is off: " +
        (area.meta ? "this browser cannot inflate the embedded bytes (no DecompressionStream)."
          : "this area's bytes were too many to embed.");
    }
  }

  performance.mark("allocview-drawn");        // scripts/bench.py html reads it

  // A new width lays the cells out again (more or fewer columns).
  let pending = 0;
  new ResizeObserver(() => {
    cancelAnimationFrame(pending);
    pending = requestAnimationFrame(() => views.forEach((v) => {
      if (v.map.clientWidth !== v.width) v.draw();
    }));
  }).observe(document.body);

  document.addEventListener("click", (e) => {
    const link = e.target.closest("a.flink");
    if (link) {
      e.preventDefault();
      const i = Number(link.dataset.f);
      const v = views.get(F[i][2]);
      if (v) v.showFinding(i);
      return;
    }
    const more = e.target.closest("button.more");
    if (more) {
      const ol = more.previousElementSibling;
      const items = more.dataset.ids.split(",").map((s) => {
        const f = F[Number(s)];
        const li = document.createElement("li");
        const a = document.createElement("a");
        a.href = "#";
        a.className = "flink";
        a.dataset.f = s;
        a.textContent = (f[3] || "here") + (f[6] > 1 && f[5] !== null ? `..${hex(f[5])} (${f[6]})` : "");
        li.append(a, " " + f[7]);
        return li;
      });
      ol.append(...items);
      more.remove();
    }
  });

  // For tests and the curious: the cells this page draws for a range.
  window.allocview = {
    data: D,
    views,
    async picture(slot, first, end, cols, maxCells) {
      const v = views.get(slot);
      await v.bytes;
      const g = geometry(first, end, cols, maxCells);
      const view = { first, end, ...g, cols };
      const cells = makeCells(v.area, first, end, g.n, g.origin, g.rows * cols);
      return { ...g, cells, text: cells.map((c) => (c.pages ? describe(view, c) : "")),
        classes: cells.map((c) => (c.pages ? cellClass(c) : "")) };
    },
    describe,
  };
})();
