// The pthread worker of tfjs-backend-wasm's threaded-SIMD build, as a file Node's worker_threads can
// start. tfjs ships the script only as a string (`wasmWorkerContents`) that it turns into a Blob URL,
// which worker_threads rejects (tfjs issue 3830); its Node branch (worker_threads, `importScripts` as
// `eval` of a file) is complete. Started by src/Module.ts; see there.
"use strict"
const { wasmWorkerContents } = require("@tensorflow/tfjs-backend-wasm/wasm-out/tfjs-backend-wasm-threaded-simd.worker.js")
// a raw newline sits inside one of its string literals (tfjs escapes it the same way)
new Function("require", "__filename", wasmWorkerContents.replace(/\n/g, "\\n"))(require, __filename)
