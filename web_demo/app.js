// The page: load an artifact + sidecar (URL, files, a dropped folder), classify an image (file, drop, paste,
// camera, samples), show top-5 and latency. `window.emoDemo` is the automation hook the tests and
// `emo-bench --device browser` drive: load(modelUrl, {threads}), classify(imageUrl, {runs}), benchmark(...).

import {
  DemoError, baseName, checkArtifactMatches, checkSidecar, median, preprocess, runtimeFor, sha256Hex, sidecarName,
  suffixOf, topK,
} from './core.js';
import { openModel } from './runtimes.js';

const $ = (id) => document.getElementById(id);
const state = { model: null, side: null, name: null, threads: 2 };
const RUNS_DEFAULT = 10;

function setStatus(text) { $('status').textContent = text; }

function showError(error) {
  const message = error instanceof DemoError ? error.message : `unexpected error: ${error?.message ?? error}`;
  $('error').textContent = message;
  $('error').hidden = false;
  setStatus('');
  return message;
}

function clearError() { $('error').hidden = true; $('error').textContent = ''; }

/** Run `task`, showing its error on the page; re-throws for the automation hook (message = what the page shows). */
async function guarded(task) {
  clearError();
  try {
    return await task();
  } catch (e) {
    throw new Error(showError(e));
  }
}

async function fetchBytes(url, what) {
  let response;
  try {
    response = await fetch(url);
  } catch (e) {
    throw new DemoError(`could not fetch ${what} ${url}: ${e.message}`);
  }
  if (!response.ok) {
    throw new DemoError(`could not fetch ${what} ${baseName(url)} (HTTP ${response.status}); ` +
      (what === 'sidecar' ? 'every artifact needs the .json sidecar that emo-export writes next to it'
        : 'check the path'));
  }
  return response.arrayBuffer();
}

function parseSidecar(bytes, name) {
  let side;
  try {
    side = JSON.parse(new TextDecoder().decode(bytes));
  } catch (e) {
    throw new DemoError(`sidecar ${name} is not JSON (${e.message}); re-export the artifact with emo-export`);
  }
  return checkSidecar(side, name);
}

/** Check the pair (artifact bytes, sidecar bytes), open the runtime, show the model card. */
async function loadModel(name, artifactBytes, sidecarBytes, threads) {
  runtimeFor(name);
  const side = parseSidecar(sidecarBytes, sidecarName(baseName(name)));
  checkArtifactMatches(side, name, artifactBytes, await sha256Hex(artifactBytes));
  if (state.model) await state.model.release();
  state.model = null;
  setStatus(`Loading ${baseName(name)}…`);
  const start = performance.now();
  const model = await openModel(name, artifactBytes, side, threads);
  const loadMs = performance.now() - start;
  Object.assign(state, { model, side, name: baseName(name), threads, loadMs });
  showModelCard(side, model.info, loadMs);
  setStatus(`${baseName(name)} ready: classify an image.`);
  return { name: baseName(name), variant: side.variant, backend: side.backend, precision: side.precision,
           info: model.info, loadMs };
}

function showModelCard(side, info, loadMs) {
  const input = side.input;
  const norm = input.normalization;
  const parity = side.parity ?? {};
  const passed = typeof parity.status === 'string' && parity.status.startsWith('pass');
  const rows = [
    ['artifact', state.name],
    ['variant', `${side.variant} (${side.num_classes ?? '?'} classes)`],
    ['backend / precision', `${side.backend} / ${side.precision}`],
    ['input', `${input.name ?? 'image'} ${input.shape.join('×')} ${input.layout ?? 'NCHW'} float32 in [0, 1], ` +
      (norm.in_graph ? 'ImageNet normalisation inside the graph' : `normalised here (mean ${norm.mean}, std ${norm.std})`)],
    ['parity at export', parity.status ? `${parity.status} (max |diff| ${parity.max_abs_diff?.toExponential?.(1) ??
      '?'} vs PyTorch, checked with ${parity.checked_with ?? '?'})` : 'not recorded'],
    ['weights', side.weights?.random_init ? `random init (seed ${side.weights.seed})` : baseName(side.weights?.path ?? '?')],
    ['runtime', `${info.runtime} ${info.version}, ${info.backend}, ${info.threads} thread(s), SIMD ${info.simd ? 'on' : 'off'}` +
      (info.crossOriginIsolated ? '' : ' (page not cross-origin isolated: one thread)')],
    ['load', `${loadMs.toFixed(0)} ms`],
  ];
  const dl = document.createElement('dl');
  for (const [key, value] of rows) {
    const dt = document.createElement('dt');
    const dd = document.createElement('dd');
    dt.textContent = key;
    dd.textContent = value;
    if (key === 'parity at export') dd.className = passed ? 'ok' : 'bad';
    dl.append(dt, dd);
  }
  $('model-info').replaceChildren(dl);
  $('model-info').className = 'info';
  $('model-info').hidden = false;
}

async function loadFromUrl(url, threads) {
  const name = new URL(url, location.href).pathname;
  runtimeFor(name);  // a Core ML package or a .pte: the clear message before any download
  const [artifact, side] = await Promise.all([fetchBytes(url, 'artifact'), fetchBytes(sidecarName(url), 'sidecar')]);
  const loaded = await loadModel(name, artifact, side, threads);
  const listed = [...$('model-list').options].find((o) => o.value && new URL(o.value, location.href).pathname === name);
  $('model-list').value = listed ? listed.value : '';
  return loaded;
}

/** Dropped or picked files (a folder's files included): the first artifact, with the .json of the same stem. */
async function loadFromFiles(files, threads) {
  const byName = new Map(files.map((f) => [f.name, f]));
  const artifact = files.find((f) => suffixOf(f.name) !== '.json' && suffixOf(f.name) !== '');
  if (!artifact) throw new DemoError('no artifact among the dropped files: drop an .onnx, .ort or .tflite file with its .json');
  runtimeFor(artifact.name);
  const side = byName.get(sidecarName(artifact.name));
  if (!side) {
    throw new DemoError(`no sidecar ${sidecarName(artifact.name)} with ${artifact.name}: drop both files (or their ` +
      'folder); the sidecar says how to feed the model');
  }
  return loadModel(artifact.name, await artifact.arrayBuffer(), await side.arrayBuffer(), threads);
}

async function filesFromDrop(dataTransfer) {
  const entries = [...dataTransfer.items].map((item) => item.webkitGetAsEntry?.()).filter(Boolean);
  if (!entries.length) return [...dataTransfer.files];
  const files = [];
  for (const entry of entries) {
    if (entry.isFile) {
      files.push(await new Promise((resolve, reject) => entry.file(resolve, reject)));
    } else if (suffixOf(entry.name) === '.mlpackage') {
      runtimeFor(entry.name);  // throws the Core ML message
    } else {
      const children = await new Promise((resolve, reject) => entry.createReader().readEntries(resolve, reject));
      for (const child of children.filter((c) => c.isFile)) {
        files.push(await new Promise((resolve, reject) => child.file(resolve, reject)));
      }
      const packages = children.filter((c) => c.isDirectory && suffixOf(c.name) === '.mlpackage');
      if (packages.length && !files.some((f) => ['.onnx', '.ort', '.tflite'].includes(suffixOf(f.name)))) {
        runtimeFor(packages[0].name);
      }
    }
  }
  // a folder from emo-export: prefer the artifacts the browser runs
  files.sort((a, b) => Number(!['.onnx', '.ort', '.tflite'].includes(suffixOf(a.name))) -
    Number(!['.onnx', '.ort', '.tflite'].includes(suffixOf(b.name))));
  return files;
}

// ------------------------------------------------------------------------------------------------ images
async function decode(blob) {
  // Pillow ignores embedded colour profiles and applies the EXIF orientation (emo.data.load_image): the same here
  let bitmap;
  try {
    bitmap = await createImageBitmap(blob, { colorSpaceConversion: 'none', imageOrientation: 'from-image',
                                             premultiplyAlpha: 'none' });
  } catch (e) {
    throw new DemoError(`the image could not be decoded (${e.message}): use a JPEG, PNG or WebP photo`);
  }
  const canvas = new OffscreenCanvas(bitmap.width, bitmap.height);
  const ctx = canvas.getContext('2d', { willReadFrequently: true });
  ctx.drawImage(bitmap, 0, 0);
  const pixels = ctx.getImageData(0, 0, bitmap.width, bitmap.height).data;
  return { pixels, width: bitmap.width, height: bitmap.height, bitmap };
}

async function classifyBlob(blob, runs = RUNS_DEFAULT) {
  if (!state.model) throw new DemoError('load a model first (step 1)');
  setStatus('Classifying…');
  const { pixels, width, height } = await decode(blob);
  let start = performance.now();
  const x = preprocess(pixels, width, height, state.side);
  const preprocessMs = performance.now() - start;
  start = performance.now();
  const logits = await state.model.run(x);
  const firstMs = performance.now() - start;
  const times = [];
  for (let i = 0; i < runs; i++) {
    start = performance.now();
    await state.model.run(x);
    times.push(performance.now() - start);
  }
  const top5 = topK(logits, state.side, 5);
  const ms = { first: firstMs, median: times.length ? median(times) : firstMs, runs: times, preprocess: preprocessMs };
  showResult(blob, top5, ms);
  setStatus(`${state.name}: top-1 ${top5[0].label}`);
  return { logits: Array.from(logits), top5, ms, input: { width, height } };
}

function showResult(blob, top5, ms) {
  $('preview').src = URL.createObjectURL(blob);
  const rows = top5.map((t, i) => {
    const tr = document.createElement('tr');
    for (const text of [String(i + 1), t.label, `${(100 * t.probability).toFixed(2)} %`]) {
      const td = document.createElement('td');
      td.textContent = text;
      tr.append(td);
    }
    return tr;
  });
  $('top5').tBodies[0].replaceChildren(...rows);
  const info = state.model.info;
  $('timing').textContent = `first run ${ms.first.toFixed(1)} ms, median of ${ms.runs.length} runs ` +
    `${ms.median.toFixed(2)} ms (preprocessing ${ms.preprocess.toFixed(1)} ms) — ${info.runtime} ${info.backend}, ` +
    `${info.threads} thread(s), SIMD ${info.simd ? 'on' : 'off'}`;
  $('result').hidden = false;
}

/** The bench's loop: a fixed pseudo-random input (latency does not depend on values), raw latencies in ms. */
async function benchmark({ warmup = 5, iters = 50, minSeconds = null } = {}) {
  if (!state.model) throw new DemoError('load a model first');
  const size = state.side.input.shape.slice(1).reduce((a, b) => a * b, 1);
  const x = new Float32Array(size);
  let seed = 1;
  for (let i = 0; i < size; i++) { seed = (seed * 1103515245 + 12345) >>> 0; x[i] = seed / 2 ** 32; }
  let firstMs = null;
  for (let i = 0; i < Math.max(warmup, 1); i++) {
    const start = performance.now();
    await state.model.run(x);
    if (i === 0) firstMs = performance.now() - start;
  }
  const latencies = [];
  const begin = performance.now();
  while (latencies.length < (iters || 1) || (minSeconds && performance.now() - begin < minSeconds * 1000)) {
    const start = performance.now();
    await state.model.run(x);
    latencies.push(performance.now() - start);
  }
  return { loadMs: state.loadMs, firstMs, latenciesMs: latencies, info: state.model.info,
           userAgent: navigator.userAgent, hardwareConcurrency: navigator.hardwareConcurrency };
}

// ------------------------------------------------------------------------------------------------ wiring
function dropZone(element, onDrop) {
  element.addEventListener('dragover', (e) => { e.preventDefault(); element.classList.add('over'); });
  element.addEventListener('dragleave', () => element.classList.remove('over'));
  element.addEventListener('drop', (e) => {
    e.preventDefault();
    element.classList.remove('over');
    guarded(() => onDrop(e.dataTransfer)).catch(() => {});
  });
}

async function startCamera() {
  if (!navigator.mediaDevices?.getUserMedia) throw new DemoError('this browser gives the page no camera access');
  let stream;
  try {
    stream = await navigator.mediaDevices.getUserMedia({ video: { facingMode: 'environment' } });
  } catch (e) {
    throw new DemoError(`no camera: ${e.message}`);
  }
  const video = $('video');
  video.srcObject = stream;
  video.hidden = false;
  $('snap').hidden = false;
  await video.play();
}

async function snapFrame() {
  const video = $('video');
  const canvas = new OffscreenCanvas(video.videoWidth, video.videoHeight);
  canvas.getContext('2d').drawImage(video, 0, 0);
  return classifyBlob(await canvas.convertToBlob({ type: 'image/png' }));
}

async function listServedModels() {
  try {
    const response = await fetch('models/index.json');
    if (!response.ok) return;
    const { artifacts, samples } = await response.json();
    for (const name of artifacts) $('model-list').add(new Option(name, `models/${name}`));
    for (const name of samples ?? []) {
      const button = document.createElement('button');
      button.type = 'button';
      button.textContent = name;
      button.addEventListener('click', () => guarded(() => window.emoDemo.classify(`samples/${name}`)).catch(() => {}));
      $('samples').append(button, ' ');
    }
  } catch {
    // served without a model folder: files can still be dropped
  }
}

function threadsWanted(options) {
  const n = Number(options?.threads ?? $('threads').value);
  return Number.isInteger(n) && n >= 1 ? n : 1;
}

window.emoDemo = {
  load: (modelUrl, options = {}) => guarded(() => loadFromUrl(modelUrl, threadsWanted(options))),
  classify: (imageUrl, options = {}) => guarded(async () => {
    const blob = new Blob([await fetchBytes(imageUrl, 'image')]);
    return classifyBlob(blob, options.runs ?? RUNS_DEFAULT);
  }),
  benchmark: (options = {}) => guarded(() => benchmark(options)),
  error: () => ($('error').hidden ? null : $('error').textContent),
};

$('model-files').addEventListener('change', (e) =>
  guarded(() => loadFromFiles([...e.target.files], threadsWanted())).catch(() => {}));
$('model-list').addEventListener('change', (e) => {
  if (e.target.value) window.emoDemo.load(e.target.value).catch(() => {});
});
$('image-file').addEventListener('change', (e) => guarded(() => classifyBlob(e.target.files[0])).catch(() => {}));
$('camera').addEventListener('click', () => guarded(startCamera).catch(() => {}));
$('snap').addEventListener('click', () => guarded(snapFrame).catch(() => {}));
dropZone($('model-drop'), async (dt) => loadFromFiles(await filesFromDrop(dt), threadsWanted()));
dropZone($('image-drop'), async (dt) => classifyBlob(dt.files[0]));
document.addEventListener('paste', (e) => {
  const item = [...(e.clipboardData?.items ?? [])].find((i) => i.type.startsWith('image/'));
  if (item) guarded(() => classifyBlob(item.getAsFile())).catch(() => {});
});

const params = new URLSearchParams(location.search);
if (params.get('threads')) $('threads').value = params.get('threads');
await listServedModels();
setStatus(crossOriginIsolated ? 'Ready: load a model.' : 'Ready (not cross-origin isolated: runtimes use one thread).');
if (params.get('model')) await window.emoDemo.load(params.get('model')).catch(() => {});
window.emoDemo.ready = true;
