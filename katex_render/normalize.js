#!/usr/bin/env node
// Normalizes LaTeX formulas with KaTeX's own parser.
//
// Protocol: one JSON object per line on stdin, {"id": any, "latex": string};
// one JSON object per line on stdout, in the same order:
//   {"id": ..., "tokens": ["\\frac", "{", "1", "}", ...]}   accepted
//   {"id": ..., "error": "KaTeX parse error: ..."}           rejected, with the reason
// The process is long-lived: the Python side (katex_render/normalize.py) keeps one
// running and streams batches through it. Each result is written as soon as it is
// known, so a formula that hangs can be told apart from the ones before it.
//
// Canonical token conventions (see datasets/README.md):
//  * every argument and every script is braced: \frac { 1 } { 2 }, x _ { i } ^ { 2 }
//    (subscript before superscript), \sqrt [ 3 ] { x }, \hat { x };
//  * spacing (\, \; \: \! \quad \qquad ~ \  \hspace \kern \mskip ...), sizing
//    (\tiny ... \Huge), colour, \phantom and \smash are removed: they change
//    where ink goes, never which symbols are written;
//  * one spelling per symbol: \le -> \leq, \lt -> <, \to -> \rightarrow,
//    \lbrace -> \{, \dots -> \ldots or \cdots (as amsmath decides), \ne -> \neq,
//    \not = -> \neq, \not \in -> \notin, {1 \over 2} -> \frac { 1 } { 2 } ...;
//  * text is \text { c h a r s } (or \textbf, \textit, ...) with one token per
//    character and the spaces removed, like every other spacing (KaTeX draws the
//    separating spaces inside text: render with normalize.py's tokens_to_latex,
//    which writes \text {chars});
//  * environments are single tokens: \begin{pmatrix} a & b \\ c & d \end{pmatrix};
//    \left( \begin{matrix} .. \end{matrix} \right) becomes pmatrix, which it is.
// The result is verified: the tokens joined by spaces are parsed again and must
// give the same tokens (otherwise the formula is rejected, never mis-normalized).
"use strict";

const path = require("path");
const katex = require(path.join(__dirname, "node_modules", "katex"));

function argValue(name, fallback) {
    const i = process.argv.indexOf(name);
    return i >= 0 && i + 1 < process.argv.length ? Number(process.argv[i + 1]) : fallback;
}

// Long inputs are refused before parsing: KaTeX is linear in the length, but the
// corpora hold formulas of a few hundred characters and anything far longer is
// a broken line (a whole paragraph, binary junk).
const MAX_CHARS = argValue("--max-chars", 4000);
// A \def loop or a macro bomb stops at this many expansions. Ordinary formulas
// use a few (\neq, \cdots, \dfrac are macros); the corpora never need 1,000.
const MAX_EXPAND = argValue("--max-expand", 1000);
// A few expansions of a long macro can still multiply the output (\def\a{<1,000
// symbols>} used 900 times); the longest real formulas have a few hundred tokens.
const MAX_OUTPUT_TOKENS = argValue("--max-output-tokens", 20000);

// Set only so that an unsupported or untrusted command (\href, \url,
// \includegraphics, \htmlId ... with trust: false) can be recognized: KaTeX
// renders those as red text instead of failing.
const ERROR_COLOR = "#cc0000";

function settings() {
    // A fresh object per formula: KaTeX writes \gdef and \global definitions into
    // `macros`, and one formula must never change how the next one parses.
    return {
        displayMode: false,
        throwOnError: true,
        strict: "ignore",
        trust: false,
        maxSize: 50,
        maxExpand: MAX_EXPAND,
        errorColor: ERROR_COLOR,
        // \mbox is what CROHME labels and older im2latex corpora write for \text.
        macros: {"\\mbox": "\\text"},
    };
}

// Synonyms among KaTeX's math symbols (same glyph, same font, same atom class),
// generated from katex/src/symbols.ts of the pinned version: each maps to one
// spelling. Unicode characters map to their command (≤ -> \leq).
const SYNONYMS = {
    "\\Box": "\\square", "\\Doteq": "\\doteqdot", "\\Join": "\\bowtie", "\\Vert": "\\|",
    "\\ast": "*", "\\doublecap": "\\Cap", "\\doublecup": "\\Cup", "\\ge": "\\geq",
    "\\gets": "\\leftarrow", "\\gggtr": "\\ggg", "\\gt": ">", "\\intop": "\\int",
    "\\land": "\\wedge", "\\lbrace": "\\{", "\\lbrack": "[", "\\le": "\\leq",
    "\\leadsto": "\\rightsquigarrow", "\\llless": "\\lll", "\\lnot": "\\neg", "\\lor": "\\vee",
    "\\lozenge": "\\Diamond", "\\lparen": "(", "\\lt": "<", "\\mathellipsis": "\\ldots",
    "\\mathsterling": "\\pounds", "\\owns": "\\ni", "\\rbrace": "\\}", "\\rbrack": "]",
    "\\restriction": "\\upharpoonright", "\\rparen": ")", "\\to": "\\rightarrow", "\\vert": "|",
    // KaTeX-internal names that user input reaches only through macros.
    "\\@cdots": "\\cdots",
    "\\@imath": "\\imath",
    "\\@jmath": "\\jmath",
};
// Unicode input characters that KaTeX reads as a command's symbol (α -> \alpha,
// ≤ -> \leq), from the same table.
const UNICODE_SYNONYMS = new Map(Object.entries({
    "£": "\\pounds", "¥": "\\yen", "§": "\\S", "¬": "\\neg", "°": "\\degree", "±": "\\pm", "¶": "\\P",
    "·": "\\cdotp", "×": "\\times", "ð": "\\eth", "÷": "\\div", "Γ": "\\Gamma", "Δ": "\\Delta",
    "Θ": "\\Theta", "Λ": "\\Lambda", "Ξ": "\\Xi", "Π": "\\Pi", "Σ": "\\Sigma", "Υ": "\\Upsilon",
    "Φ": "\\Phi", "Ψ": "\\Psi", "Ω": "\\Omega", "α": "\\alpha", "β": "\\beta", "γ": "\\gamma",
    "δ": "\\delta", "ε": "\\varepsilon", "ζ": "\\zeta", "η": "\\eta", "θ": "\\theta", "ι": "\\iota",
    "κ": "\\kappa", "λ": "\\lambda", "μ": "\\mu", "ν": "\\nu", "ξ": "\\xi", "ο": "\\omicron",
    "π": "\\pi", "ρ": "\\rho", "ς": "\\varsigma", "σ": "\\sigma", "τ": "\\tau", "υ": "\\upsilon",
    "φ": "\\varphi", "χ": "\\chi", "ψ": "\\psi", "ω": "\\omega", "ϑ": "\\vartheta", "ϕ": "\\phi",
    "ϖ": "\\varpi", "ϝ": "\\digamma", "ϱ": "\\varrho", "ϵ": "\\epsilon", "…": "\\ldots", "ℏ": "\\hbar",
    "ℑ": "\\Im", "ℓ": "\\ell", "℘": "\\wp", "ℜ": "\\Re", "Ⅎ": "\\Finv", "ℵ": "\\aleph", "ℶ": "\\beth",
    "ℷ": "\\gimel", "ℸ": "\\daleth", "⅁": "\\Game", "←": "\\leftarrow", "↑": "\\uparrow",
    "→": "\\rightarrow", "↓": "\\downarrow", "↔": "\\leftrightarrow", "↕": "\\updownarrow",
    "↖": "\\nwarrow", "↗": "\\nearrow", "↘": "\\searrow", "↙": "\\swarrow", "↚": "\\nleftarrow",
    "↛": "\\nrightarrow", "↞": "\\twoheadleftarrow", "↠": "\\twoheadrightarrow",
    "↢": "\\leftarrowtail", "↣": "\\rightarrowtail", "↦": "\\mapsto", "↩": "\\hookleftarrow",
    "↪": "\\hookrightarrow", "↫": "\\looparrowleft", "↬": "\\looparrowright",
    "↭": "\\leftrightsquigarrow", "↮": "\\nleftrightarrow", "↰": "\\Lsh", "↱": "\\Rsh",
    "↶": "\\curvearrowleft", "↷": "\\curvearrowright", "↺": "\\circlearrowleft",
    "↻": "\\circlearrowright", "↼": "\\leftharpoonup", "↽": "\\leftharpoondown",
    "↾": "\\upharpoonright", "↿": "\\upharpoonleft", "⇀": "\\rightharpoonup",
    "⇁": "\\rightharpoondown", "⇂": "\\downharpoonright", "⇃": "\\downharpoonleft",
    "⇄": "\\rightleftarrows", "⇆": "\\leftrightarrows", "⇇": "\\leftleftarrows", "⇈": "\\upuparrows",
    "⇉": "\\rightrightarrows", "⇊": "\\downdownarrows", "⇋": "\\leftrightharpoons",
    "⇌": "\\rightleftharpoons", "⇍": "\\nLeftarrow", "⇎": "\\nLeftrightarrow", "⇏": "\\nRightarrow",
    "⇐": "\\Leftarrow", "⇑": "\\Uparrow", "⇒": "\\Rightarrow", "⇓": "\\Downarrow",
    "⇔": "\\Leftrightarrow", "⇕": "\\Updownarrow", "⇚": "\\Lleftarrow", "⇛": "\\Rrightarrow",
    "⇝": "\\rightsquigarrow", "⇠": "\\dashleftarrow", "⇢": "\\dashrightarrow", "∀": "\\forall",
    "∁": "\\complement", "∂": "\\partial", "∃": "\\exists", "∇": "\\nabla", "∈": "\\in", "∋": "\\ni",
    "−": "-", "∓": "\\mp", "∔": "\\dotplus", "∖": "\\setminus", "∗": "*", "∘": "\\circ",
    "∙": "\\bullet", "∝": "\\propto", "∞": "\\infty", "∠": "\\angle", "∡": "\\measuredangle",
    "∢": "\\sphericalangle", "∣": "\\mid", "∤": "\\nmid", "∦": "\\nparallel", "∧": "\\wedge",
    "∨": "\\vee", "∩": "\\cap", "∪": "\\cup", "∴": "\\therefore", "∵": "\\because", "∼": "\\sim",
    "∽": "\\backsim", "≀": "\\wr", "≁": "\\nsim", "≂": "\\eqsim", "≃": "\\simeq", "≅": "\\cong",
    "≆": "\\ncong", "≈": "\\approx", "≊": "\\approxeq", "≍": "\\asymp", "≎": "\\Bumpeq",
    "≏": "\\bumpeq", "≐": "\\doteq", "≑": "\\doteqdot", "≒": "\\fallingdotseq", "≓": "\\risingdotseq",
    "≖": "\\eqcirc", "≗": "\\circeq", "≜": "\\triangleq", "≡": "\\equiv", "≤": "\\leq", "≥": "\\geq",
    "≦": "\\leqq", "≧": "\\geqq", "≨": "\\lneqq", "≩": "\\gneqq", "≪": "\\ll", "≫": "\\gg",
    "≬": "\\between", "≮": "\\nless", "≯": "\\ngtr", "≰": "\\nleq", "≱": "\\ngeq", "≲": "\\lesssim",
    "≳": "\\gtrsim", "≶": "\\lessgtr", "≷": "\\gtrless", "≺": "\\prec", "≻": "\\succ",
    "≼": "\\preccurlyeq", "≽": "\\succcurlyeq", "≾": "\\precsim", "≿": "\\succsim", "⊀": "\\nprec",
    "⊁": "\\nsucc", "⊂": "\\subset", "⊃": "\\supset", "⊆": "\\subseteq", "⊇": "\\supseteq",
    "⊈": "\\nsubseteq", "⊉": "\\nsupseteq", "⊊": "\\subsetneq", "⊋": "\\supsetneq", "⊎": "\\uplus",
    "⊏": "\\sqsubset", "⊐": "\\sqsupset", "⊑": "\\sqsubseteq", "⊒": "\\sqsupseteq", "⊓": "\\sqcap",
    "⊔": "\\sqcup", "⊕": "\\oplus", "⊖": "\\ominus", "⊗": "\\otimes", "⊘": "\\oslash", "⊙": "\\odot",
    "⊚": "\\circledcirc", "⊛": "\\circledast", "⊝": "\\circleddash", "⊞": "\\boxplus",
    "⊟": "\\boxminus", "⊠": "\\boxtimes", "⊡": "\\boxdot", "⊢": "\\vdash", "⊣": "\\dashv",
    "⊨": "\\vDash", "⊩": "\\Vdash", "⊪": "\\Vvdash", "⊬": "\\nvdash", "⊭": "\\nvDash", "⊮": "\\nVdash",
    "⊯": "\\nVDash", "⊶": "\\origof", "⊷": "\\imageof", "⊸": "\\multimap", "⊺": "\\intercal",
    "⊻": "\\veebar", "⊼": "\\barwedge", "⋅": "\\cdot", "⋇": "\\divideontimes", "⋈": "\\bowtie",
    "⋉": "\\ltimes", "⋊": "\\rtimes", "⋋": "\\leftthreetimes", "⋌": "\\rightthreetimes",
    "⋍": "\\backsimeq", "⋎": "\\curlyvee", "⋏": "\\curlywedge", "⋐": "\\Subset", "⋑": "\\Supset",
    "⋒": "\\Cap", "⋓": "\\Cup", "⋔": "\\pitchfork", "⋘": "\\lll", "⋙": "\\ggg", "⋚": "\\lesseqgtr",
    "⋛": "\\gtreqless", "⋞": "\\curlyeqprec", "⋟": "\\curlyeqsucc", "⋠": "\\npreceq", "⋡": "\\nsucceq",
    "⋦": "\\lnsim", "⋧": "\\gnsim", "⋨": "\\precnsim", "⋩": "\\succnsim", "⋬": "\\ntrianglelefteq",
    "⋭": "\\ntrianglerighteq", "⋱": "\\ddots", "⌈": "\\lceil", "⌉": "\\rceil", "⌊": "\\lfloor",
    "⌋": "\\rfloor", "⌢": "\\frown", "⌣": "\\smile", "⎰": "\\lmoustache", "⎱": "\\rmoustache",
    "◯": "\\bigcirc", "♠": "\\spadesuit", "♡": "\\heartsuit", "♢": "\\diamondsuit", "♣": "\\clubsuit",
    "♭": "\\flat", "♮": "\\natural", "♯": "\\sharp", "✓": "\\checkmark", "⟨": "\\langle",
    "⟩": "\\rangle", "⟮": "\\lgroup", "⟯": "\\rgroup", "⟵": "\\longleftarrow", "⟶": "\\longrightarrow",
    "⟷": "\\longleftrightarrow", "⟸": "\\Longleftarrow", "⟹": "\\Longrightarrow",
    "⟺": "\\Longleftrightarrow", "⟼": "\\longmapsto", "⩞": "\\doublebarwedge", "⩽": "\\leqslant",
    "⩾": "\\geqslant", "⪅": "\\lessapprox", "⪆": "\\gtrapprox", "⪇": "\\lneq", "⪈": "\\gneq",
    "⪉": "\\lnapprox", "⪊": "\\gnapprox", "⪋": "\\lesseqqgtr", "⪌": "\\gtreqqless",
    "⪕": "\\eqslantless", "⪖": "\\eqslantgtr", "⪯": "\\preceq", "⪰": "\\succeq", "⪵": "\\precneqq",
    "⪶": "\\succneqq", "⪷": "\\precapprox", "⪸": "\\succapprox", "⪹": "\\precnapprox",
    "⪺": "\\succnapprox", "⫅": "\\subseteqq", "⫆": "\\supseteqq", "⫋": "\\subsetneqq",
    "⫌": "\\supsetneqq",
}));

// Macros that KaTeX implements as \html@mathml{<html>}{<mathml>} (all of them in
// katex/src/macros.ts of the pinned version; \ne is \neq): the parse tree holds
// both branches. Each is recognized by its MathML branch and written back as the
// command. Two macros with the same MathML branch are ambiguous and refused.
const HTML_MATHML_MACROS = [
    "\\textcopyright", "\\textregistered", "\\not", "\\neq", "\\notin",
    "\u2258", "\u2259", "\u225A", "\u225B", "\u225D", "\u225E", "\u225F",
    "\\ulcorner", "\\urcorner", "\\llcorner", "\\lrcorner", "\\TeX", "\\LaTeX", "\\KaTeX",
    "\\dblcolon", "\\coloneqq", "\\Coloneqq", "\\coloneq", "\\Coloneq", "\\eqqcolon", "\\Eqqcolon",
    "\\eqcolon", "\\Eqcolon", "\\colonapprox", "\\Colonapprox", "\\colonsim", "\\Colonsim",
    "\\notni", "\\gvertneqq", "\\lvertneqq", "\\ngeqq", "\\ngeqslant", "\\nleqq", "\\nleqslant",
    "\\nshortmid", "\\nshortparallel", "\\nsubseteqq", "\\nsupseteqq", "\\varsubsetneq",
    "\\varsubsetneqq", "\\varsupsetneq", "\\varsupsetneqq", "\\imath", "\\jmath",
    "\\llbracket", "\\rrbracket", "\\lBrace", "\\rBrace", "\\minuso",
];
let HTML_MATHML = null; // key (JSON of the MathML branch) -> command

// Token pairs that spell a symbol that has its own command.
const PAIRS = {"\\not =": "\\neq", "\\not \\in": "\\notin", "\\not \\ni": "\\notni"};

class Unsupported extends Error {}

function stripLoc(node) {
    return JSON.stringify(node, (k, v) => (k === "loc" ? undefined : v));
}

function buildTables() {
    HTML_MATHML = new Map();
    for (const name of HTML_MATHML_MACROS) {
        let tree;
        try {
            tree = katex.__parse(name, settings());
        } catch (e) {
            continue; // not defined in this KaTeX version
        }
        if (tree.length === 1 && tree[0].type === "htmlmathml") {
            const key = stripLoc(tree[0].mathml);
            HTML_MATHML.set(key, HTML_MATHML.has(key) ? null : name);
        }
    }
}

function canonSymbol(text, mode) {
    if (mode === "math") {
        if (Object.prototype.hasOwnProperty.call(SYNONYMS, text)) return SYNONYMS[text];
        if (UNICODE_SYNONYMS.has(text)) return UNICODE_SYNONYMS.get(text);
    }
    return text;
}

// Splits a text-mode string (ligatures like "--" arrive as one node) into characters.
function chars(text) {
    return text.startsWith("\\") ? [text] : Array.from(text);
}

const FONT_COMMANDS = new Set([
    "mathrm", "mathit", "mathbf", "mathnormal", "mathsfit", "mathbb", "mathcal", "mathfrak",
    "mathscr", "mathsf", "mathtt", "boldsymbol",
]);
const INFIX_FRACTIONS = {"|": "\\atop", "\\{|\\}": "\\brace", "[|]": "\\brack"};
const TEXT_FONT_COMMANDS = {
    mathrm: "\\textrm", mathbf: "\\textbf", mathit: "\\textit", mathsf: "\\textsf", mathtt: "\\texttt",
};
const STYLE_COMMANDS = {
    display: "\\displaystyle", text: "\\textstyle", script: "\\scriptstyle",
    scriptscript: "\\scriptscriptstyle",
};
const MCLASS_COMMANDS = {
    mord: "\\mathord", mbin: "\\mathbin", mrel: "\\mathrel", mopen: "\\mathopen",
    mclose: "\\mathclose", mpunct: "\\mathpunct", minner: "\\mathinner",
};
// Text-mode accent commands and the combining characters they stand for.
const TEXT_ACCENTS = {
    "\\'": "\u0301", "\\`": "\u0300", "\\^": "\u0302", "\\~": "\u0303", "\\\"": "\u0308",
    "\\=": "\u0304", "\\u": "\u0306", "\\.": "\u0307", "\\r": "\u030a", "\\v": "\u030c",
    "\\H": "\u030b",
};
const DELIM_SIZES = ["", "\\big", "\\Big", "\\bigg", "\\Bigg"];
const DELIM_SUFFIX = {mopen: "l", mclose: "r", mrel: "m", mord: ""};
// \left( \begin{matrix} ... \end{matrix} \right) and pmatrix give the same tree.
const MATRIX_DELIMS = {"(|)": "pmatrix", "[|]": "bmatrix", "\\{|\\}": "Bmatrix", "||": "vmatrix",
    "\\||\\|": "Vmatrix"};
// Nodes that are ordinary atoms (class mord) on their own: braces around one of
// them are redundant. Not binary operators or relations (braces change their
// spacing), not \left..\right (an inner atom), not operators.
const REDUNDANT_BRACES = new Set(["mathord", "textord", "genfrac", "sqrt", "font", "accent", "overline",
    "underline", "ordgroup"]);
// Nodes that only change the layout or the look, never which symbols are written.
const UNWRAP = new Set(["color", "sizing", "smash"]);
const DROP = new Set(["kern", "spacing", "phantom", "vphantom", "internal"]);

class Serializer {
    constructor() {
        this.out = [];
        this.inText = false; // inside \text{...}: characters, $...$ for math
    }

    emit(...tokens) {
        for (const t of tokens) this.out.push(t);
    }

    list(nodes) {
        for (const node of nodes) this.node(node);
    }

    // An argument, always braced; a group given as argument is not braced twice.
    arg(node) {
        this.emit("{");
        if (node) {
            let inner = node;
            while (inner.type === "ordgroup" && inner.body.length === 1 && inner.body[0].type === "ordgroup"
                   && !isVdots(inner.body[0])) {
                inner = inner.body[0];
            }
            if (inner.type === "ordgroup" && !isVdots(inner)) this.list(inner.body);
            else this.node(inner);
        }
        this.emit("}");
    }

    node(n) {
        if (n == null) return;
        const handler = this["n_" + n.type.replace(/-/g, "_")];
        if (!handler) throw new Unsupported(`unsupported construct: ${n.type}`);
        handler.call(this, n);
    }

    // --- symbols ---------------------------------------------------------------
    symbol(n) {
        if (n.mode === "text") {
            for (const c of chars(n.text)) this.emit(c);
        } else {
            this.emit(canonSymbol(n.text, n.mode));
        }
    }
    n_mathord(n) { this.symbol(n); }
    n_textord(n) { this.symbol(n); }
    n_atom(n) { this.symbol(n); }
    n_op_token(n) { this.symbol(n); }
    n_accent_token(n) { this.symbol(n); }

    n_spacing() {}
    n_kern() {}
    n_phantom() {}
    n_vphantom() {}
    n_internal() {}

    n_ordgroup(n) {
        // \vdots is {\varvdots\rule{0pt}{15pt}}: a dots symbol and a strut.
        if (isVdots(n)) {
            this.emit("\\vdots");
            return;
        }
        if (n.body.length === 1 && n.body[0].type === "styling" && !this.inText && n.body[0].mode === "math"
            && !isStyledFraction(n.body[0])) {
            // {\displaystyle ...}: the group is the style's own group (see n_styling).
            this.n_styling(n.body[0]);
            return;
        }
        if (!this.inText) {
            // A group that is not an argument and not a script's base groups nothing
            // that a reader can see: {x^{n}}{e^{-x}} is x^{n}e^{-x}, n{\times}n is
            // n\times n ({=} only changes the spacing, which no label holds). What
            // needs its group keeps one of its own: arguments are braced by arg(),
            // a script's base by supsub, an infix \atop by its handler; {\rm d}
            // arrives as a font node with its argument; a style switch gets a group
            // of its own that is exactly its scope ({a \scriptstyle b} is
            // a { \scriptstyle b }), so it never reaches past where it reached.
            this.list(n.body);
            return;
        }
        this.emit("{");
        this.list(n.body);
        this.emit("}");
    }

    // The base of a script: braces only where they are needed, i.e. unless the
    // base is one ordinary atom ({x}^2 is x^2; {a+b}^2, {x^{n}}^2 and {}^{14} keep theirs).
    scriptBase(base) {
        let inner = base;
        while (inner.type === "ordgroup" && inner.body.length === 1 && inner.body[0].type === "ordgroup"
               && !isVdots(inner.body[0])) {
            inner = inner.body[0];
        }
        if (inner.type === "ordgroup" && !isVdots(inner)
            && !(inner.body.length === 1 && REDUNDANT_BRACES.has(inner.body[0].type))) {
            if (inner.body.length === 1 && inner.body[0].type === "styling" && !isStyledFraction(inner.body[0])) {
                this.n_styling(inner.body[0]); // a style switch's own group is the base's group
                return;
            }
            this.emit("{");
            this.list(inner.body);
            this.emit("}");
            return;
        }
        this.node(inner);
    }

    // --- scripts and operators ---------------------------------------------------
    n_supsub(n) {
        const base = n.base;
        if (!base) {
            // A script with nothing before it ({}^{14} C, or ^2 alone) gets an explicit
            // empty base, so that it cannot attach to what precedes it once spaces are gone.
            this.emit("{", "}");
        } else {
            const inner = new Serializer();
            inner.inText = this.inText;
            if (this.inText) inner.node(base);
            else inner.scriptBase(base);
            if (inner.out.length === 0 || UNWRAP.has(base.type)) {
                // A base that vanished (x^2 \quad^1: the space was the base) or that is
                // several nodes once unwrapped (colour, size) must stay one group.
                this.emit("{", ...inner.out, "}");
            } else {
                this.emit(...inner.out);
            }
        }
        if (n.sub) {
            this.emit("_");
            this.arg(n.sub);
        }
        if (n.sup) {
            this.emit("^");
            this.arg(n.sup);
        }
    }

    limits(n) {
        if (n.alwaysHandleSupSub) this.emit(n.limits ? "\\limits" : "\\nolimits");
    }

    n_op(n) {
        if (n.name) {
            this.emit(canonSymbol(n.name, "math"));
        } else {
            this.emit("\\mathop");
            this.arg({type: "ordgroup", body: n.body});
        }
        this.limits(n);
    }

    n_operatorname(n) {
        // \operatorname* takes \limits/\nolimits; plain \operatorname ignores them.
        this.emit(n.alwaysHandleSupSub ? "\\operatorname*" : "\\operatorname");
        this.arg({type: "ordgroup", body: n.body});
        if (n.alwaysHandleSupSub && n.limits) this.emit("\\limits");
    }

    // --- fractions, roots, accents -------------------------------------------------
    n_genfrac(n, style) {
        let cmd;
        if (n.barSize) throw new Unsupported("unsupported construct: \\genfrac or \\above with a bar size");
        if (n.continued) cmd = "\\cfrac";
        else if (n.hasBarLine && !n.leftDelim && !n.rightDelim) cmd = "frac";
        else if (!n.hasBarLine && n.leftDelim === "(" && n.rightDelim === ")") cmd = "binom";
        else if (!n.hasBarLine && !style) {
            // {a \atop b}, {a \brace b}, {a \brack b}: infix commands that take the whole
            // group, so the group is part of the spelling.
            const infix = INFIX_FRACTIONS[`${n.leftDelim || ""}|${n.rightDelim || ""}`];
            if (!infix) throw new Unsupported("unsupported construct: a fraction with these delimiters");
            this.emit("{");
            this.list(n.numer.type === "ordgroup" ? n.numer.body : [n.numer]);
            this.emit(infix);
            this.list(n.denom.type === "ordgroup" ? n.denom.body : [n.denom]);
            this.emit("}");
            return;
        } else throw new Unsupported("unsupported construct: a styled \\atop, \\brace or \\brack");
        if (cmd !== "\\cfrac") {
            const prefix = style === "display" ? "d" : style === "text" ? "t" : "";
            cmd = "\\" + prefix + cmd;
        }
        this.emit(cmd);
        this.arg(n.numer);
        this.arg(n.denom);
    }

    n_sqrt(n) {
        this.emit("\\sqrt");
        if (n.index) {
            this.emit("[");
            const idx = n.index.type === "ordgroup" ? n.index.body : [n.index];
            this.list(idx);
            this.emit("]");
        }
        this.arg(n.body);
    }

    n_accent(n) {
        if (n.mode === "text" && TEXT_ACCENTS[n.label]) {
            // \'{e} in text: the accented character itself (é), which KaTeX reads back
            // as the same accent; "\' { e }" would not survive the space after \'.
            const base = n.base.type === "ordgroup" && n.base.body.length === 1 ? n.base.body[0] : n.base;
            if (base.type !== "textord" && base.type !== "mathord" || base.text.startsWith("\\")) {
                throw new Unsupported(`unsupported construct: text accent ${n.label} on a group`);
            }
            const char = (base.text + TEXT_ACCENTS[n.label]).normalize("NFC");
            // In math mode the same character would read as a math accent (Å -> \mathring).
            if (this.inText) this.emit(char);
            else this.emit("\\text", "{", char, "}");
            return;
        }
        this.emit(n.label);
        this.arg(n.base);
    }

    n_pmb(n) {
        this.emit("\\pmb");
        this.arg({type: "ordgroup", body: n.body});
    }
    n_accentUnder(n) { this.n_accent(n); }
    n_horizBrace(n) { this.n_accent(n); }

    n_overline(n) {
        this.emit("\\overline");
        this.arg(n.body);
    }
    n_underline(n) {
        this.emit("\\underline");
        this.arg(n.body);
    }

    n_xArrow(n) {
        this.emit(n.label);
        if (n.below) {
            this.emit("[");
            this.list(n.below.type === "ordgroup" ? n.below.body : [n.below]);
            this.emit("]");
        }
        this.arg(n.body);
    }

    n_enclose(n) {
        if (n.label === "\\fbox") {
            // \boxed{x} is \fbox{$\displaystyle x$}: find the display-style math inside.
            const math = findDisplayMath(n.body);
            if (math) {
                this.emit("\\boxed");
                this.arg({type: "ordgroup", body: math});
            } else {
                this.emit("\\fbox");
                this.arg(n.body);
            }
            return;
        }
        if (n.label === "\\colorbox" || n.label === "\\fcolorbox") {
            throw new Unsupported(`unsupported construct: ${n.label}`);
        }
        this.emit(n.label);
        this.arg(n.body);
    }

    n_lap(n) {
        this.emit(n.mode === "math" ? "\\math" + n.alignment : "\\" + n.alignment);
        this.arg(n.body);
    }

    // --- delimiters --------------------------------------------------------------
    n_leftright(n) {
        if (n.body.length === 1 && n.body[0].type === "array") {
            const env = MATRIX_DELIMS[`${canonSymbol(n.left, "math")}|${canonSymbol(n.right, "math")}`];
            if (env && isMatrix(n.body[0])) {
                this.array(n.body[0], env);
                return;
            }
            const cases = casesName(n, n.body[0]);
            if (cases) {
                this.array(n.body[0], cases);
                return;
            }
        }
        this.emit("\\left", canonSymbol(n.left, "math"));
        this.list(n.body);
        this.emit("\\right", canonSymbol(n.right, "math"));
    }

    n_middle(n) {
        this.emit("\\middle", canonSymbol(n.delim, "math"));
    }

    n_delimsizing(n) {
        this.emit(DELIM_SIZES[n.size] + DELIM_SUFFIX[n.mclass], canonSymbol(n.delim, "math"));
    }

    // --- arrays ------------------------------------------------------------------
    n_array(n) {
        if (n.isCD) throw new Unsupported("unsupported construct: CD");
        if (n.tags && n.tags.some((t) => t)) throw new Unsupported("unsupported construct: \\tag");
        let env;
        if (n.colSeparationType === "align") env = "aligned";
        else if (n.colSeparationType === "alignat") env = "alignedat";
        else if (n.colSeparationType === "gather") env = "gathered";
        else if (n.colSeparationType === "small") env = "smallmatrix";
        else if (n.colSeparationType) throw new Unsupported(`unsupported construct: ${n.colSeparationType}`);
        else if (n.arraystretch === 0.5) env = "subarray";
        else if (isMatrix(n)) env = "matrix";
        else if (n.hskipBeforeAndAfter) env = cellStyle(n) === "display" ? "darray" : "array";
        else throw new Unsupported("unsupported construct: array layout");
        this.array(n, env);
    }

    array(n, env) {
        if (env === "subarray") {
            // \substack{a \\ b} is \begin{subarray}{c}.
            if (n.cols.length !== 1 || n.cols[0].align !== "c") {
                throw new Unsupported("unsupported construct: subarray");
            }
            this.emit("\\substack", "{");
        } else {
            this.emit(`\\begin{${env}}`);
        }
        if (env === "array" || env === "darray") {
            this.emit("{");
            for (const col of n.cols) {
                if (col.type === "separator") this.emit(col.separator);
                else this.emit(col.align);
            }
            this.emit("}");
        } else if (env === "alignedat") {
            this.emit("{", String(Math.ceil(n.cols.length / 2)), "}");
        }
        const hlines = (i) => {
            for (const dashed of n.hLinesBeforeRow[i] || []) this.emit(dashed ? "\\hdashline" : "\\hline");
        };
        n.body.forEach((row, r) => {
            if (r > 0) this.emit("\\\\");
            hlines(r);
            row.forEach((cell, c) => {
                if (c > 0) this.emit("&");
                let body = cellBody(cell);
                // aligned puts an empty group before each right-hand column's content
                // (so that "&=" spaces as a relation); the parser adds it again.
                if ((env === "aligned" || env === "alignedat") && c % 2 === 1 && body.length > 0
                    && body[0].type === "ordgroup" && body[0].body.length === 0) {
                    body = body.slice(1);
                }
                this.list(body);
            });
        });
        const last = n.hLinesBeforeRow[n.body.length] || [];
        if (last.length > 0) {
            this.emit("\\\\");
            hlines(n.body.length);
        }
        if (env === "subarray") this.emit("}");
        else this.emit(`\\end{${env}}`);
    }

    n_rule(n) {
        // A rule of no width or no height is a strut: layout only.
        if (n.width.number === 0 || n.height.number === 0) return;
        throw new Unsupported("unsupported construct: \\rule");
    }

    n_cr(n) {
        this.emit("\\\\");
    }

    // --- fonts, styles, text -------------------------------------------------------
    n_font(n) {
        if (this.inText) {
            // {\bf x} inside \text: the text-mode font command.
            const cmd = TEXT_FONT_COMMANDS[n.font];
            if (!cmd) throw new Unsupported(`unsupported construct: font ${n.font} in text`);
            this.emit(cmd);
            this.arg(n.body);
            return;
        }
        if (!FONT_COMMANDS.has(n.font)) throw new Unsupported(`unsupported construct: font ${n.font}`);
        this.emit("\\" + n.font);
        this.arg(n.body);
    }

    n_styling(n) {
        if (n.mode === "text" && !this.inText) {
            // The text-mode argument of \fbox, \angl, \raisebox ... (an "hbox").
            const was = this.inText;
            this.inText = true;
            const body = n.body.length === 1 && n.body[0].type === "ordgroup" ? n.body[0].body : n.body;
            this.list(body);
            this.inText = was;
            return;
        }
        if (this.inText) {
            // $...$ inside \text{...}
            this.emit("$");
            const was = this.inText;
            this.inText = false;
            this.list(n.body);
            this.inText = was;
            this.emit("$");
            return;
        }
        // \dfrac, \tfrac, \dbinom, \tbinom are a style around one fraction.
        if (isStyledFraction(n)) {
            this.n_genfrac(n.body[0], n.style);
            return;
        }
        // A style switch lasts to the end of its group: give it its own group.
        this.emit("{", STYLE_COMMANDS[n.style]);
        this.list(n.body);
        this.emit("}");
    }

    n_sizing(n) { this.list(n.body); }
    n_smash(n) { this.node(n.body); }
    n_color(n) {
        if (n.color === ERROR_COLOR && n.body.length === 1 && n.body[0].type === "text"
            && n.body[0].body.length > 0 && n.body[0].body[0].text === "\\") {
            const name = n.body[0].body.map((c) => c.text).join("");
            throw new Unsupported(`untrusted or unsupported command: ${name}`);
        }
        this.list(n.body);
    }

    n_text(n) {
        this.emit(n.font || "\\text");
        this.emit("{");
        const was = this.inText;
        this.inText = true;
        this.list(n.body);
        this.inText = was;
        this.emit("}");
    }

    n_mclass(n) {
        // \boldsymbol{x} (and \bm) is a class around the bold font, the class taken
        // from the argument: the font command alone gives it back.
        if (n.body.length === 1 && n.body[0].type === "font" && n.body[0].font === "boldsymbol") {
            this.node(n.body[0]);
            return;
        }
        // \overset, \underset, \stackrel: a class around an operator with one limit.
        if (n.body.length === 1 && n.body[0].type === "supsub") {
            const s = n.body[0];
            const op = s.base;
            if (op && op.type === "op" && !op.symbol && op.body && op.limits && op.alwaysHandleSupSub) {
                if (s.sup && !s.sub) {
                    this.emit(op.suppressBaseShift ? "\\overset" : "\\stackrel");
                    this.arg(s.sup);
                    this.arg({type: "ordgroup", body: op.body});
                    return;
                }
                if (s.sub && !s.sup && op.suppressBaseShift) {
                    this.emit("\\underset");
                    this.arg(s.sub);
                    this.arg({type: "ordgroup", body: op.body});
                    return;
                }
            }
        }
        const cmd = MCLASS_COMMANDS[n.mclass];
        if (!cmd) throw new Unsupported(`unsupported construct: class ${n.mclass}`);
        this.emit(cmd);
        this.arg({type: "ordgroup", body: n.body});
    }

    n_htmlmathml(n) {
        const name = HTML_MATHML.get(stripLoc(n.mathml));
        if (!name) throw new Unsupported("unsupported construct: \\html@mathml (a KaTeX macro with no single spelling)");
        this.emit(name);
    }

    n_mathchoice(n) {
        // \bmod, \pmod use a choice of spacings only; anything else has no single spelling.
        const branches = [n.display, n.text, n.script, n.scriptscript].map((b) => {
            const s = new Serializer();
            s.list(b);
            return s.out.join(" ");
        });
        if (branches.some((b) => b !== branches[0])) throw new Unsupported("unsupported construct: \\mathchoice");
        this.list(n.display);
    }
}

function isVdots(n) {
    return n.type === "ordgroup" && n.body.length === 2 && n.body[0].text === "\\varvdots"
        && n.body[1].type === "rule";
}

function isStyledFraction(n) {
    if (n.body.length !== 1 || n.body[0].type !== "genfrac") return false;
    // \cfrac is a display style around a continued fraction.
    if (n.body[0].continued) return n.style === "display";
    return n.style === "display" || n.style === "text";
}

function findDisplayMath(node) {
    if (!node) return null;
    if (node.type === "styling" && node.mode === "math" && node.style === "display") return node.body;
    const kids = Array.isArray(node.body) ? node.body : node.body ? [node.body] : [];
    for (const k of kids) {
        const found = findDisplayMath(k);
        if (found) return found;
    }
    return null;
}

function cellBody(cell) {
    // Each cell arrives as a style reset around a group.
    let nodes = [cell];
    while (nodes.length === 1 && (nodes[0].type === "styling" && nodes[0].resetFont || nodes[0].type === "ordgroup")) {
        nodes = nodes[0].body;
    }
    return nodes;
}

function cellStyle(arr) {
    const cell = arr.body.length && arr.body[0].length ? arr.body[0][0] : null;
    return cell && cell.type === "styling" ? cell.style : null;
}

function isMatrix(arr) {
    return !arr.colSeparationType && !arr.hskipBeforeAndAfter && arr.arraystretch === 1 && arr.cols
        && arr.cols.every((c) => c.type === "align" && c.align === "c") && cellStyle(arr) !== "display";
}

function casesName(lr, arr) {
    const cols = arr.cols || [];
    const ok = arr.arraystretch === 1.2 && !arr.colSeparationType && cols.length === 2
        && cols.every((c) => c.align === "l");
    if (!ok) return null;
    const display = cellStyle(arr) === "display";
    const left = canonSymbol(lr.left, "math");
    const right = canonSymbol(lr.right, "math");
    if (left === "\\{" && right === ".") return display ? "dcases" : "cases";
    if (left === "." && right === "\\}") return display ? "drcases" : "rcases";
    return null;
}

function applyPairs(tokens) {
    const out = [];
    for (const t of tokens) {
        const pair = out.length ? `${out[out.length - 1]} ${t}` : null;
        if (pair && Object.prototype.hasOwnProperty.call(PAIRS, pair)) out[out.length - 1] = PAIRS[pair];
        else out.push(t);
    }
    return out;
}

function serialize(latex) {
    const tree = katex.__parse(latex, settings());
    const s = new Serializer();
    s.list(tree);
    return applyPairs(s.out);
}

function normalize(latex) {
    if (typeof latex !== "string") throw new Unsupported("input has no \"latex\" string");
    if (latex.length > MAX_CHARS) throw new Unsupported(`too long: ${latex.length} characters (limit ${MAX_CHARS})`);
    const tokens = serialize(latex);
    if (tokens.length === 0) throw new Unsupported("empty formula: nothing to write");
    if (tokens.length > MAX_OUTPUT_TOKENS) {
        throw new Unsupported(`too many tokens after macro expansion: ${tokens.length} (limit ${MAX_OUTPUT_TOKENS})`);
    }
    // The canonical form must be a fixed point; a formula for which it is not is
    // refused rather than stored with tokens that do not describe it.
    const joined = tokens.join(" ");
    let again;
    try {
        again = serialize(joined);
    } catch (e) {
        throw new Unsupported(`normalized form does not parse (${e.message}): ${joined}`);
    }
    if (again.join(" ") !== joined) {
        throw new Unsupported(`normalized form is not stable: ${joined} -> ${again.join(" ")}`);
    }
    return tokens;
}

function handleLine(line) {
    let request;
    try {
        request = JSON.parse(line);
    } catch (e) {
        return {id: null, error: `bad request: ${e.message}`};
    }
    const id = request && Object.prototype.hasOwnProperty.call(request, "id") ? request.id : null;
    try {
        return {id, tokens: normalize(request.latex)};
    } catch (e) {
        // One formula's failure, whatever it is, is that formula's reason. KaTeX's
        // message underlines the excerpt with combining characters; the raw message
        // and the position read better in a report.
        let message = e && e.message ? e.message : String(e);
        if (e instanceof katex.ParseError && e.rawMessage) {
            message = `KaTeX parse error: ${e.rawMessage}`
                + (e.position !== undefined ? ` at position ${e.position + 1}` : "");
        }
        return {id, error: message.replace(/\s+/g, " ").trim()};
    }
}

function main() {
    // stdout carries the protocol only. KaTeX's \message and \show print with
    // console.log: a formula could otherwise write lines that look like results.
    const toStderr = (...args) => process.stderr.write(args.map(String).join(" ") + "\n");
    for (const name of ["log", "info", "debug", "warn", "error", "trace", "dir"]) console[name] = toStderr;
    buildTables();
    // Tells the caller that KaTeX is loaded: start-up time is not a formula's time.
    process.stdout.write(JSON.stringify({ready: katex.version}) + "\n");
    let pending = "";
    process.stdin.setEncoding("utf8");
    process.stdin.on("data", (chunk) => {
        pending += chunk;
        let nl;
        while ((nl = pending.indexOf("\n")) >= 0) {
            const line = pending.slice(0, nl);
            pending = pending.slice(nl + 1);
            if (line.trim() === "") continue;
            process.stdout.write(JSON.stringify(handleLine(line)) + "\n");
        }
    });
    process.stdin.on("end", () => {
        if (pending.trim() !== "") process.stdout.write(JSON.stringify(handleLine(pending)) + "\n");
    });
}

if (require.main === module) {
    if (process.argv.includes("--version")) {
        process.stdout.write(katex.version + "\n");
    } else {
        main();
    }
}

module.exports = {normalize};
