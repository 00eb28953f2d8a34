// onnxruntime-web for .onnx/.ort artifacts, on one of two backends: WebAssembly (ort.wasm.min.mjs: the CPU EP in
// WASM with SIMD and threads) or WebGPU (ort.webgpu.min.mjs: the WebGPU EP, loaded only when asked for; operators it
// lacks run on its WASM CPU EP). Imported by relative URL (no import map): the camera's frame worker runs it as well
// (module workers have no import maps). Its WebAssembly comes from node_modules via the demo's server.

import * as ortWasm from './node_modules/onnxruntime-web/dist/ort.wasm.min.mjs';

import { baseName, batched, firstRow, runtimeError, tensorShape } from './core.js';

export const RUNTIME = 'onnxruntime-web';
export const WORKER_OK = true;  // checked in Chromium: the module imports and runs in a module worker, threads too
const DIST = new URL('./node_modules/onnxruntime-web/dist/', import.meta.url).href;
let ortGpu = null;

async function bundle(backend) {
  if (backend !== 'webgpu') return ortWasm;
  ortGpu ??= await import('./node_modules/onnxruntime-web/dist/ort.webgpu.min.mjs');
  return ortGpu;
}

/** A loaded model: {info, run(Float32Array) -> Float32Array logits, release()}. */
export async function open(name, bytes, side, { threads, backend }) {
  const ort = await bundle(backend);
  ort.env.wasm.wasmPaths = DIST;
  ort.env.wasm.numThreads = crossOriginIsolated ? threads : 1;
  ort.env.wasm.proxy = false;
  let session;
  try {
    session = await ort.InferenceSession.create(bytes, { executionProviders: [backend],
                                                          graphOptimizationLevel: 'all' });
  } catch (e) {
    throw runtimeError(name, `${RUNTIME} (${backend})`, e);
  }
  const shape = tensorShape(side);
  const [input] = session.inputNames;
  const [output] = session.outputNames;
  return {
    info: { runtime: RUNTIME, version: ort.env.versions?.web ?? '?', backend, detail: backend === 'webgpu'
      ? 'WebGPU EP' : 'CPU EP', threads: ort.env.wasm.numThreads, simd: true, crossOriginIsolated,
            name: baseName(name) },
    async run(x) {
      const result = await session.run({ [input]: new ort.Tensor('float32', batched(x, side), shape) });
      return firstRow(Float32Array.from(result[output].data), side);
    },
    async release() { await session.release(); },
  };
}
