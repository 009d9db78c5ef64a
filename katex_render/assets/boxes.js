// Per-symbol boxes for formula-gan: where each normalized token draws its ink.
//
// KaTeX's HTML carries no link back to the source, so the link is made with
// colour, which KaTeX passes through without changing the layout: \textcolor
// builds a DOM fragment (no box of its own; spacing, bin/rel classes, italic
// corrections and limits see through it). Which tokens each parse node stands for
// comes from normalize.js itself (serializer.js: its Serializer, tracking what it
// writes per node), so macros (\neq, \cdots) and commands (\frac, \left) are
// tied to their tokens exactly. Each node that draws ink of its own is wrapped in
// a colour that names its token, and the wrapped formula is rendered instead of
// the plain one. The page then reads every piece of ink of the rendered DOM (each
// character of a text node, each SVG shape, each border rule such as a fraction
// bar), its colour and its ink extent (the glyph outline's bounds from canvas
// measureText on the whole-pixel baseline the glyph is drawn on, SVG path bounds,
// border boxes), and unions the pieces per token. Finally a class paints
// everything black again: the captured image is the plain rendering's, pixel for
// pixel (2,998 of 3,000 im2latex formulas in random styles).
//
// Where a parent looks at a child, wrapping the child would change the layout, so
// the colour moves up: the base of a script (x_i, \sum with limits) takes its
// colour from a wrapper around the whole supsub; the delimiters of \left...\right
// take theirs from a wrapper around the pair and a \color switch just before
// \right (KaTeX colours \right by the current colour, as color.sty does); a run
// of plain symbols, the characters of \text and \operatorname (which KaTeX merges
// into one text run) and an accent over plain symbols (whose skew and width KaTeX
// takes from the base) get one colour, split per character when measured.
//
// Only names that this file makes (colours, a class) are added: the formula's own
// text is not changed, and trust stays false.
"use strict";
(function () {
  // Node types that draw ink of their own (besides what their children draw).
  const DRAWS = new Set(["mathord", "textord", "atom", "op", "op-token", "accent-token", "genfrac", "sqrt",
    "accent", "accentUnder", "horizBrace", "overline", "underline", "enclose", "leftright", "delimsizing",
    "middle", "array", "rule", "xArrow", "verb", "pmb", "htmlmathml"]);
  // One-token symbols: neighbours among them share a colour (see visitField).
  const SYMBOLS = new Set(["mathord", "textord", "atom"]);
  // Node types whose characters KaTeX merges into one text run: one colour, split per character.
  const RUNS = new Set(["text", "operatorname"]);
  // Fields holding child nodes, in source order (normalized tokens put _ before ^).
  const CHILD_FIELDS = ["base", "index", "numer", "denom", "body", "below", "sub", "sup"];
  // A command whose own ink is the delimiter token that follows it.
  const DELIMITER_COMMAND = /^\\(left|right|middle|[bB]igg?[lrm]?)$/;
  // KaTeX's spaceAfterDots (macros.ts): before these, \cdots adds a thin space.
  const SPACE_AFTER_DOTS = new Set([")", "]", "\\rbrack", "\\}", "\\rbrace", "\\rangle", "\\rceil", "\\rfloor",
    "\\rgroup", "\\rmoustache", "\\right", "\\bigr", "\\biggr", "\\Bigr", "\\Biggr", "$", ";", ".", ","]);
  // KaTeX's classes whose elements draw a border (katex.min.css).
  const RULES = /\b(frac-line|rule|hline|hdashline|overline-line|underline-line|fbox|fcolorbox|sout|angl|vertical-separator)\b/;
  const ZERO_WIDTH = /[\s\u200b\u200c\u200d\u2060\ufeff]/;

  let canvas = null;
  const metricsCache = new Map(); // font + char -> glyph bounds

  function children(node) {
    const out = [];
    const add = (value) => {
      if (Array.isArray(value)) value.forEach(add);
      else if (value && typeof value === "object" && typeof value.type === "string") out.push(value);
    };
    for (const key of CHILD_FIELDS) if (key in node) add(node[key]);
    return out;
  }

  function colorName(k) { return "#" + (k + 1).toString(16).padStart(6, "0"); }

  // The colouring plan of one formula. latex: the exact string to render (the normalized
  // body, possibly inside a font command); tokens: the normalized tokens; starts: where
  // each begins in latex. Returns the coloured LaTeX and, per colour, its tokens.
  function plan(latex, tokens, starts, options) {
    const n = tokens.length;
    if (!n) throw new Error("no tokens");
    const ends = starts.map((s, i) => s + tokens[i].length);
    const bodyStart = starts[0], bodyEnd = ends[n - 1];
    const body = latex.slice(bodyStart, bodyEnd);
    const {tree, tokens: written} = formulaGanSerializer.track(body);
    if (written.length !== n || written.some((t, i) => t !== tokens[i])) {
      throw new Error("the tokens are not in normalized form");
    }
    const wraps = []; // [start char, end char, depth, colour]
    const switches = []; // [char, colour]: \color before a \right
    const groups = []; // colour -> its tokens
    const wrapped = new Set();
    const newColor = (toks) => { groups.push(toks); return groups.length - 1; };
    const headOf = (node, range) => {
      const [a, b] = range;
      if (b <= a) return -1;
      if (DELIMITER_COMMAND.test(tokens[a])) return a + 1 < b ? a + 1 : -1;
      return a;
    };
    const wrap = (range, toks, depth) => {
      const [a, b] = range;
      if (b <= a || wrapped.has(a + ":" + b)) return;
      wrapped.add(a + ":" + b);
      // \cdots looks at the token after it and adds a thin space before a closing one;
      // inside a wrapper it would see the closing brace: the space is written out.
      const space = tokens[b - 1] === "\\cdots" && b < n && SPACE_AFTER_DOTS.has(tokens[b]) ? "\\," : "";
      wraps.push([starts[a] - bodyStart, ends[b - 1] - bodyStart, depth, newColor(toks), space]);
    };
    const symbolsOnly = (node) => {
      // the one-token symbols a base consists of ([] when it holds anything else)
      const list = node.type === "ordgroup" ? node.body : [node];
      return list.every((x) => SYMBOLS.has(x.type) && x.fgRange && x.fgRange[1] === x.fgRange[0] + 1)
        ? list.map((x) => x.fgRange[0]) : [];
    };
    const runTokens = (node) => {
      const out = [];
      const walk = (x) => {
        if ((x.type === "textord" || x.type === "mathord") && x.fgRange) out.push(x.fgRange[0]);
        else children(x).forEach(walk);
      };
      children(node).forEach(walk);
      return out;
    };
    // The tokens of a node's own colour, and whether it is a unit (one colour for all of
    // its ink, nothing wrapped inside): text, \operatorname and \mathop, whose characters
    // KaTeX merges into one run, and an accent over plain symbols (KaTeX looks into the
    // base for its skew and its width). A unit's ink is split per character (measure).
    const own = (node, range) => {
      if (RUNS.has(node.type)) return { toks: runTokens(node), unit: true };
      if (node.type === "op" && !node.symbol && node.body) return { toks: [range[0]], unit: true };
      const head = DRAWS.has(node.type) ? headOf(node, range) : -1;
      if (head < 0) return { toks: null, unit: false };
      if ((node.type === "accent" || node.type === "accentUnder") && node.base) {
        const base = symbolsOnly(node.base);
        if (base.length) {
          const toks = [head, ...base];
          toks.accent = true;
          return { toks, unit: true };
        }
      }
      return { toks: [head], unit: false };
    };
    // range: the node's own, or (a node the serializer wrote through its parent, such as
    // the fraction of \dfrac or the array of pmatrix) its parent's.
    const visit = (node, depth, wrapSelf, inherited, runs = true) => {
      const range = node.fgRange || inherited;
      if (!range) { // a node the serializer looked through (a braced argument, an array cell)
        for (const key of CHILD_FIELDS) if (key in node) visitField(node[key], depth + 1, runs);
        return;
      }
      if (node.type === "supsub" && node.base) {
        // A script's base is never wrapped (its parent looks at its type): the colour of
        // the base's own ink goes around the whole supsub instead.
        const baseRange = node.base.fgRange || range;
        const base = own(node.base, baseRange);
        if (wrapSelf && base.toks) wrap(range, base.toks, depth);
        visit(node.base, depth + 1, !base.toks, baseRange);
        for (const c of [node.sub, node.sup]) if (c) visit(c, depth + 1, true, null);
        return;
      }
      const mine = own(node, range);
      if (wrapSelf && mine.toks && mine.toks.length) wrap(range, mine.toks, depth);
      if (mine.unit) return;
      if (node.type === "leftright") {
        const b = range[1];
        if (b - 2 >= range[0] && tokens[b - 2] === "\\right") {
          switches.push([starts[b - 2] - bodyStart, newColor([b - 1])]);
        }
      }
      // An accent's base keeps one node per symbol: a stretchy accent counts them.
      const inner = runs && !/^accent/.test(node.type);
      const kids = children(node);
      if (kids.length === 1) visit(kids[0], depth + 1, true, range, inner);
      else for (const key of CHILD_FIELDS) if (key in node) visitField(node[key], depth + 1, inner);
    };
    // A list of siblings: each run of plain symbols gets one colour (KaTeX merges
    // neighbours of one font into one text run, unless their colours differ).
    const visitField = (value, depth, runs = true) => {
      if (!Array.isArray(value)) {
        if (value && typeof value === "object" && typeof value.type === "string") visit(value, depth, true, null);
        return;
      }
      let run = [];
      const flush = () => {
        if (run.length === 1 || (!runs && run.length)) run.forEach((x) => visit(x, depth, true, null));
        else if (run.length) wrap([run[0].fgRange[0], run[run.length - 1].fgRange[1]], run.map((x) => x.fgRange[0]), depth);
        run = [];
      };
      for (const item of value) {
        if (Array.isArray(item)) { flush(); visitField(item, depth); continue; }
        if (item && SYMBOLS.has(item.type) && item.fgRange && item.fgRange[1] === item.fgRange[0] + 1) run.push(item);
        else { flush(); if (item && typeof item.type === "string") visit(item, depth, true, null); }
      }
      flush();
    };
    visitField(tree, 0);
    // Insert: at one position closes come before opens, inner closes first, outer opens first.
    const inserts = [];
    for (const [s, e, depth, color, space] of wraps) {
      inserts.push([s, 1, depth, `\\textcolor{${colorName(color)}}{`]);
      inserts.push([e, 0, -depth, space + "}"]);
    }
    for (const [s, color] of switches) inserts.push([s, 2, 0, `\\color{${colorName(color)}}`]);
    inserts.sort((x, y) => x[0] - y[0] || x[1] - y[1] || x[2] - y[2]);
    let out = "", at = 0;
    for (const [pos, , , text] of inserts) { out += body.slice(at, pos) + text; at = pos; }
    out += body.slice(at);
    return { latex: latex.slice(0, bodyStart) + out + latex.slice(bodyEnd), groups };
  }

  // ---- reading the ink of a rendered formula -------------------------------------------
  function colorIndex(css) {
    const m = /^rgba?\((\d+),\s*(\d+),\s*(\d+)(?:,\s*([\d.]+))?\)$/.exec(css);
    if (!m || (m[4] !== undefined && Number(m[4]) === 0)) return -1;
    return ((Number(m[1]) << 16) | (Number(m[2]) << 8) | Number(m[3])) - 1;
  }

  function textMetrics(font, ch) {
    const key = font + "\u0000" + ch;
    let m = metricsCache.get(key);
    if (m === undefined) {
      if (canvas === null) canvas = document.createElement("canvas").getContext("2d");
      canvas.font = font;
      const t = canvas.measureText(ch);
      m = [t.actualBoundingBoxLeft, t.actualBoundingBoxRight, t.actualBoundingBoxAscent,
        t.actualBoundingBoxDescent, t.fontBoundingBoxAscent];
      metricsCache.set(key, m);
    }
    return m;
  }

  function clipOf(el, host) {
    // The visible region of an element: the intersection of the rects of the
    // ancestors that hide overflow (KaTeX clips the 400em tail of a root sign).
    let clip = [-Infinity, -Infinity, Infinity, Infinity];
    for (let a = el; a && a !== host; a = a.parentElement) {
      const cs = getComputedStyle(a);
      if (a === el || cs.overflowX !== "visible" || cs.overflowY !== "visible") {
        const r = a.getBoundingClientRect();
        clip = [Math.max(clip[0], r.left), Math.max(clip[1], r.top), Math.min(clip[2], r.right), Math.min(clip[3], r.bottom)];
      }
    }
    return clip;
  }

  function svgPieces(svg, host, add) {
    const color = colorIndex(getComputedStyle(svg).color);
    const clip = clipOf(svg, host);
    for (const shape of svg.querySelectorAll("path, line, rect, polyline, polygon")) {
      const bb = shape.getBBox();
      const m = shape.getScreenCTM();
      if (!m) continue;
      const pts = [[bb.x, bb.y], [bb.x + bb.width, bb.y], [bb.x, bb.y + bb.height], [bb.x + bb.width, bb.y + bb.height]]
        .map(([x, y]) => [m.a * x + m.c * y + m.e, m.b * x + m.d * y + m.f]);
      const stroke = parseFloat(getComputedStyle(shape).strokeWidth) || 0;
      const grow = getComputedStyle(shape).stroke === "none" ? 0 : stroke * Math.hypot(m.a, m.b) / 2;
      const box = [Math.min(...pts.map((p) => p[0])) - grow, Math.min(...pts.map((p) => p[1])) - grow,
        Math.max(...pts.map((p) => p[0])) + grow, Math.max(...pts.map((p) => p[1])) + grow];
      const cut = [Math.max(box[0], clip[0]), Math.max(box[1], clip[1]), Math.min(box[2], clip[2]), Math.min(box[3], clip[3])];
      if (cut[2] > cut[0] && cut[3] > cut[1]) add(color, cut, 0, true);
    }
  }

  // Every piece of ink below host: add(colour index, [x0, y0, x1, y1] in page px, characters,
  // whether it is an accent mark (an SVG, or a character of KaTeX's accent-body)).
  function inkPieces(host, add) {
    const range = document.createRange();
    const walk = (el) => {
      for (const child of el.childNodes) {
        if (child.nodeType === Node.TEXT_NODE) {
          const text = child.data;
          if (!text) continue;
          const cs = getComputedStyle(el);
          const color = colorIndex(cs.color);
          const font = `${cs.fontStyle} ${cs.fontWeight} ${cs.fontSize} ${cs.fontFamily}`;
          const accent = el.closest(".accent-body") !== null;
          let offset = 0;
          for (const ch of text) {
            const len = ch.length;
            if (!ZERO_WIDTH.test(ch)) {
              range.setStart(child, offset);
              range.setEnd(child, offset + len);
              const r = range.getBoundingClientRect();
              const [left, right, ascent, descent, fontAscent] = textMetrics(font, ch);
              const baseline = Math.round(r.top + fontAscent); // glyphs are drawn on whole-pixel baselines
              if (left + right > 0 && ascent + descent > 0) {
                add(color, [r.left - left, baseline - ascent, r.left + right, baseline + descent], 1, accent);
              }
            }
            offset += len;
          }
        } else if (child.nodeType === Node.ELEMENT_NODE) {
          if (child.namespaceURI === "http://www.w3.org/2000/svg") {
            if (child.tagName.toLowerCase() === "svg") svgPieces(child, host, add);
            continue;
          }
          // Only KaTeX's rules draw with borders (fraction bars, over/underlines, \\rule,
          // boxes, array separators): other elements are not asked for their style.
          if (!RULES.test(child.className) && !(child.getAttribute("style") || "").includes("border")) {
            walk(child);
            continue;
          }
          const cs = getComputedStyle(child);
          const sides = [["Top", cs.borderTopWidth], ["Bottom", cs.borderBottomWidth], ["Left", cs.borderLeftWidth], ["Right", cs.borderRightWidth]];
          const side = sides.find(([s, w]) => parseFloat(w) > 0 && cs[`border${s}Style`] !== "none");
          if (side) {
            const r = child.getBoundingClientRect();
            // borders are painted snapped to whole pixels
            const snapped = [Math.round(r.left), Math.round(r.top), Math.round(r.right), Math.round(r.bottom)];
            if (snapped[3] === snapped[1]) snapped[3]++; // a hairline still paints one row
            if (r.width > 0 && r.height > 0) add(colorIndex(cs[`border${side[0]}Color`]), snapped, 0, true);
          }
          walk(child);
        }
      }
    };
    walk(host);
  }

  // Boxes of one rendered formula: [[token, x0, y0, x1, y1], ...] in page px (sorted by
  // token), or throws with the reason.
  function measure(host, groups, tokens) {
    const byColor = new Map();
    let stray = 0;
    inkPieces(host, (color, box, chars, mark) => {
      if (color < 0 || color >= groups.length) { stray++; return; }
      if (!byColor.has(color)) byColor.set(color, []);
      byColor.get(color).push([box, chars, mark]);
    });
    if (stray) throw new Error(`${stray} piece(s) of ink belong to no token`);
    const boxes = new Map();
    const put = (token, box) => {
      const old = boxes.get(token);
      boxes.set(token, old ? [Math.min(old[0], box[0]), Math.min(old[1], box[1]), Math.max(old[2], box[2]), Math.max(old[3], box[3])] : box.slice());
    };
    for (const [color, pieces] of byColor) {
      let toks = groups[color];
      if (toks.length === 1) { for (const [box] of pieces) put(toks[0], box); continue; }
      let chars = pieces;
      if (toks.accent) { // the marks are the accent's, the characters its base's
        for (const [box, , mark] of pieces) if (mark) put(toks[0], box);
        chars = pieces.filter(([, , mark]) => !mark);
        toks = toks.slice(1);
      }
      if (chars.length !== toks.length || chars.some(([, c]) => c !== 1)) {
        throw new Error(`${chars.length} piece(s) of ink for the ${toks.length} symbols ${toks.map((t) => tokens[t]).join(" ")}`);
      }
      chars.forEach(([box], i) => put(toks[i], box));
    }
    return [...boxes.entries()].sort((a, b) => a[0] - b[0]).map(([t, b]) => [t, ...b]);
  }

  window.formulaGanBoxes = { plan, measure };
})();
