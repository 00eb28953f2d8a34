// LiteRT.js (@litertjs/core) for .tflite artifacts, on WebAssembly (XNNPACK, threads) or WebGPU.
//
// Main thread only: LiteRT.js 2.5.3 cannot be loaded in a Web Worker. Its module imports the bare name
// '@litertjs/wasm-utils', which only the page's import map resolves (Chromium has no import maps in workers: "Failed
// to resolve module specifier"), and its loader runs the WASM glue with importScripts() or a <script> tag, which a
// module worker has neither of (checked in Chromium 156; tests/test_web_app.py). So the camera's frame worker only
// decodes and preprocesses frames for a .tflite model, and the inference runs here.
// LiteRT.js loads one WASM module per page: threaded or not, fixed at the first load.

import { loadLiteRt, loadAndCompile, Tensor, supportsFeature } from '@litertjs/core';

import { DemoError, baseName, batched, firstRow, runtimeError, tensorShape } from './core.js';

export const RUNTIME = 'LiteRT.js';
export const WORKER_OK = false;
const WASM = new URL('./node_modules/@litertjs/core/wasm/', import.meta.url).href;
const VERSION = await fetch(new URL('./node_modules/@litertjs/core/package.json', import.meta.url))
  .then((r) => r.json()).then((p) => p.version).catch(() => '?');
let loadedThreads = null;

export async function open(name, bytes, side, { threads, backend }) {
  const useThreads = crossOriginIsolated && threads > 1;
  if (loadedThreads === null) {
    await loadLiteRt(WASM, useThreads ? { threads: true } : {});
    loadedThreads = useThreads;
  } else if (loadedThreads !== useThreads) {
    throw new DemoError('LiteRT.js is already loaded with another thread setting: reload the page to change threads');
  }
  let model;
  try {
    model = await loadAndCompile(bytes, { accelerator: backend, cpuOptions: { numThreads: useThreads ? threads : 1 } });
  } catch (e) {
    throw runtimeError(name, `${RUNTIME} (${backend})`, e);
  }
  const shape = tensorShape(side);
  const details = model.getInputDetails()[0];
  if (details && Array.from(details.shape).join('x') !== shape.join('x')) {
    model.delete();
    throw new DemoError(`${baseName(name)} takes input ${Array.from(details.shape).join('x')} but its sidecar says ` +
      `${shape.join('x')}: the sidecar does not belong to this file; re-export it`);
  }
  // a model WebGPU cannot take whole falls back to WASM inside LiteRT.js (no JSPI build here): say what ran
  const ran = model.options?.accelerator === 'webgpu' ? 'webgpu' : 'wasm';
  return {
    info: { runtime: RUNTIME, version: VERSION, backend: ran, detail: ran === 'webgpu' ? 'WebGPU' : 'XNNPACK',
            threads: useThreads ? threads : 1, simd: await supportsFeature('relaxedSimd'), crossOriginIsolated,
            ...(ran !== backend ? { fallback: `LiteRT.js could not run the whole model on ${backend}: it runs on ` +
              `${ran}` } : {}) },
    async run(x) {
      const input = new Tensor(batched(x, side), shape);
      try {
        const outputs = await model.run(input);
        try {
          const first = outputs[0].accelerator === 'wasm' ? outputs[0] : await outputs[0].moveTo('wasm');
          return firstRow(Float32Array.from(first.toTypedArray()), side);
        } finally {
          for (const t of outputs) if (!t.deleted) t.delete();
        }
      } finally {
        input.delete();
      }
    },
    async release() { model.delete(); },
  };
}
