/** `disendiff compare` on the built-in model as a library: plan, cells, results, figures, report, program. */
export * from "./Compare.js"
export * from "./CompareCell.js"
export * from "./ComparePlan.js"
export * from "./CompareReport.js"
export * from "./Figures.js"
export * from "./Results.js"
