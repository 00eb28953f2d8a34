// The page: load an artifact + sidecar (URL, files, a dropped folder), classify an image (file, drop, paste,
// camera, samples), show top-5 and latency. `window.emoDemo` is the automation hook the tests and
// `emo-bench --device browser` drive: load(modelUrl, {threads}), classify(imageUrl, {runs}), benchmark(...).

import {
  DemoError, MAX_ARTIFACT_BYTES, MAX_IMAGE_PIXELS, MAX_SIDECAR_BYTES, MAX_THREADS, baseName, checkArtifactMatches,
  checkSidecar, checkThreads, median, parseJson, preprocess, printable, runtimeFor, sameOriginUrl, sha256Hex,
  sidecarName, suffixOf, topK,
} from './core.js';
import { openModel } from './runtimes.js';

const $ = (id) => document.getElementById(id);
const state = { model: null, side: null, name: null, threads: 2, source: null };
const RUNS_DEFAULT = 10;
const CORES = navigator.hardwareConcurrency;
const BROWSER_SUFFIXES = ['.onnx', '.ort', '.tflite'];

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

/** The file name a URL names (its last path segment, percent-decoded once), e.g. 'p%41.onnx' for .../p%2541.onnx. */
function fileNameOf(url) {
  const segment = url.pathname.split('/').pop();
  try {
    return decodeURIComponent(segment);
  } catch {
    throw new DemoError(`the URL ${printable(url.href, 100)} is not a valid percent-encoded file name`);
  }
}

/** The bytes at a same-origin `url` (a URL object), refused beyond `limit` bytes. */
async function fetchBytes(url, what, limit = Infinity) {
  let response;
  try {
    response = await fetch(url, { redirect: 'error', credentials: 'same-origin' });
  } catch (e) {
    throw new DemoError(`could not fetch ${what} ${printable(url.pathname, 100)}: ${printable(e.message, 100)}`);
  }
  if (!response.ok) {
    throw new DemoError(`could not fetch ${what} ${printable(fileNameOf(url), 100)} (HTTP ${response.status}); ` +
      (what === 'sidecar' ? 'every artifact needs the .json sidecar that emo-export writes next to it'
        : 'check the path'));
  }
  if (Number(response.headers.get('Content-Length') ?? 0) > limit) tooLarge(what, limit);
  const bytes = await response.arrayBuffer();
  if (bytes.byteLength > limit) tooLarge(what, limit);
  return bytes;
}

function tooLarge(what, limit) {
  throw new DemoError(`the ${what} is larger than ${Math.floor(limit / 2 ** 20)} MiB: it is not a file emo-export ` +
    'wrote; re-export the artifact with emo-export');
}

function parseSidecar(bytes, name) {
  if (bytes.byteLength > MAX_SIDECAR_BYTES) tooLarge('sidecar', MAX_SIDECAR_BYTES);
  const side = parseJson(new TextDecoder().decode(bytes), `sidecar ${printable(name, 100)}`);
  return checkSidecar(side, name);
}

/** Check the pair (artifact bytes, sidecar bytes), open the runtime, show the model card (with `source`). */
async function loadModel(name, artifactBytes, sidecarBytes, threads, source) {
  runtimeFor(name);
  const side = parseSidecar(sidecarBytes, sidecarName(baseName(name)));
  const sha256 = await sha256Hex(artifactBytes);
  checkArtifactMatches(side, name, artifactBytes, sha256);
  if (state.model) await state.model.release();
  state.model = null;
  setStatus(`Loading ${printable(baseName(name))}…`);
  const start = performance.now();
  const model = await openModel(name, artifactBytes, side, threads);
  const loadMs = performance.now() - start;
  Object.assign(state, { model, side, name: baseName(name), threads, loadMs, source });
  showModelCard(side, model.info, loadMs);
  setStatus(`${printable(baseName(name))} ready: classify an image.`);
  return { name: baseName(name), variant: side.variant, backend: side.backend, precision: side.precision,
           sha256, source, info: model.info, loadMs };
}

function showModelCard(side, info, loadMs) {
  const input = side.input;
  const norm = input.normalization;
  const parity = side.parity ?? {};
  const passed = typeof parity.status === 'string' && parity.status.startsWith('pass');
  const rows = [
    ['artifact', state.name],
    ['source', state.source],
    ['variant', `${side.variant} (${side.num_classes ?? '?'} classes)`],
    ['backend / precision', `${side.backend} / ${side.precision}`],
    ['input', `${input.name ?? 'image'} ${input.shape.join('×')} ${input.layout ?? 'NCHW'} float32 in [0, 1], ` +
      (norm.in_graph ? 'ImageNet normalisation inside the graph' : `normalised here (mean ${norm.mean}, std ${norm.std})`)],
    ['parity at export', parity.status ? `${parity.status} (max |diff| ${parity.max_abs_diff?.toExponential?.(1) ??
      '?'} vs PyTorch, checked with ${parity.checked_with ?? '?'})` : 'not recorded'],
    ['weights', describeWeights(side.weights)],
    ['runtime', `${info.runtime} ${info.version}, ${info.backend}, ${info.threads} thread(s), SIMD ${info.simd ? 'on' : 'off'}` +
      (info.crossOriginIsolated ? '' : ' (page not cross-origin isolated: one thread)')],
    ['load', `${loadMs.toFixed(0)} ms`],
  ];
  const dl = document.createElement('dl');
  for (const [key, value] of rows) {
    const dt = document.createElement('dt');
    const dd = document.createElement('dd');
    dt.textContent = key;
    dd.textContent = printable(value, 300);  // text only, never HTML; control characters made visible
    if (key === 'parity at export') dd.className = passed ? 'ok' : 'bad';
    dl.append(dt, dd);
  }
  $('model-info').replaceChildren(dl);
  $('model-info').className = 'info';
  $('model-info').hidden = false;
}

/** The checkpoint behind an artifact: its file name and sha256 prefix, so two checkpoints named best.pth differ. */
function describeWeights(weights) {
  if (weights?.random_init) return `random init (seed ${weights.seed})`;
  const digest = typeof weights?.sha256 === 'string' ? ` (sha256 ${weights.sha256.slice(0, 8)}…)` : '';
  return `${baseName(String(weights?.path ?? '?').replaceAll('\\', '/'))}${digest}`;
}

/** A model by URL: only from this page's own origin (sameOriginUrl); the name is the URL's decoded file name. */
async function loadFromUrl(text, threads) {
  const url = sameOriginUrl(text, location.href, 'model URL');
  const name = fileNameOf(url);
  runtimeFor(name);  // a Core ML package or a .pte: the clear message before any download
  const folder = url.pathname.slice(0, url.pathname.lastIndexOf('/') + 1);
  const sidecarUrl = new URL(folder + encodeURIComponent(sidecarName(name)), url.origin);
  const artifactUrl = new URL(url.pathname, url.origin);  // no query, no fragment
  const [artifact, side] = await Promise.all([fetchBytes(artifactUrl, 'artifact', MAX_ARTIFACT_BYTES),
                                              fetchBytes(sidecarUrl, 'sidecar', MAX_SIDECAR_BYTES)]);
  const loaded = await loadModel(name, artifact, side, threads, `${artifactUrl.href} (this page's server)`);
  const listed = [...$('model-list').options].find((o) => o.value &&
    new URL(o.value, location.href).pathname === url.pathname);
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
    throw new DemoError(`no sidecar ${printable(sidecarName(artifact.name))} with ${printable(artifact.name)}: drop ` +
      'both files (or their folder); the sidecar says how to feed the model');
  }
  if (side.size > MAX_SIDECAR_BYTES) tooLarge('sidecar', MAX_SIDECAR_BYTES);
  if (artifact.size > MAX_ARTIFACT_BYTES) tooLarge('artifact', MAX_ARTIFACT_BYTES);
  return loadModel(artifact.name, await artifact.arrayBuffer(), await side.arrayBuffer(), threads,
                   `your file ${artifact.name} (picked on this computer)`);
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
      if (packages.length && !files.some((f) => BROWSER_SUFFIXES.includes(suffixOf(f.name)))) {
        runtimeFor(packages[0].name);
      }
    }
  }
  // a folder from emo-export: prefer the artifacts the browser runs
  files.sort((a, b) => Number(!BROWSER_SUFFIXES.includes(suffixOf(a.name))) -
    Number(!BROWSER_SUFFIXES.includes(suffixOf(b.name))));
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
    throw new DemoError(`the image could not be decoded (${printable(e.message, 100)}): use a JPEG, PNG or WebP photo`);
  }
  if (bitmap.width * bitmap.height > MAX_IMAGE_PIXELS) {
    bitmap.close();
    throw new DemoError(`the image is ${bitmap.width}x${bitmap.height}: at most ${MAX_IMAGE_PIXELS / 1e6} ` +
      'megapixels; use a smaller photo');
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
  setStatus(`${printable(state.name)}: top-1 ${printable(top5[0].label)}`);
  return { logits: Array.from(logits), top5, ms, input: { width, height } };
}

function showResult(blob, top5, ms) {
  $('preview').src = URL.createObjectURL(blob);
  const rows = top5.map((t, i) => {
    const tr = document.createElement('tr');
    for (const text of [String(i + 1), t.label, `${(100 * t.probability).toFixed(2)} %`]) {
      const td = document.createElement('td');
      td.textContent = printable(text);  // a label is text from a file: never HTML, control characters visible
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

/** What tells one served artifact from another in the list: its sidecar's variant, precision, input, weights. */
function describeListed(entry) {
  const parts = [entry.variant, entry.precision, entry.input, entry.weights && `weights ${entry.weights}`,
                 entry.note].filter(Boolean);
  return printable(parts.length ? `${entry.name} — ${parts.join(', ')}` : entry.name, 160);
}

async function listServedModels() {
  let index;
  try {
    const response = await fetch('models/index.json');
    if (!response.ok) return;
    index = await response.json();
  } catch {
    return;  // served without a model folder: files can still be dropped
  }
  for (const entry of index.artifacts ?? []) {
    if (typeof entry?.name !== 'string') continue;
    $('model-list').add(new Option(describeListed(entry), `models/${encodeURIComponent(entry.name)}`));
  }
  for (const name of index.samples ?? []) {
    const button = document.createElement('button');
    button.type = 'button';
    button.textContent = printable(name);
    button.addEventListener('click', () =>
      window.emoDemo.classify(`samples/${encodeURIComponent(name)}`).catch(() => {}));
    $('samples').append(button, ' ');
  }
  if (index.error) showError(new DemoError(printable(index.error, 300)));
}

function threadsWanted(options) {
  return checkThreads(options?.threads ?? $('threads').value, CORES);
}

window.emoDemo = {
  load: (modelUrl, options = {}) => guarded(() => loadFromUrl(modelUrl, threadsWanted(options))),
  classify: (imageUrl, options = {}) => guarded(async () => {
    const blob = new Blob([await fetchBytes(sameOriginUrl(imageUrl, location.href, 'image URL'), 'image')]);
    return classifyBlob(blob, options.runs ?? RUNS_DEFAULT);
  }),
  benchmark: (options = {}) => guarded(() => benchmark(options)),
  error: () => ($('error').hidden ? null : $('error').textContent),
};

$('model-files').addEventListener('change', (e) =>
  guarded(async () => loadFromFiles([...e.target.files], threadsWanted())).catch(() => {}));
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
const maxThreads = Math.max(1, Math.min(MAX_THREADS, CORES || 1));
$('threads').max = String(maxThreads);
$('threads').value = String(Math.min(2, maxThreads));
let threadsOk = true;
if (params.has('threads')) {
  try {
    $('threads').value = String(checkThreads(params.get('threads'), CORES, '?threads='));
  } catch (e) {
    threadsOk = false;  // refused with its message; the model in the URL is not loaded with a wrong setting
    showError(e);
  }
}
await listServedModels();
setStatus(crossOriginIsolated ? 'Ready: load a model.' : 'Ready (not cross-origin isolated: runtimes use one thread).');
if (params.get('model') && threadsOk) await window.emoDemo.load(params.get('model')).catch(() => {});
window.emoDemo.ready = true;
