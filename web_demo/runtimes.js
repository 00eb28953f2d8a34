// The two browser runtimes behind one interface: `const model = await openModel(name, bytes, side, threads)`,
// `await model.run(float32Input) -> Float32Array logits`, `model.info` (runtime, version, backend, threads, SIMD).
// Their WebAssembly files are served from node_modules by the demo's own server (never a CDN): the page works
// offline. Multi-threaded WASM needs SharedArrayBuffer, i.e. a cross-origin isolated page (COOP + COEP headers,
// which `python -m emo.web_demo serve` sends); without them both runtimes run on one thread and `info` says so.

import * as ort from 'onnxruntime-web';
import { loadLiteRt, loadAndCompile, Tensor, supportsFeature } from '@litertjs/core';

import { DemoError, baseName, inputGeometry, runtimeFor } from './core.js';

const ORT_WASM = new URL('./node_modules/onnxruntime-web/dist/', import.meta.url).href;
const LITERT_WASM = new URL('./node_modules/@litertjs/core/wasm/', import.meta.url).href;
// versions as installed (package-lock.json pins them); LiteRT.js does not export its own
export const VERSIONS = {
  'onnxruntime-web': ort.env.versions?.web ?? '?',
  '@litertjs/core': await fetch(new URL('./node_modules/@litertjs/core/package.json', import.meta.url))
    .then((r) => r.json()).then((p) => p.version).catch(() => '?'),
};

/** The tensor shape the runtime takes (a symbolic batch becomes 1). */
function inputShape(side) {
  const { height, width, layout, batch } = inputGeometry(side);
  return layout === 'NHWC' ? [batch, height, width, 3] : [batch, 3, height, width];
}

function describeError(name, runtime, error) {
  const text = String(error?.message ?? error).split('\n')[0].slice(0, 200);
  return new DemoError(`${baseName(name)}: ${runtime} could not load it (${text}); the file is damaged or not a ` +
    'model this runtime reads: re-export it with emo-export');
}

async function openOnnx(name, bytes, side, threads) {
  ort.env.wasm.wasmPaths = ORT_WASM;
  ort.env.wasm.numThreads = crossOriginIsolated ? threads : 1;
  ort.env.wasm.proxy = false;
  let session;
  try {
    session = await ort.InferenceSession.create(bytes, { executionProviders: ['wasm'], graphOptimizationLevel: 'all' });
  } catch (e) {
    throw describeError(name, 'onnxruntime-web', e);
  }
  const shape = inputShape(side);
  const [input] = session.inputNames;
  const [output] = session.outputNames;
  return {
    info: { runtime: 'onnxruntime-web', version: VERSIONS['onnxruntime-web'], backend: 'wasm',
            threads: ort.env.wasm.numThreads, simd: true, crossOriginIsolated },
    async run(x) {
      const feeds = { [input]: new ort.Tensor('float32', x, shape) };
      const result = await session.run(feeds);
      return Float32Array.from(result[output].data);
    },
    async release() { await session.release(); },
  };
}

let liteRtThreads = null;  // LiteRT.js loads one WASM module per page: threaded or not, fixed at first load

async function openTflite(name, bytes, side, threads) {
  const useThreads = crossOriginIsolated && threads > 1;
  if (liteRtThreads === null) {
    await loadLiteRt(LITERT_WASM, useThreads ? { threads: true } : {});
    liteRtThreads = useThreads;
  } else if (liteRtThreads !== useThreads) {
    throw new DemoError('LiteRT.js is already loaded with another thread setting: reload the page to change threads');
  }
  let model;
  try {
    model = await loadAndCompile(bytes, { accelerator: 'wasm', cpuOptions: { numThreads: useThreads ? threads : 1 } });
  } catch (e) {
    throw describeError(name, 'LiteRT.js', e);
  }
  const shape = inputShape(side);
  const details = model.getInputDetails()[0];
  if (details && Array.from(details.shape).join('x') !== shape.join('x')) {
    model.delete();
    throw new DemoError(`${baseName(name)} takes input ${Array.from(details.shape).join('x')} but its sidecar says ` +
      `${shape.join('x')}: the sidecar does not belong to this file; re-export it`);
  }
  return {
    info: { runtime: 'LiteRT.js', version: VERSIONS['@litertjs/core'], backend: 'wasm (XNNPACK)',
            threads: useThreads ? threads : 1, simd: await supportsFeature('relaxedSimd'), crossOriginIsolated },
    async run(x) {
      const input = new Tensor(x, shape);
      try {
        const outputs = await model.run(input);
        const logits = Float32Array.from(outputs[0].toTypedArray());
        for (const t of outputs) t.delete();
        return logits;
      } finally {
        input.delete();
      }
    },
    async release() { model.delete(); },
  };
}

/** A loaded model of the artifact `name` (its bytes and checked sidecar), in the runtime its file type needs. */
export async function openModel(name, bytes, side, threads) {
  const runtime = runtimeFor(name);
  const data = new Uint8Array(bytes);
  return runtime === 'LiteRT.js' ? openTflite(name, data, side, threads) : openOnnx(name, data, side, threads);
}
