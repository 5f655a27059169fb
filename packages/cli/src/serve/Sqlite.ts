/**
 * Effect's `SqlClient` over Node's built-in SQLite (`node:sqlite`): the job service's embedded storage,
 * which needs no server and no native addon.
 *
 * Why our own adapter: the maintained driver, `@effect/sql-sqlite-node`, exists for Effect 4 only as
 * 4.0 betas that import `effect/unstable/sql/*`, paths Effect 4.1 no longer exports (it moved them to
 * `effect/sql/*`), so it does not load beside `effect` 4.1.0 (docs/serve.md). This file follows that
 * driver's shape: one connection behind a one-permit semaphore (SQLite serialises writers anyway),
 * WAL so that readers in other processes do not block, and a busy timeout so that several runner
 * processes sharing one file wait for each other's write locks instead of failing.
 */
import { Context, Effect, Layer, Scope, Semaphore, Stream } from "effect"
import * as Reactivity from "effect/reactivity/Reactivity"
import * as Client from "effect/sql/SqlClient"
import type { Connection } from "effect/sql/SqlConnection"
import { classifySqliteError, SqlError } from "effect/sql/SqlError"
import * as Statement from "effect/sql/Statement"
import type { DatabaseSync, StatementSync } from "node:sqlite"

/**
 * `node:sqlite`, loaded on first use without its "experimental" warning: Node 22 prints it on every
 * start, and the service's users cannot act on it (the module is stable in Node 23.4+).
 */
const loadSqlite = Effect.promise(async () => {
  const emit = process.emitWarning
  process.emitWarning = ((warning: string | Error, ...rest: Array<never>) =>
    String(warning).includes("SQLite is an experimental feature") ? undefined : emit.call(process, warning, ...rest)) as typeof process.emitWarning
  try {
    return (await import("node:sqlite")).DatabaseSync
  } finally {
    process.emitWarning = emit
  }
})

export interface SqliteOptions {
  readonly filename: string
  /** How long a writer waits for another process's write lock (ms). */
  readonly busyTimeoutMs?: number | undefined
}

const failure = (operation: string) => (cause: unknown) => {
  // node:sqlite reports SQLite's code as `errcode`; the classifier reads `errno`
  const c = typeof cause === "object" && cause !== null && "errcode" in cause && !("errno" in cause)
    ? Object.assign(cause, { errno: (cause as { errcode: unknown }).errcode })
    : cause
  return new SqlError({ reason: classifySqliteError(c, { message: `SQLite ${operation} failed`, operation }) })
}

const open = (options: SqliteOptions) =>
  Effect.gen(function*() {
    const Database = yield* loadSqlite
    const db: DatabaseSync = yield* Effect.acquireRelease(
      Effect.try({ try: () => new Database(options.filename), catch: failure("open") }),
      (d) => Effect.sync(() => d.close())
    )
    yield* Effect.try({
      try: () => db.exec(`PRAGMA journal_mode = WAL; PRAGMA busy_timeout = ${options.busyTimeoutMs ?? 10_000}; PRAGMA foreign_keys = ON;`),
      catch: failure("configure")
    })
    const prepared = new Map<string, StatementSync>()
    const prepare = (sql: string) =>
      Effect.try({
        try: () => {
          let s = prepared.get(sql)
          if (s === undefined) {
            s = db.prepare(sql)
            prepared.set(sql, s)
          }
          return s
        },
        catch: failure("prepare")
      })
    // rows for a query; for a statement, no rows, or (raw) SQLite's change count
    const run = (s: StatementSync, params: ReadonlyArray<unknown>, mode: "rows" | "arrays" | "raw") =>
      Effect.try({
        try: (): any => {
          s.setReturnArrays(mode === "arrays")
          const args = params as Array<never>
          if (s.columns().length > 0) return s.all(...args)
          const r = s.run(...args)
          return mode === "raw" ? { changes: r.changes, lastInsertRowid: r.lastInsertRowid } : []
        },
        catch: failure("execute")
      })
    const unprepared = (sql: string) => Effect.try({ try: () => db.prepare(sql), catch: failure("prepare") })
    const rows = (transform: (<A extends object>(row: ReadonlyArray<A>) => ReadonlyArray<A>) | undefined) => (r: ReadonlyArray<any>) => transform ? transform(r) : r
    const connection: Connection = {
      execute: (sql, params, transform) => prepare(sql).pipe(Effect.flatMap((s) => run(s, params, "rows")), Effect.map(rows(transform))),
      executeRaw: (sql, params) => prepare(sql).pipe(Effect.flatMap((s) => run(s, params, "raw"))),
      executeValues: (sql, params) => prepare(sql).pipe(Effect.flatMap((s) => run(s, params, "arrays"))),
      executeValuesUnprepared: (sql, params) => unprepared(sql).pipe(Effect.flatMap((s) => run(s, params, "arrays"))),
      executeUnprepared: (sql, params, transform) => unprepared(sql).pipe(Effect.flatMap((s) => run(s, params, "rows")), Effect.map(rows(transform))),
      executeStream: () => Stream.die("SQLite: streaming queries are not supported")
    }
    return connection
  })

/** A `SqlClient` on one SQLite file. */
export const make = (options: SqliteOptions) =>
  Effect.gen(function*() {
    const connection = yield* open(options)
    const semaphore = yield* Semaphore.make(1)
    const acquirer = semaphore.withPermits(1)(Effect.succeed(connection))
    // a transaction holds the one connection until its scope closes
    const transactionAcquirer = Effect.uninterruptibleMask((restore) =>
      Effect.gen(function*() {
        const scope = yield* Scope.Scope
        yield* restore(semaphore.take(1))
        yield* Scope.addFinalizer(scope, semaphore.release(1))
        return connection
      })
    )
    return yield* Client.make({
      acquirer,
      compiler: Statement.makeCompilerSqlite(),
      transactionAcquirer,
      driver: "node:sqlite",
      spanAttributes: [["db.system.name", "sqlite"]],
    })
  })

export const layer = (options: SqliteOptions): Layer.Layer<Client.SqlClient, SqlError> =>
  Layer.effectContext(Effect.map(make(options), (client) => Context.make(Client.SqlClient, client))).pipe(Layer.provide(Reactivity.layer))
