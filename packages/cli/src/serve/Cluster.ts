/**
 * The cluster under the job service: where workflow messages, replies and runner locks are stored, and
 * how runners find each other. One process alone (`SingleRunner`, no sockets) or several runners that
 * talk over TCP (`NodeClusterSocket`) and share the storage: a SQLite file on one machine, PostgreSQL
 * across machines. Shard locks let a runner take over a dead runner's workflows.
 */
import { NodeClusterSocket } from "@effect/platform-node"
import { PgClient } from "@effect/sql-pg"
import { Duration, Layer, Option, Redacted } from "effect"
import * as ClusterWorkflowEngine from "effect/cluster/ClusterWorkflowEngine"
import * as RunnerAddress from "effect/cluster/RunnerAddress"
import * as SingleRunner from "effect/cluster/SingleRunner"
import * as Digest from "effect/crypto/Digest"
import * as Sqlite from "./Sqlite.js"

export type Database =
  | { readonly kind: "sqlite"; readonly file: string }
  | { readonly kind: "postgres"; readonly url: Redacted.Redacted }

/** `postgres://...` or `postgresql://...` is PostgreSQL; anything else is a SQLite file. */
export const parseDatabase = (value: string): Database =>
  /^postgres(ql)?:\/\//.test(value) ? { kind: "postgres", url: Redacted.make(value) } : { kind: "sqlite", file: value }

export const sqlLayer = (db: Database) =>
  db.kind === "sqlite" ? Sqlite.layer({ filename: db.file }) : PgClient.layer({ url: db.url, applicationName: "disendiff" })

export interface ClusterOptions {
  readonly database: Database
  /**
   * Alone: this process runs every job itself (no peers). Otherwise this process is one of several
   * runners at `host:port` (reachable by the others), or a client only (an API that runs no jobs).
   */
  readonly mode:
    | { readonly _tag: "alone" }
    | { readonly _tag: "runner"; readonly host: string; readonly port: number }
    | { readonly _tag: "client" }
  /** How long a dead runner's shards stay locked before another runner takes them (default 30 s). */
  readonly lockExpiration?: Duration.Duration | undefined
}

/** The workflow engine on the cluster, and the SQL client it stores into (the job store shares it). */
export const layer = (o: ClusterOptions) => {
  const expiration = o.lockExpiration ?? Duration.seconds(30)
  const sharding = o.mode._tag === "alone"
    ? SingleRunner.layer({ runnerStorage: "sql", shardingConfig: { shardLockExpiration: expiration } })
    : NodeClusterSocket.layer({
      storage: "sql",
      clientOnly: o.mode._tag === "client",
      shardingConfig: {
        runnerAddress: o.mode._tag === "runner" ? Option.some(RunnerAddress.make(o.mode.host, o.mode.port)) : Option.none(),
        shardLockExpiration: expiration,
        shardLockRefreshInterval: Duration.divide(expiration, 3).pipe(Option.getOrElse(() => expiration))
      }
    })
  return ClusterWorkflowEngine.layer.pipe(
    Layer.provideMerge(sharding),
    Layer.provideMerge(sqlLayer(o.database)),
    Layer.provide(Digest.layerWebCrypto)
  )
}
