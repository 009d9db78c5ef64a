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

  // items: [{latex, size, margin}]; options: KaTeX options chosen by the caller
  // (trust and output are forced here). Returns per-item {error} or the crop
  // box {sheet, x, y, w, h} (margin included), and the sheets' sizes.
  async function renderBatch(arg) {
    const root = stage();
    root.textContent = "";
    const opts = Object.assign({}, arg.options, { trust: false, output: "html", throwOnError: true });
    const n = arg.items.length;
    const hosts = new Array(n);
    const errors = new Array(n).fill(null);
    for (let i = 0; i < n; i++) {
      const item = arg.items[i];
      const host = document.createElement("div");
      host.className = "fg-host";
      host.style.fontSize = item.size + "px";
      try {
        katex.render(String(item.latex), host, opts);
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
    }
    const sheets = pack(boxes, arg.pageWidth, arg.sheetHeight);
    const out = new Array(n);
    for (let i = 0; i < n; i++) {
      if (errors[i] !== null) { out[i] = { error: errors[i] }; continue; }
      if (oversize[i] !== null) { out[i] = { oversize: oversize[i] }; continue; }
      const b = boxes[i], m = arg.items[i].margin;
      hosts[i].style.transform = `translate(${b.x + m}px, ${b.y + m}px)`;
      hosts[i].dataset.sheet = String(b.sheet);
      out[i] = { sheet: b.sheet, x: b.x, y: b.y, w: b.w, h: b.h };
    }
    showSheet(0);
    return { items: out, sheets: sheets.map((s) => ({ width: s.width, height: s.height })) };
  }

  // Show only the hosts of one sheet (all sheets share the top-left corner).
  function showSheet(k) {
    const want = String(k);
    for (const host of stage().children) host.classList.toggle("fg-hidden", host.dataset.sheet !== want);
    return stage().getBoundingClientRect().width;  // forces the style change before capture
  }

  window.formulaGan = { warmUp, renderBatch, showSheet };
})();
