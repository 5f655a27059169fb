/**
 * The single-byte code pages in which ftfy (6.3.1, `chardata.CHARMAP_ENCODINGS`) looks for UTF-8 that was
 * decoded the wrong way, in the order it tries them. Every page is ASCII in bytes 0x00-0x7F; `high` is
 * what bytes 0x80-0xFF decode to, as Python's codecs of the same names define them. ftfy's "sloppy"
 * Windows pages decode the bytes Windows leaves unassigned as their Latin-1 characters and stand byte
 * 0x1A in for U+FFFD (so text that went through a lossy decoder can still be re-encoded).
 */

export interface CodePage {
  readonly name: string
  readonly sloppy: boolean
  /** 128 characters: what bytes 0x80-0xFF decode to. */
  readonly high: string
}

const latin1High = Array.from({ length: 128 }, (_, i) => String.fromCharCode(0x80 + i)).join("")

export const codePages: ReadonlyArray<CodePage> = [
  { name: "latin-1", sloppy: false, high: latin1High },
  {
    name: "sloppy-windows-1252",
    sloppy: true,
    high: "€\u0081‚ƒ„…†‡ˆ‰Š‹Œ\u008dŽ\u008f\u0090‘’“”•–—˜™š›œ\u009džŸ\u00a0¡¢£¤¥¦§¨©ª«¬\u00ad®¯°±²³´µ¶·¸¹º»¼½¾¿" +
      "ÀÁÂÃÄÅÆÇÈÉÊËÌÍÎÏÐÑÒÓÔÕÖ×ØÙÚÛÜÝÞßàáâãäåæçèéêëìíîïðñòóôõö÷øùúûüýþÿ"
  },
  {
    name: "sloppy-windows-1251",
    sloppy: true,
    high: "ЂЃ‚ѓ„…†‡€‰Љ‹ЊЌЋЏђ‘’“”•–—\u0098™љ›њќћџ\u00a0ЎўЈ¤Ґ¦§Ё©Є«¬\u00ad®Ї°±Ііґµ¶·ё№є»јЅѕї" +
      "АБВГДЕЖЗИЙКЛМНОПРСТУФХЦЧШЩЪЫЬЭЮЯабвгдежзийклмнопрстуфхцчшщъыьэюя"
  },
  {
    name: "sloppy-windows-1250",
    sloppy: true,
    high: "€\u0081‚\u0083„…†‡\u0088‰Š‹ŚŤŽŹ\u0090‘’“”•–—\u0098™š›śťžź\u00a0ˇ˘Ł¤Ą¦§¨©Ş«¬\u00ad®Ż°±˛ł´µ¶·¸ąş»Ľ˝ľż" +
      "ŔÁÂĂÄĹĆÇČÉĘËĚÍÎĎĐŃŇÓÔŐÖ×ŘŮÚŰÜÝŢßŕáâăäĺćçčéęëěíîďđńňóôőö÷řůúűüýţ˙"
  },
  {
    name: "sloppy-windows-1253",
    sloppy: true,
    high: "€\u0081‚ƒ„…†‡\u0088‰\u008a‹\u008c\u008d\u008e\u008f\u0090‘’“”•–—\u0098™\u009a›\u009c\u009d\u009e\u009f" +
      "\u00a0΅Ά£¤¥¦§¨©ª«¬\u00ad®―°±²³΄µ¶·ΈΉΊ»Ό½ΎΏ" +
      "ΐΑΒΓΔΕΖΗΘΙΚΛΜΝΞΟΠΡÒΣΤΥΦΧΨΩΪΫάέήίΰαβγδεζηθικλμνξοπρςστυφχψωϊϋόύώÿ"
  },
  {
    name: "sloppy-windows-1254",
    sloppy: true,
    high: "€\u0081‚ƒ„…†‡ˆ‰Š‹Œ\u008d\u008e\u008f\u0090‘’“”•–—˜™š›œ\u009d\u009eŸ\u00a0¡¢£¤¥¦§¨©ª«¬\u00ad®¯°±²³´µ¶·¸¹º»¼½¾¿" +
      "ÀÁÂÃÄÅÆÇÈÉÊËÌÍÎÏĞÑÒÓÔÕÖ×ØÙÚÛÜİŞßàáâãäåæçèéêëìíîïğñòóôõö÷øùúûüışÿ"
  },
  {
    name: "sloppy-windows-1257",
    sloppy: true,
    high: "€\u0081‚\u0083„…†‡\u0088‰\u008a‹\u008c¨ˇ¸\u0090‘’“”•–—\u0098™\u009a›\u009c¯˛\u009f\u00a0¡¢£¤¥¦§Ø©Ŗ«¬\u00ad®Æ°±²³´µ¶·ø¹ŗ»¼½¾æ" +
      "ĄĮĀĆÄÅĘĒČÉŹĖĢĶĪĻŠŃŅÓŌÕÖ×ŲŁŚŪÜŻŽßąįāćäåęēčéźėģķīļšńņóōõö÷ųłśūüżž˙"
  },
  {
    name: "iso-8859-2",
    sloppy: false,
    high: latin1High.slice(0, 32) + "\u00a0Ą˘Ł¤ĽŚ§¨ŠŞŤŹ\u00adŽŻ°ą˛ł´ľśˇ¸šşťź˝žż" +
      "ŔÁÂĂÄĹĆÇČÉĘËĚÍÎĎĐŃŇÓÔŐÖ×ŘŮÚŰÜÝŢßŕáâăäĺćçčéęëěíîďđńňóôőö÷řůúűüýţ˙"
  },
  {
    name: "macroman",
    sloppy: false,
    high: "ÄÅÇÉÑÖÜáàâäãåçéèêëíìîïñóòôöõúùûü†°¢£§•¶ß®©™´¨≠ÆØ∞±≤≥¥µ∂∑∏π∫ªºΩæø" +
      "¿¡¬√ƒ≈∆«»…\u00a0ÀÃÕŒœ–—“”‘’÷◊ÿŸ⁄€‹›ﬁﬂ‡·‚„‰ÂÊÁËÈÍÎÏÌÓÔ\uf8ffÒÚÛÙıˆ˜¯˘˙˚¸˝˛ˇ"
  },
  {
    name: "cp437",
    sloppy: false,
    high: "ÇüéâäàåçêëèïîìÄÅÉæÆôöòûùÿÖÜ¢£¥₧ƒáíóúñÑªº¿⌐¬½¼¡«»░▒▓│┤╡╢╖╕╣║╗╝╜╛┐" +
      "└┴┬├─┼╞╟╚╔╩╦╠═╬╧╨╤╥╙╘╒╓╫╪┘┌█▄▌▐▀αßΓπΣσµτΦΘΩδ∞φε∩≡±≥≤⌠⌡÷≈°∙·√ⁿ²■\u00a0"
  }
]

const encoders = new Map<CodePage, Map<string, number>>()

const encoderOf = (page: CodePage): Map<string, number> => {
  let map = encoders.get(page)
  if (map === undefined) {
    map = new Map()
    for (let b = 0; b < 0x80; b++) map.set(String.fromCharCode(b), b)
    for (let i = 0; i < 128; i++) map.set(page.high[i]!, 0x80 + i)
    if (page.sloppy) {
      map.delete("\x1a")
      map.set("\ufffd", 0x1a)
    }
    encoders.set(page, map)
  }
  return map
}

/**
 * `text` encoded in `page` as a byte string (one char per byte, codes 0-255, so byte-level regular
 * expressions apply), or undefined when some character has no byte there.
 */
export const encodeIn = (page: CodePage, text: string): string | undefined => {
  const map = encoderOf(page)
  let out = ""
  for (const ch of text) {
    const b = map.get(ch)
    if (b === undefined) return undefined
    out += String.fromCharCode(b)
  }
  return out
}

/** A byte string decoded from `page`. */
export const decodeIn = (page: CodePage, bytes: string): string => {
  let out = ""
  for (let i = 0; i < bytes.length; i++) {
    const b = bytes.charCodeAt(i)
    out += b >= 0x80 ? page.high[b - 0x80] : b === 0x1a && page.sloppy ? "\ufffd" : bytes[i]
  }
  return out
}
