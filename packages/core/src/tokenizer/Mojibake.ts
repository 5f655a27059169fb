/**
 * Mojibake repair as ftfy 6.3.1 does it (`fix_encoding`): text that looks like UTF-8 decoded in a
 * single-byte code page is encoded back into that page and decoded as UTF-8.
 *
 * "Looks like" is ftfy's badness heuristic: about 400 characters that turn up in mojibake sorted into
 * categories, and juxtapositions of categories that real text almost never has (a lower-case accented
 * letter followed by a currency sign, `Ã` before a quotation mark, ...). Text with no such sequence is
 * left alone. The repair then tries each code page in ftfy's order, restoring a byte 0xA0 that became a
 * space and decoding lossy sequences (U+FFFD from a strict decoder) as U+FFFD; failing that it fixes
 * embedded runs of mojibake one at a time, re-reads Latin-1 as Windows-1252, or maps stray C1 control
 * characters to their Windows-1252 meaning. Each step is repeated until nothing changes.
 *
 * Python's `\s` and `\w` are Unicode-aware where JavaScript's are not, so both are spelled out below.
 */
import { codePages, decodeIn, encodeIn } from "./CodePages.js"

// Python's `\s` (str.isspace) and `\w`.
const pySpace = "\\t\\n\\v\\f\\r\\x1c-\\x1f \\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000"
const pyWord = "[\\p{L}\\p{N}_]"

// ftfy's character categories (badness.py), as regular-expression class bodies.
const common = "\u00a0\u00ad·´–—―…’"
const c1 = "\u0080-\u009f"
const bad = "¦¤¨¬¯¸ƒˆˇ˘˛˜†‡‰⌐◊\ufffdªº"
const law = "¶§"
const currency = "¢£¥₧€"
const startPunct = "¡«¿©΄΅‘‚“„•‹\uf8ff"
const endPunct = "®»˝”›™"
const numeric = "²³¹±¼½¾×µ÷⁄∂∆∏∑√∞∩∫≈≠≡≤≥№"
const kaomoji = "Ò-ÖÙ-Üò-öø-üŐŌŪŲ°"
const upperAccented = "À-ÑØÜÝĂĀĄĆČĎĐĘĚĒĖĞĢİĪĶĹĽŁĻŃŇŅŒŘŚŞŠŢŤŮŰŸŹŻŽҐ"
const lowerAccented = "ßà-ñăąāćčďđęěēėğģįīķĺľłļœŕśşšťüźżžґﬁﬂ"
const upperCommon = "ÞΑ-ΩΆΈΉΊΌΎΏΪΫЁ-Я"
const lowerCommon = "α-ωάέήίΰа-џ"
const box = "│┌┐┘├┤┬┼═-╬▀▄█▌▐░▒▓"

const cls = (...parts: ReadonlyArray<string>) => `[${parts.join("")}]`

const badnessPatterns = [
  cls(c1),
  cls(bad, lowerAccented, upperAccented, box, startPunct, endPunct, currency, numeric, law) + cls(bad),
  "[a-zA-Z]" + cls(lowerCommon, upperCommon) + cls(bad),
  cls(bad) + cls(lowerAccented, upperAccented, box, startPunct, endPunct, currency, numeric, law),
  cls(lowerAccented, lowerCommon, box, endPunct, currency, numeric) + cls(upperAccented),
  cls(box, endPunct, currency, numeric) + cls(lowerAccented),
  cls(lowerAccented, box, endPunct) + cls(currency),
  cls(pySpace) + cls(upperAccented) + cls(currency),
  cls(upperAccented, box) + cls(numeric, law),
  cls(lowerAccented, upperAccented, box, currency, endPunct) + cls(startPunct) + cls(numeric),
  cls(lowerAccented, upperAccented, currency, numeric, box, law) + cls(endPunct) + cls(startPunct),
  cls(currency, numeric, box) + cls(startPunct),
  "[a-z]" + cls(upperAccented) + cls(startPunct, currency),
  cls(box) + cls(kaomoji),
  cls(lowerAccented, upperAccented, currency, numeric, startPunct, endPunct, law) + cls(box),
  cls(box) + cls(endPunct),
  cls(lowerAccented, upperAccented) + cls(startPunct, endPunct) + pyWord,
  // the ligature œ not followed by an unaccented Latin letter
  "[Œœ][^A-Za-z]",
  // a degree sign after a capital letter
  cls(upperAccented) + "°",
  // common Windows-1252 two-character mojibake not covered above
  "[ÂÃÎÐ]" + cls("€œŠš¢£Ÿž\u00a0\u00ad®©°·»", startPunct, endPunct, "–—´"),
  "×[²³]",
  // Windows-1252 mojibake of Arabic: four characters, since the 'common' ones are included
  `[ØÙ]${cls(common, currency, bad, numeric, startPunct, "ŸŠ®°µ»")}[ØÙ]${cls(common, currency, bad, numeric, startPunct, "ŸŠ®°µ»")}`,
  // Windows-1252 mojibake starting three-byte sequences of South Asian scripts
  "à[²µ¹¼½¾]",
  // MacRoman mojibake
  "√[±∂†≠®™´≤≥¥µø]",
  "≈[°¢]",
  "‚Ä[ìîïòôúùû†°¢π]",
  "‚[âó][àä°ê]",
  // Windows-1251 mojibake of the U+2000 block, of Latin-1 and of Cyrillic (three characters)
  "вЂ",
  `[ВГРС]${cls(c1, bad, startPunct, endPunct, currency, "°µ")}[ВГРС]`,
  "ГўВЂВ[^\\n][A-Za-z ]",
  // Windows-1252 encodings of 'à', 'á' and U+00A0 itself
  "Ã[\u00a0¡]",
  `[a-z]${cls(pySpace)}?[ÃÂ] `,
  "^[ÃÂ] ",
  // Â in front of the very character it encodes
  `[a-z.,?!${endPunct}]Â[ ${startPunct}${endPunct}]`,
  // Windows-1253 mojibake of the U+2000 block, of Latin-1 and of Greek
  "β€[™\u00a0Ά\u00ad®°]",
  `[ΒΓΞΟ]${cls(c1, bad, startPunct, endPunct, currency, "°")}[ΒΓΞΟ]`,
  // Windows-1257 mojibake of the U+2000 block
  "ā€"
]
const badness = new RegExp(badnessPatterns.join("|"), "u")

/** Whether `text` contains a sequence that is far more likely mojibake than intended text. */
export const isBad = (text: string): boolean => badness.test(text)

// What UTF-8 lead and continuation bytes look like after decoding in Latin-1 or a sloppy Windows page.
const latinLike = codePages.filter((p) => p.name === "latin-1" || p.sloppy)
const decodedBytes = (bytes: ReadonlyArray<number>) =>
  [...new Set(latinLike.flatMap((p) => bytes.map((b) => p.high[b - 0x80]!)))].join("")
const range = (lo: number, hi: number) => Array.from({ length: hi - lo + 1 }, (_, i) => lo + i)
const firstOf2 = decodedBytes(range(0xc2, 0xdf))
const firstOf3 = decodedBytes(range(0xe0, 0xef))
const firstOf4 = decodedBytes([0xf0, 0xf3])
const continuation = decodedBytes(range(0x80, 0xbf))
// Continuations that rarely stand for themselves next to mojibake (not dashes, quotes, bullets, ellipses).
const strictContinuation = [...continuation].filter((ch) => !"–—―‘’‚“”„•…".includes(ch)).join("")
const cont = cls(continuation, " ")
const utf8Detector = new RegExp(
  `(?<!${cls(strictContinuation)})(?:${cls(firstOf2)}${cont}|${cls(firstOf3)}${cont}{2}|${cls(firstOf4)}${cont}{3})+`,
  "gu"
)

// Byte-level patterns, applied to byte strings (one char per byte).
const alteredUtf8 =
  /[\xc2\xc3\xc5\xce\xd0\xd9] |[\xe2\xe3] [\x80-\x84\x86-\x9f\xa1-\xbf]|[\xe0-\xe3][\x80-\x84\x86-\x9f\xa1-\xbf] |\xf0 [\x80-\xbf]{2}|\xf0[\x80-\xbf] [\x80-\xbf]|\xf0[\x80-\xbf]{2} /g
// "Ã la" stays "à la" rather than "àla", except Portuguese "às", "àquele", "àquela", "àquilo".
const aGraveWord = /\xc3 (?! |quele|quela|quilo|s )/g
const lossyUtf8 = new RegExp(
  [
    "[\\xc2-\\xdf]\\x1a",
    "[\\xc2-\\xc3]\\?",
    "\\xed[\\xa0-\\xaf][\\x1a?]\\xed[\\xb0-\\xbf][\\x1a?\\x80-\\xbf]",
    "\\xed[\\xa0-\\xaf][\\x1a?\\x80-\\xbf]\\xed[\\xb0-\\xbf][\\x1a?]",
    "[\\xe0-\\xef][\\x1a?][\\x1a\\x80-\\xbf]",
    "[\\xe0-\\xef][\\x1a\\x80-\\xbf][\\x1a?]",
    "[\\xf0-\\xf4][\\x1a?][\\x1a\\x80-\\xbf][\\x1a\\x80-\\xbf]",
    "[\\xf0-\\xf4][\\x1a\\x80-\\xbf][\\x1a?][\\x1a\\x80-\\xbf]",
    "[\\xf0-\\xf4][\\x1a\\x80-\\xbf][\\x1a\\x80-\\xbf][\\x1a?]",
    "\\x1a"
  ].join("|"),
  "g"
)

/** A byte 0x20 put back to 0xA0 where that makes a convincing UTF-8 sequence. */
const restoreByteA0 = (bytes: string): string =>
  bytes.replace(aGraveWord, "\xc3\xa0 ").replace(alteredUtf8, (m) => m.replaceAll(" ", "\xa0"))

const utf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true })

const strictUtf8 = (bytes: string): string | undefined => {
  try {
    return utf8.decode(Uint8Array.from(bytes, (c) => c.charCodeAt(0)))
  } catch {
    return undefined
  }
}

const isContinuation = (b: number) => b >= 0x80 && b <= 0xbf

/**
 * UTF-8 that also accepts CESU-8 surrogate pairs (six bytes) and Java's two-byte NUL (C0 80), like
 * ftfy's "utf-8-variants" codec; anything else must be well-formed UTF-8.
 */
const variantUtf8 = (bytes: string): string | undefined => {
  const at = (i: number) => bytes.charCodeAt(i)
  let out = ""
  let start = 0
  let i = 0
  const flush = (end: number) => {
    const part = strictUtf8(bytes.slice(start, end))
    if (part === undefined) return false
    out += part
    return true
  }
  while (i < bytes.length) {
    if (at(i) === 0xc0 && at(i + 1) === 0x80) {
      if (!flush(i)) return undefined
      out += "\0"
      i += 2
      start = i
    } else if (
      at(i) === 0xed && at(i + 1) >= 0xa0 && at(i + 1) <= 0xaf && isContinuation(at(i + 2)) &&
      at(i + 3) === 0xed && at(i + 4) >= 0xb0 && at(i + 4) <= 0xbf && isContinuation(at(i + 5))
    ) {
      if (!flush(i)) return undefined
      out += String.fromCodePoint(
        ((at(i + 1) & 0x0f) << 16) + ((at(i + 2) & 0x3f) << 10) + ((at(i + 4) & 0x0f) << 6) + (at(i + 5) & 0x3f) +
          0x10000
      )
      i += 6
      start = i
    } else {
      i++
    }
  }
  return flush(bytes.length) ? out : undefined
}

const windows1252 = codePages.find((p) => p.name === "sloppy-windows-1252")!
const c1Control = /[\x80-\x9f]/g

/** C1 control characters read as the Windows-1252 characters of the same byte, as browsers do. */
export const fixC1Controls = (text: string): string =>
  text.replace(c1Control, (ch) => decodeIn(windows1252, String.fromCharCode(ch.charCodeAt(0))))

/** Each run of embedded UTF-8 mojibake fixed on its own. */
const decodeInconsistentUtf8 = (text: string): string =>
  text.replace(utf8Detector, (m) => (m.length < text.length && isBad(m) ? fixEncoding(m) : m))

const fixEncodingStep = (text: string): string => {
  if (!/[^\x00-\x7f]/.test(text) || !isBad(text)) return text
  for (const page of codePages) {
    let bytes = encodeIn(page, text)
    if (bytes === undefined) continue
    if (page.name !== "macroman" && bytes.search(alteredUtf8) >= 0) bytes = restoreByteA0(bytes)
    if (page.sloppy) bytes = bytes.replace(lossyUtf8, "\xef\xbf\xbd")
    const fixed = /[\xc0\xed]/.test(bytes) ? variantUtf8(bytes) : strictUtf8(bytes)
    if (fixed !== undefined) return fixed
  }
  if (text.search(utf8Detector) >= 0) {
    const fixed = decodeInconsistentUtf8(text)
    if (fixed !== text) return fixed
  }
  // ftfy next re-reads Latin-1 text as Windows-1252 (its test for "also Windows-1252" names a page it
  // never tries, so it always does); that changes exactly the C1 characters, as the last step does.
  return text.search(c1Control) >= 0 ? fixC1Controls(text) : text
}

/** ftfy's `fix_encoding`: mojibake repaired until the text stops changing. */
export const fixEncoding = (text: string): string => {
  for (;;) {
    const fixed = fixEncodingStep(text)
    if (fixed === text) return text
    text = fixed
  }
}
