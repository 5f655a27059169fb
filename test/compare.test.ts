/**
 * `disendiff compare` as a user runs it, on tiny stand-in weights: --jobs 1 and --jobs 2 write the same
 * results.json, bad input gets one line, and the report opens in headless Chromium with its charts and
 * images (skipped without /usr/bin/chromium unless DISENDIFF_REQUIRE_CHROMIUM=1).
 */
import { assert, describe, it } from "vitest"
import { chromium } from "playwright-core"
import * as fs from "node:fs/promises"
import * as path from "node:path"
import { disendiff, tempDir } from "./cli.js"
import { writeToyWeights } from "../packages/builtin/test/fixtures.js"

const CHROMIUM = "/usr/bin/chromium"

describe("disendiff compare", () => {
  it("gives the same results.json with --jobs 1 and --jobs 2, and a report that opens in Chromium", async () => {
    const dir = await tempDir()
    const weights = await writeToyWeights(path.join(dir, "tiny.safetensors"))
    const args = (out: string, jobs: number) => ["compare", "--quick", "--methods", "disendiff,textual-inversion", "--seeds", "1", "--weights", weights, "--out", out, "--jobs", String(jobs), "--threads", "1"]
    const one = await disendiff(args(path.join(dir, "one"), 1))
    assert.strictEqual(one.code, 0, one.stderr)
    const two = await disendiff(args(path.join(dir, "two"), 2))
    assert.strictEqual(two.code, 0, two.stderr)
    const strip = (s: string) => s.replaceAll(path.join(dir, "one"), "OUT").replaceAll(path.join(dir, "two"), "OUT")
    const a = strip(await fs.readFile(path.join(dir, "one", "results.json"), "utf8"))
    const b = strip(await fs.readFile(path.join(dir, "two", "results.json"), "utf8"))
    assert.strictEqual(a, b)

    const missing = await fs.access(CHROMIUM).then(() => false, () => true)
    if (missing) {
      if (process.env["DISENDIFF_REQUIRE_CHROMIUM"]) throw new Error(`${CHROMIUM} is missing and DISENDIFF_REQUIRE_CHROMIUM is set: run scripts/install-chromium.sh`)
      console.warn(`the comparison report's browser test is skipped: ${CHROMIUM} is missing`)
      return
    }
    const browser = await chromium.launch({ executablePath: CHROMIUM, args: ["--headless", "--no-sandbox", "--disable-gpu"] })
    try {
      const page = await browser.newPage()
      const requests: Array<string> = []
      page.on("request", (r) => { if (!r.url().startsWith("data:") && !r.url().startsWith("file:")) requests.push(r.url()) })
      await page.goto(`file://${path.join(dir, "one", "report.html")}`)
      assert.deepStrictEqual(requests, [], "the report is self-contained")
      const charts = await page.locator("svg").count()
      assert.strictEqual(charts, 5)
      const images = await page.locator("img").evaluateAll((imgs) => imgs.map((i) => (i as unknown as { complete: boolean; naturalWidth: number }).complete && (i as unknown as { naturalWidth: number }).naturalWidth > 0))
      assert.isTrue(images.length === 4 && images.every(Boolean), JSON.stringify(images))
      const text = await page.locator("body").innerText()
      assert.match(text, /claim in the paper/)
      assert.match(text, /Textual Inversion/)
    } finally {
      await browser.close()
    }
  }, 600_000)

  it("answers bad input with one line", async () => {
    for (const args of [["--methods", "disendiff,nope"], ["--seeds", "1,x"], ["--ablations", "no-such"], ["--jobs", "0"]]) {
      const r = await disendiff(["compare", ...args, "--out", "/tmp/never-written"])
      assert.strictEqual(r.code, 1, args.join(" "))
      assert.strictEqual(r.stderr.trim().split("\n").length, 1, r.stderr)
      assert.match(r.stderr, /^error: /)
    }
  }, 120_000)
})
