import { defineConfig } from "vitest/config"

export default defineConfig({
  ssr: { resolve: { conditions: ["@disendiff/source"] } },
  test: {
    include: ["packages/*/test/**/*.test.ts", "test/**/*.test.ts", "examples/**/*.test.ts"],
    testTimeout: 120_000,
    hookTimeout: 120_000,
    pool: "forks",
    // test files run in parallel processes that already fill the cores; kernel threads on top of them
    // would oversubscribe (docs/benchmarks.md). Tests of thread counts pass --threads themselves.
    env: { DISENDIFF_THREADS: "1" }
  }
})
