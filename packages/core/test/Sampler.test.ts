import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer } from "effect"
import { Backbone, CpuBackend, FakeBackbone, Sampler, Schedulers } from "../src/index.js"
import { twoConceptImage } from "./fixtures.js"

const layer = Sampler.layer.pipe(
  Layer.provideMerge(FakeBackbone.layer({ modifiers: ["<v1>", "<v2>"] })),
  Layer.provideMerge(CpuBackend.layer)
)

const bytes = (img: { data: Float32Array }) => Buffer.from(img.data.buffer, img.data.byteOffset, img.data.byteLength)

describe("Sampler (fake backbone)", () => {
  it.effect("same seed, same bytes; another seed, another image; one image per prompt", () =>
    Effect.gen(function*() {
      const sampler = yield* Sampler
      const req = { prompts: ["<v1> cat", "<v2> dog", "<v1> cat"], seeds: [1, 2, 3], steps: 4, guidance: 6, eta: 0 }
      const a = yield* sampler.sample(req)
      const b = yield* sampler.sample({ ...req, batchSize: 1 })
      assert.strictEqual(a.images.length, 3)
      assert.deepStrictEqual([a.images[0]!.width, a.images[0]!.height], [32, 32])
      a.images.forEach((img, i) => assert.isTrue(bytes(img).equals(bytes(b.images[i]!)), `image ${i} differs across batch sizes`))
      assert.isFalse(bytes(a.images[0]!).equals(bytes(a.images[2]!)))
      for (const img of a.images) assert.isTrue(img.data.every((v) => Number.isFinite(v) && v >= 0 && v <= 1))
    }).pipe(Effect.provide(layer)))

  it.effect("DDIM with eta 1 and DDPM draw seeded noise and stay deterministic", () =>
    Effect.gen(function*() {
      const sampler = yield* Sampler
      for (const variant of [{ eta: 1 }, { eta: 0, scheduler: "ddpm" as const }]) {
        const req = { prompts: ["<v1> cat"], seeds: [5], steps: 3, guidance: 3, ...variant }
        const a = yield* sampler.sample(req)
        const b = yield* sampler.sample(req)
        assert.isTrue(bytes(a.images[0]!).equals(bytes(b.images[0]!)))
      }
    }).pipe(Effect.provide(layer)))

  it.effect("inpainting keeps the unmasked region of the source exactly (exact autoencoder)", () =>
    Effect.gen(function*() {
      const sampler = yield* Sampler
      const image = twoConceptImage(32, 32)
      const mask = new Float32Array(32 * 32)
      for (let y = 0; y < 32; y++) for (let x = 16; x < 32; x++) mask[y * 32 + x] = 1 // regenerate the right half
      const r = yield* sampler.sample({ prompts: ["<v2> dog"], seeds: [3], steps: 4, guidance: 4, eta: 0, inpaint: { image, mask } })
      const out = r.images[0]!
      let keptErr = 0
      let changed = 0
      for (let y = 0; y < 32; y++) {
        for (let x = 0; x < 32; x++) {
          for (let c = 0; c < 3; c++) {
            const d = Math.abs(out.data[(y * 32 + x) * 3 + c]! - image.data[(y * 32 + x) * 3 + c]!)
            if (x < 16) keptErr = Math.max(keptErr, d)
            else changed = Math.max(changed, d)
          }
        }
      }
      assert.isBelow(keptErr, 1e-5)
      assert.isAbove(changed, 0.05)
    }).pipe(Effect.provide(layer)))

  it("timestep spacings follow diffusers", () => {
    assert.deepStrictEqual(Schedulers.timesteps(1000, 10, { spacing: "leading", stepsOffset: 1 }), [901, 801, 701, 601, 501, 401, 301, 201, 101, 1])
    assert.deepStrictEqual(Schedulers.timesteps(1000, 4, { spacing: "trailing", stepsOffset: 0 }), [999, 749, 499, 249])
    assert.deepStrictEqual(Schedulers.timesteps(1000, 4, { spacing: "linspace", stepsOffset: 0 }), [999, 666, 333, 0])
    // numpy rounds halves to even: 1000 - 62.5 = 937.5 -> 938 - 1
    assert.strictEqual(Schedulers.timesteps(1000, 16, { spacing: "trailing", stepsOffset: 0 })[1], 937)
  })

  it.effect("the backbone's sampling options are SD 1.x's", () =>
    Effect.gen(function*() {
      const b = yield* Backbone
      assert.deepStrictEqual(b.sampling, Schedulers.stableDiffusionSampling)
    }).pipe(Effect.provide(layer)))
})
