// The browser runtimes behind one interface, per runtime family of the contract's vocabulary (the loader table):
// `const model = await openModel(name, bytes, side, {threads, backend, contract})`, `await model.run(input)` ->
// Float32Array logits, `model.info` (runtime, version, backend that ran, threads, SIMD, and why it fell back when a
// WebGPU request ran on WebAssembly). Their WebAssembly is served from node_modules by the demo's own server (never a
// CDN), and the service worker keeps what was used for offline visits. Multi-threaded WASM needs SharedArrayBuffer,
// i.e. a cross-origin isolated page (COOP + COEP, which `python -m emo.web_demo serve` sends); without it both
// runtimes run on one thread and `info` says so.

import { DemoError, runtimeFor } from './core.js';

const MODULES = {
  onnxruntime: () => import('./runtime-ort.js'),
  litert: () => import('./runtime-litert.js'),
};
export const BACKENDS = ['wasm', 'webgpu'];

/** The runtime module of a browser format ({open, RUNTIME, WORKER_OK}). */
export async function runtimeModule(format) {
  try {
    return await MODULES[format.runtime]();
  } catch (e) {
    throw new DemoError(`the ${format.runtime} runtime could not be loaded (${String(e?.message ?? e).slice(0, 120)})` +
      `${navigator.onLine ? '' : ': this device is offline and the runtime was not cached here yet; open a model ' +
        'of this kind once while online'}`);
  }
}

let adapterProbe = null;

/** The WebGPU adapter the browser offers: {adapter: {vendor, architecture, fallback} | null, reason}. */
export function gpuAdapter() {
  adapterProbe ??= (async () => {
    if (!globalThis.navigator?.gpu) return { adapter: null, reason: 'this browser offers no WebGPU (navigator.gpu)' };
    try {
      const adapter = await navigator.gpu.requestAdapter();
      if (!adapter) return { adapter: null, reason: 'this browser offers no WebGPU adapter' };
      const info = adapter.info ?? {};
      return { adapter: { vendor: info.vendor || '?', architecture: info.architecture || '?',
                          description: info.description || '', fallback: Boolean(info.isFallbackAdapter ??
                            adapter.isFallbackAdapter) }, reason: '' };
    } catch (e) {
      return { adapter: null, reason: `WebGPU failed (${String(e?.message ?? e).slice(0, 100)})` };
    }
  })();
  return adapterProbe;
}

/** A loaded model of the artifact `name` (its bytes and checked sidecar), in the runtime its format needs. */
export async function openModel(name, bytes, side, { threads, backend = 'wasm', contract }) {
  if (!BACKENDS.includes(backend)) {
    throw new DemoError(`backend ${String(backend).slice(0, 20)} is not one of ${BACKENDS.join(', ')}`);
  }
  const format = runtimeFor(name, contract);
  const module = await runtimeModule(format);
  let fallback = null;
  if (backend === 'webgpu') {
    const gpu = await gpuAdapter();
    if (!gpu.adapter) {
      fallback = `WebGPU was asked for, but ${gpu.reason}: running on WebAssembly`;
      backend = 'wasm';
    }
  }
  const model = await module.open(name, new Uint8Array(bytes), side, { threads, backend });
  model.info.requested = fallback ? 'webgpu' : backend;
  if (fallback) model.info.fallback = fallback;
  if (model.info.backend === 'webgpu') model.info.adapter = (await gpuAdapter()).adapter;
  model.info.workerCapable = module.WORKER_OK;
  return model;
}
