/** The job service: durable personalisation jobs on Effect's cluster, with an HTTP API (`disendiff serve`). */
export * as Cluster from "./Cluster.js"
export * from "./JobErrors.js"
export * from "./JobRequest.js"
export * from "./JobStore.js"
export * as JobWorkflow from "./JobWorkflow.js"
export { Jobs } from "./Jobs.js"
export * as Sqlite from "./Sqlite.js"
