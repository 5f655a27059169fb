/**
 * `ftfy.fix_text` with ftfy 6.3.1's default settings, which transformers' CLIPTokenizer applies to every
 * prompt when ftfy is installed (the tokenizer oracle in fixtures/sd-tiny was made that way).
 *
 * The text is fixed line by line. On each line these fixes run in ftfy's order, and the round repeats
 * until the line stops changing: HTML entities decoded (only those ending in `;`, plus all-caps forms of
 * lower-case ones; never once a line has contained `<`, which suggests real HTML), mojibake repaired
 * (Mojibake.ts), stray C1 controls read as Windows-1252, Latin ligatures split, fullwidth and halfwidth
 * forms made normal width, curly quotes straightened, line breaks made `\n`, lone surrogates replaced,
 * terminal escape sequences and invisible control characters removed, and NFC normalisation.
 * (ftfy also cuts lines longer than a million characters into pieces; prompts never are.)
 */
import { decodeHTML, decodeHTMLStrict } from "entities"
import { fixC1Controls, fixEncoding } from "./Mojibake.js"

// Python's html.unescape for a whole numeric reference: C1 numbers mean Windows-1252, and
// noncharacters and most controls decode to nothing.
const numericCharacter = (n: number): string => {
  if (n === 0) return "\ufffd"
  if (n === 0x0d) return "\r"
  if (n >= 0x80 && n <= 0x9f) return fixC1Controls(String.fromCharCode(n))
  if ((n >= 0xd800 && n <= 0xdfff) || n > 0x10ffff) return "\ufffd"
  const invalid = (n >= 0x01 && n <= 0x08) || n === 0x0b || (n >= 0x0e && n <= 0x1f) || n === 0x7f ||
    (n >= 0xfdd0 && n <= 0xfdef) || (n & 0xfffe) === 0xfffe
  return invalid ? "" : String.fromCodePoint(n)
}

const entityPattern = /&#?[0-9A-Za-z]{1,24};/g

const unescapeEntity = (ref: string): string => {
  if (ref[1] === "#") {
    const digits = /^&#(?:([0-9]+)|[xX]([0-9a-fA-F]+));$/.exec(ref)
    if (digits === null) return ref
    const ch = numericCharacter(digits[1] !== undefined ? parseInt(digits[1], 10) : parseInt(digits[2]!, 16))
    // a reference that decodes to ';' looks undecoded to ftfy and stays
    return ch.includes(";") ? ref : ch
  }
  const named = decodeHTMLStrict(ref)
  if (named !== ref) return named
  // `&EACUTE;` for `&eacute;`, unless the upper-case name already means something (`&GT` + "RDOT;")
  const name = ref.slice(1, -1)
  if (name !== name.toUpperCase()) return ref
  const lower = `&${name.toLowerCase()};`
  const base = decodeHTMLStrict(lower)
  return base === lower || decodeHTML(ref) !== ref ? ref : base.toUpperCase()
}

const ligatures: Readonly<Record<string, string>> = {
  "Ĳ": "IJ",
  "ĳ": "ij",
  "ŉ": "ʼn",
  "Ǳ": "DZ",
  "ǲ": "Dz",
  "ǳ": "dz",
  "Ǆ": "DŽ",
  "ǅ": "Dž",
  "ǆ": "dž",
  "Ǉ": "LJ",
  "ǈ": "Lj",
  "ǉ": "lj",
  "Ǌ": "NJ",
  "ǋ": "Nj",
  "ǌ": "nj",
  "ﬀ": "ff",
  "ﬁ": "fi",
  "ﬂ": "fl",
  "ﬃ": "ffi",
  "ﬄ": "ffl",
  "ﬅ": "ſt",
  "ﬆ": "st"
}
const ligaturePattern = new RegExp(`[${Object.keys(ligatures).join("")}]`, "g")

// Halfwidth and fullwidth forms (U+FF01-U+FFEF) to their compatibility equivalents, and the
// ideographic space to a space.
const widths = new Map<string, string>([["\u3000", " "]])
for (let cp = 0xff01; cp < 0xfff0; cp++) {
  const ch = String.fromCharCode(cp)
  const normal = ch.normalize("NFKC")
  if (normal !== ch) widths.set(ch, normal)
}

const terminalEscape = /\x1b\[(?:\p{Nd}|;)*[a-zA-Z]/gu
// ASCII controls other than whitespace, deprecated Arabic format characters, BOM, interlinear
// annotation and the object replacement character.
const controlChars = /[\x00-\x08\x0b\x0e-\x1f\x7f\u206a-\u206f\ufeff\ufff9-\ufffc]/g

const fixRound = (text: string, unescapeHtml: boolean): string => {
  if (unescapeHtml) text = text.replace(entityPattern, unescapeEntity)
  text = fixEncoding(text)
  text = fixC1Controls(text)
  text = text.replace(ligaturePattern, (ch) => ligatures[ch]!)
  text = text.replace(/[\u3000\uff01-\uffef]/g, (ch) => widths.get(ch) ?? ch)
  text = text.replace(/[\u201c-\u201f]/g, "\"").replace(/[\u02bc\u2018-\u201b]/g, "'")
  text = text.replace(/\r\n/g, "\n").replace(/[\r\u2028\u2029\u0085]/g, "\n")
  text = text.replace(/\p{Cs}/gu, "\ufffd")
  text = text.replace(terminalEscape, "")
  text = text.replace(controlChars, "")
  return text.normalize("NFC")
}

/** `ftfy.fix_text(text)` (ftfy 6.3.1, default configuration). */
export const fixText = (text: string): string => {
  let unescapeHtml = true
  let out = ""
  for (let pos = 0; pos < text.length;) {
    const newline = text.indexOf("\n", pos)
    const end = newline < 0 ? text.length : newline + 1
    let line = text.slice(pos, end)
    // once a line contains '<' the text is taken for HTML, and entities stay from there on
    if (line.includes("<")) unescapeHtml = false
    for (;;) {
      const fixed = fixRound(line, unescapeHtml)
      if (fixed === line) break
      line = fixed
    }
    out += line
    pos = end
  }
  return out
}
