// Batched KaTeX rendering for formula-gan.
//
// The Python side calls these functions through page.evaluate(fn, arg): formulas
// arrive as JSON data and are handed to katex.render as strings; nothing from a
// formula is ever spliced into script text or HTML. KaTeX runs with trust: false
// (no \href, \url, \htmlId, \includegraphics, ...) and the caller's strict mode.
"use strict";
(function () {
  const stage = () => document.getElementById("stage");

  // Load every KaTeX font face once, so that no later batch is measured or
  // captured while a face is still loading.
  async function warmUp() {
    const faces = [];
    document.fonts.forEach((f) => faces.push(f.load().catch(() => null)));
    await Promise.all(faces);
    await document.fonts.ready;
    return { faces: faces.length, katex: katex.version };
  }

  // Shelf packing: tallest first, left to right, new shelf when the row is
  // full, new sheet when the sheet is full. A box that does not fit an empty
  // sheet gets a sheet of its own (the caller captures it with its own size).
  function pack(boxes, pageWidth, sheetHeight) {
    const order = boxes.map((b, i) => i).filter((i) => boxes[i] !== null);
    order.sort((a, b) => boxes[b].h - boxes[a].h || a - b);
    const sheets = [];
    let sheet = null, x = 0, y = 0, shelfH = 0;
    const newSheet = (w, h) => { sheet = { width: w, height: 0, items: [] }; sheets.push(sheet); x = 0; y = 0; shelfH = 0; };
    for (const i of order) {
      const b = boxes[i];
      if (b.w > pageWidth || b.h > sheetHeight) {  // oversize: alone on its own sheet
        const own = { width: b.w, height: b.h, items: [i] };
        sheets.push(own);
        b.sheet = sheets.length - 1; b.x = 0; b.y = 0;
        sheet = null;
        continue;
      }
      if (sheet === null) newSheet(pageWidth);
      if (x + b.w > pageWidth) { y += shelfH; x = 0; shelfH = 0; }
      if (y + b.h > sheetHeight) newSheet(pageWidth);
      b.sheet = sheets.length - 1; b.x = x; b.y = y;
      sheet.items.push(i);
      x += b.w; shelfH = Math.max(shelfH, b.h);
      sheet.height = Math.max(sheet.height, y + b.h);
    }
    return sheets;
  }

  // items: [{latex, size, margin, tokens?, starts?}]; options: KaTeX options chosen by
  // the caller (trust and output are forced here). Returns per-item {error} or the crop
  // box {sheet, x, y, w, h} (margin included), and the sheets' sizes. An item with
  // tokens (and where each starts in latex) also gets {boxes: "token x0 y0 x1 y1,..."}
  // in sheet px, or {boxesError} (boxes.js); arg.capture false lays out and measures
  // only (no sheets: sheet -1, boxes relative to the formula's own box).
  async function renderBatch(arg) {
    const root = stage();
    root.textContent = "";
    const opts = Object.assign({}, arg.options, { trust: false, output: "html", throwOnError: true });
    const n = arg.items.length;
    const hosts = new Array(n);
    const errors = new Array(n).fill(null);
    const plans = new Array(n).fill(null);
    const symbols = new Array(n).fill(null);  // per item: its boxes, or why it has none
    for (let i = 0; i < n; i++) {
      const item = arg.items[i];
      const host = document.createElement("div");
      host.className = "fg-host";
      host.style.fontSize = item.size + "px";
      try {
        let latex = String(item.latex);
        if (item.tokens) {
          try {
            plans[i] = formulaGanBoxes.plan(latex, item.tokens, item.starts, opts);
            latex = plans[i].latex;
          } catch (e) {  // no boxes: the formula is still rendered, plain
            symbols[i] = String((e && e.message) || e);
          }
        }
        katex.render(latex, host, opts);
        root.appendChild(host);
        hosts[i] = host;
      } catch (e) {
        errors[i] = String((e && e.message) || e);
      }
    }
    await document.fonts.ready;  // a face first used by this batch
    // One layout pass: read every box before writing any position. A box over the
    // caller's size caps is refused here, before anything is captured (its pixels
    // would cost far more memory than the whole rest of the batch).
    const boxes = new Array(n).fill(null);
    const oversize = new Array(n).fill(null);
    for (let i = 0; i < n; i++) {
      if (!hosts[i]) continue;
      const r = hosts[i].getBoundingClientRect();
      const w = Math.ceil(r.width), h = Math.ceil(r.height);
      if (w > arg.maxSide || h > arg.maxSide || w * h > arg.maxPixels) {
        oversize[i] = [w, h];
        hosts[i].remove();
        continue;
      }
      const m = arg.items[i].margin;
      boxes[i] = { w: w + 2 * m, h: h + 2 * m };
      if (plans[i]) symbols[i] = measureSymbols(hosts[i], plans[i], arg.items[i].tokens, r);
    }
    // Measured: paint the coloured formulas black again (after all reads: no relayout per host),
    // so that their images are the plain renderings'.
    plans.forEach((p, i) => { if (p && hosts[i]) hosts[i].classList.add("fg-black"); });
    if (arg.capture === false) {
      const out = boxes.map((b, i) => errors[i] !== null ? { error: errors[i] }
        : oversize[i] !== null ? { oversize: oversize[i] }
        : withSymbols({ sheet: -1, x: 0, y: 0, w: b.w, h: b.h }, symbols[i], 0, 0));
      root.textContent = "";
      return { items: out, sheets: [] };
    }
    const sheets = pack(boxes, arg.pageWidth, arg.sheetHeight);
    const out = new Array(n);
    for (let i = 0; i < n; i++) {
      if (errors[i] !== null) { out[i] = { error: errors[i] }; continue; }
      if (oversize[i] !== null) { out[i] = { oversize: oversize[i] }; continue; }
      const b = boxes[i], m = arg.items[i].margin;
      hosts[i].style.transform = `translate(${b.x + m}px, ${b.y + m}px)`;
      hosts[i].dataset.sheet = String(b.sheet);
      out[i] = withSymbols({ sheet: b.sheet, x: b.x, y: b.y, w: b.w, h: b.h }, symbols[i], b.x + m, b.y + m);
    }
    showSheet(0);
    return { items: out, sheets: sheets.map((s) => ({ width: s.width, height: s.height })) };
  }

  // The boxes of one formula relative to its host's corner r, or the reason there are none.
  function measureSymbols(host, plan, tokens, r) {
    try {
      return formulaGanBoxes.measure(host, plan.groups, tokens)
        .map(([t, x0, y0, x1, y1]) => [t, x0 - r.left, y0 - r.top, x1 - r.left, y1 - r.top]);
    } catch (e) {
      return String((e && e.message) || e);
    }
  }

  // Per-symbol boxes (or why there are none), moved to where the formula sits on its
  // sheet. They travel as one string "t x0 y0 x1 y1,..." (1/100 px): Playwright sends
  // an array as one object per number, several times slower than the text.
  function withSymbols(item, symbols, dx, dy) {
    if (typeof symbols === "string") item.boxesError = symbols;
    else if (symbols) {
      item.boxes = symbols.map(([t, x0, y0, x1, y1]) =>
        `${t} ${(x0 + dx).toFixed(2)} ${(y0 + dy).toFixed(2)} ${(x1 + dx).toFixed(2)} ${(y1 + dy).toFixed(2)}`).join(",");
    }
    return item;
  }

  // Show only the hosts of one sheet (all sheets share the top-left corner).
  function showSheet(k) {
    const want = String(k);
    for (const host of stage().children) host.classList.toggle("fg-hidden", host.dataset.sheet !== want);
    return stage().getBoundingClientRect().width;  // forces the style change before capture
  }

  window.formulaGan = { warmUp, renderBatch, showSheet };
})();
