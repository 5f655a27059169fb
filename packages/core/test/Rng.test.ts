import { describe, expect, it } from "vitest"
import { philox4x32, stream } from "../src/random/Rng.js"

const hex = (a: Uint32Array) => Array.from(a, (x) => x.toString(16).padStart(8, "0")).join(" ")

describe("Rng", () => {
  it("Philox4x32-10 matches the Random123 known-answer vectors", () => {
    expect(hex(philox4x32([0, 0, 0, 0], [0, 0]))).toBe("6627e8d5 e169c58d bc57ac4c 9b00dbd8")
    expect(hex(philox4x32([0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff], [0xffffffff, 0xffffffff])))
      .toBe("408f276d 41c83b0e a20bc7c6 6d5451fd")
    expect(hex(philox4x32([0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344], [0xa4093822, 0x299f31d0])))
      .toBe("d16cfe09 94fdcceb 5001e420 24126ea1")
  })

  it("draws are a pure function of (seed, step, purpose, index)", () => {
    const a = stream(7, 3, "noise").normals(1000)
    const b = stream(7, 3, "noise").normals(1000)
    expect(Buffer.from(a.buffer).equals(Buffer.from(b.buffer))).toBe(true)
    expect(stream(8, 3, "noise").normals(4)).not.toEqual(stream(7, 3, "noise").normals(4))
    expect(stream(7, 4, "noise").normals(4)).not.toEqual(stream(7, 3, "noise").normals(4))
    expect(stream(7, 3, "timestep").normals(4)).not.toEqual(stream(7, 3, "noise").normals(4))
    // large seeds use both key words
    expect(stream(2 ** 32 + 7, 3, "noise").uint32()).not.toBe(stream(7, 3, "noise").uint32())
  })

  it("normals have the moments of N(0,1) and uniforms of U[0,1)", () => {
    const z = stream(1, 0, "moments").normals(200_000)
    const mean = z.reduce((a, v) => a + v, 0) / z.length
    const variance = z.reduce((a, v) => a + (v - mean) ** 2, 0) / z.length
    expect(Math.abs(mean)).toBeLessThan(0.01)
    expect(Math.abs(variance - 1)).toBeLessThan(0.01)
    const u = stream(1, 0, "u").uniforms(100_000)
    expect(Math.min(...u)).toBeGreaterThanOrEqual(0)
    expect(Math.max(...u)).toBeLessThan(1)
    expect(Math.abs(u.reduce((a, v) => a + v, 0) / u.length - 0.5)).toBeLessThan(0.01)
  })

  it("int is unbiased over its range and permutation is a permutation", () => {
    const s = stream(3, 0, "int")
    const counts = [0, 0, 0]
    for (let i = 0; i < 30_000; i++) counts[s.int(0, 2)]!++
    for (const c of counts) expect(Math.abs(c - 10_000)).toBeLessThan(400)
    const p = stream(3, 1, "order").permutation(50)
    expect([...p].sort((a, b) => a - b)).toEqual(Array.from({ length: 50 }, (_, i) => i))
  })
})
