/**
 * `disendiff demo` as a library: the fixed plan, the world-drawn training data, the metrics, the report,
 * the multi-seed table and the program that runs it all (`run`), plus the per-token attention reader
 * it shares with the `attention` command.
 */
export * from "@disendiff/core/attention/ImageAttention.js"
/** A failure of `run` (a plan prompt outside the world). */
export { CaptionError } from "../world/Caption.js"
export * from "./Demo.js"
export * from "./DemoData.js"
export * from "./DemoPlan.js"
export * from "./Metrics.js"
export * from "./Report.js"
export * from "./SeedTable.js"
