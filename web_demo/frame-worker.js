// The camera's frames, off the page's main thread (a module Web Worker, started by camera.js): each frame arrives as
// an ImageBitmap (transferred, not copied), is read into RGBA pixels on an OffscreenCanvas, preprocessed exactly as
// `classify` preprocesses a photo (core.js), and, for a runtime that runs in a worker (onnxruntime-web), classified
// here too. For LiteRT.js (main thread only, see runtime-litert.js) the worker returns the input tensor instead.
// Requests are served one at a time, in order: the page never sends a frame while one is in flight (frames are
// dropped, not queued), and a runtime session is never run twice at once.

import { preprocess } from './core.js';

let model = null;
let side = null;
let contract = null;
let queue = Promise.resolve();

self.addEventListener('message', (event) => {
  queue = queue.then(() => handle(event.data));
});

function reply(id, body, transfer = []) {
  self.postMessage({ id, ...body }, transfer);
}

async function handle(message) {
  const { id, op } = message;
  try {
    if (op === 'open') {
      await release();
      ({ side, contract } = message);
      if (message.runtime === 'onnxruntime') {  // the only runtime family that runs in a worker (runtimes.js)
        const runtime = await import('./runtime-ort.js');
        model = await runtime.open(message.name, new Uint8Array(message.bytes), side, message.options);
      }
      reply(id, { info: model?.info ?? null });
    } else if (op === 'frame') {
      const { bitmap } = message;
      const start = performance.now();
      const canvas = new OffscreenCanvas(bitmap.width, bitmap.height);
      const ctx = canvas.getContext('2d', { willReadFrequently: true });
      ctx.drawImage(bitmap, 0, 0);
      const pixels = ctx.getImageData(0, 0, bitmap.width, bitmap.height).data;
      const input = { width: bitmap.width, height: bitmap.height };
      const scope = self.constructor.name;  // DedicatedWorkerGlobalScope: where this ran, for the page to show
      bitmap.close();
      const x = preprocess(pixels, input.width, input.height, side, contract);
      const preprocessMs = performance.now() - start;
      if (!model) {
        reply(id, { x, input, scope, ms: { preprocess: preprocessMs } }, [x.buffer]);
        return;
      }
      const begin = performance.now();
      const logits = await model.run(x);
      reply(id, { logits, input, scope, ms: { preprocess: preprocessMs, inference: performance.now() - begin } },
            [logits.buffer]);
    } else if (op === 'close') {
      await release();
      reply(id, {});
    }
  } catch (e) {
    reply(id, { error: String(e?.message ?? e), field: e?.field, reason: e?.reason });
  }
}

async function release() {
  const old = model;
  model = null;
  if (old) await old.release();
}
