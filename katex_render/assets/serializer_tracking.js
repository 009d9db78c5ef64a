// Appended by the renderer inside the closure that loads normalize.js into the page
// (katex_render/boxes.py, page_scripts): Serializer and buildTables are normalize.js's own.
//
// A Serializer that records, on every parse node it writes, the range [start, end) of
// the tokens it wrote for it. Serializing the parse tree of a normalized formula gives
// back its tokens, so the ranges say exactly which tokens each node stands for: that
// is how boxes.js ties KaTeX's output to token indices. The base of a script is
// written by an inner serializer (n_supsub's `new Serializer()` is normalize.js's own
// class): it is written once more here, tracked, and its ranges shifted to where its
// tokens landed.
class Tracking extends Serializer {
    constructor() {
        super();
        this.nodes = []; // nodes this serializer gave a range (those of script bases too)
    }

    node(n) {
        if (n == null) return;
        const start = this.out.length;
        super.node(n);
        if (n.type === "supsub" && n.base) {
            const inner = new Tracking();
            inner.inText = this.inText;
            inner.node(n.base);
            const braced = inner.out.some((t, k) => this.out[start + k] !== t) ? 1 : 0;
            for (const m of inner.nodes) {
                m.fgRange = [m.fgRange[0] + start + braced, m.fgRange[1] + start + braced];
                this.nodes.push(m);
            }
        }
        n.fgRange = [start, this.out.length];
        this.nodes.push(n);
    }
}

let tablesBuilt = false;

// Parse and serialize a normalized formula: its parse tree, every node with fgRange,
// and the tokens written (equal to the input's when it is normalized).
function track(latex) {
    if (!tablesBuilt) {
        buildTables();
        tablesBuilt = true;
    }
    const tree = katex.__parse(latex, settings());
    const s = new Tracking();
    s.list(tree);
    return {tree, tokens: s.out};
}

return {track};
