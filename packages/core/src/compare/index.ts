/** The paper's comparison, generic part: methods as training setups, the grid program, bootstrap intervals. */
export * from "./Bootstrap.js"
export * from "./Grid.js"
export * from "./Methods.js"
export * from "./Cell.js"
