/**
 * Counter-based random numbers: Philox4x32-10 (Salmon et al., "Parallel random numbers: as easy as
 * 1, 2, 3", SC 2011). Every draw is a pure function of (seed, step, purpose, index), so a run resumed
 * at step k draws exactly what an uninterrupted run draws at step k: there is no generator state to
 * save, only the seed.
 */

const M0 = 0xd2511f53
const M1 = 0xcd9e8d57
const W0 = 0x9e3779b9 // golden ratio
const W1 = 0xbb67ae85 // sqrt(3) - 1

/** High 32 bits of the 64-bit product of two uint32 (exact, via 16-bit limbs). */
const mulhi = (a: number, b: number): number => {
  const al = a & 0xffff
  const ah = a >>> 16
  const bl = b & 0xffff
  const bh = b >>> 16
  const lh = al * bh
  const hl = ah * bl
  const mid = ((al * bl) >>> 16) + (lh & 0xffff) + (hl & 0xffff)
  return (ah * bh + (lh >>> 16) + (hl >>> 16) + (mid >>> 16)) >>> 0
}

/** One Philox4x32-10 block: four uint32 outputs for a 128-bit counter and a 64-bit key. */
export const philox4x32 = (
  counter: readonly [number, number, number, number],
  key: readonly [number, number],
  out: Uint32Array = new Uint32Array(4)
): Uint32Array => {
  let [c0, c1, c2, c3] = counter
  let [k0, k1] = key
  for (let round = 0; round < 10; round++) {
    const hi0 = mulhi(M0, c0)
    const lo0 = Math.imul(M0, c0) >>> 0
    const hi1 = mulhi(M1, c2)
    const lo1 = Math.imul(M1, c2) >>> 0
    c0 = (hi1 ^ c1 ^ k0) >>> 0
    c1 = lo1
    c2 = (hi0 ^ c3 ^ k1) >>> 0
    c3 = lo0
    k0 = (k0 + W0) >>> 0
    k1 = (k1 + W1) >>> 0
  }
  out[0] = c0
  out[1] = c1
  out[2] = c2
  out[3] = c3
  return out
}

/** FNV-1a, to turn a purpose name into a stable 32-bit lane of the counter. */
export const purposeId = (purpose: string): number => {
  let h = 0x811c9dc5
  for (let i = 0; i < purpose.length; i++) {
    h ^= purpose.charCodeAt(i)
    h = Math.imul(h, 0x01000193) >>> 0
  }
  return h
}

export interface RngKey {
  /** Any non-negative safe integer. */
  readonly seed: number
  readonly step: number
  readonly purpose: string
}

/**
 * The random stream for one (seed, step, purpose). Its i-th uint32 is output `i mod 4` of the Philox
 * block with counter `(floor(i/4) lo, floor(i/4) hi, step, purpose)` and key `(seed lo, seed hi)`.
 */
export class RandomStream {
  private readonly key: readonly [number, number]
  private readonly step: number
  private readonly purpose: number
  private readonly block = new Uint32Array(4)
  private blockIndex = -1
  /** How many uint32 have been drawn; the stream is positioned by it alone. */
  position = 0

  constructor(readonly rngKey: RngKey) {
    if (!Number.isSafeInteger(rngKey.seed) || rngKey.seed < 0) throw new RangeError(`seed must be a non-negative integer, got ${rngKey.seed}`)
    if (!Number.isSafeInteger(rngKey.step) || rngKey.step < 0) throw new RangeError(`step must be a non-negative integer, got ${rngKey.step}`)
    this.key = [rngKey.seed >>> 0, Math.floor(rngKey.seed / 2 ** 32) >>> 0]
    this.step = rngKey.step >>> 0
    this.purpose = purposeId(rngKey.purpose)
  }

  uint32(): number {
    const b = Math.floor(this.position / 4)
    if (b !== this.blockIndex) {
      philox4x32([b >>> 0, Math.floor(b / 2 ** 32) >>> 0, this.step, this.purpose], this.key, this.block)
      this.blockIndex = b
    }
    return this.block[this.position++ % 4]!
  }

  /** Uniform in [0, 1) with 32 random bits. */
  uniform(): number {
    return this.uint32() / 2 ** 32
  }

  /** Uniform integer in [lo, hi] inclusive (hi - lo < 2^32), by rejection so there is no modulo bias. */
  int(lo: number, hi: number): number {
    const range = hi - lo + 1
    if (!(range >= 1 && range <= 2 ** 32)) throw new RangeError(`bad integer range [${lo}, ${hi}]`)
    const limit = 2 ** 32 - (2 ** 32 % range)
    for (;;) {
      const x = this.uint32()
      if (x < limit) return lo + (x % range)
    }
  }

  /** Standard normal by Box-Muller; each pair of uniforms gives two values. */
  normals(n: number): Float32Array {
    const out = new Float32Array(n)
    for (let i = 0; i < n; i += 2) {
      const u1 = (this.uint32() + 0.5) / 2 ** 32 // (0, 1): log is finite
      const u2 = this.uint32() / 2 ** 32
      const r = Math.sqrt(-2 * Math.log(u1))
      out[i] = r * Math.cos(2 * Math.PI * u2)
      if (i + 1 < n) out[i + 1] = r * Math.sin(2 * Math.PI * u2)
    }
    return out
  }

  uniforms(n: number): Float32Array {
    const out = new Float32Array(n)
    for (let i = 0; i < n; i++) out[i] = this.uniform()
    return out
  }

  /** A uniformly random permutation of 0..n-1 (Fisher-Yates). */
  permutation(n: number): Array<number> {
    const p = Array.from({ length: n }, (_, i) => i)
    for (let i = n - 1; i > 0; i--) {
      const j = this.int(0, i)
      ;[p[i], p[j]] = [p[j]!, p[i]!]
    }
    return p
  }
}

export const stream = (seed: number, step: number, purpose: string): RandomStream =>
  new RandomStream({ seed, step, purpose })
