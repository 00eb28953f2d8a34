// The page: load an artifact + sidecar (URL, files, a dropped folder), classify an image (file, drop, paste, samples)
// or the live camera, show top-5, latency and the parity of the bundled examples on this device. An installable web
// app: a manifest, and a service worker (sw.js) that keeps the page, the runtimes and the loaded models for offline
// use. `window.emoDemo` is the automation hook the tests and `emo-bench --device browser` drive:
//   load(modelUrl, {threads, backend}), classify(imageUrl, {runs}), benchmark({warmup, iters, minSeconds}),
//   camera.start() / camera.stop(), classifyCamera(), offline.ready(), offline.status(), error().

import { Camera } from './camera.js';
import { readExamples } from './contract.js';
import {
  DemoError, MAX_ARTIFACT_BYTES, MAX_IMAGE_PIXELS, MAX_THREADS, baseName, browserSuffixes, checkArtifactMatches,
  checkSidecar, checkThreads, median, preprocess, printable, runExamples, runtimeFor, sameOriginUrl, sha256Hex,
  sidecarName, suffixOf, topK,
} from './core.js';
import { BACKENDS, gpuAdapter, openModel } from './runtimes.js';

const $ = (id) => document.getElementById(id);
const state = { model: null, side: null, name: null, threads: 2, source: null, backend: 'wasm', files: null };
const RUNS_DEFAULT = 10;
const CORES = navigator.hardwareConcurrency;
const MODEL_CACHE = 'emo-web-demo-models-1';  // sw.js falls back to it offline

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

/** The bytes at a same-origin `url` (a URL object), refused beyond `limit` bytes; null for a 404 when `optional`. */
async function fetchBytes(url, what, limit = Infinity, optional = false) {
  let response;
  try {
    response = await fetch(url, { redirect: 'error', credentials: 'same-origin' });
  } catch (e) {
    throw new DemoError(`could not fetch ${what} ${printable(url.pathname, 100)}: ${printable(e.message, 100)}`);
  }
  if (optional && response.status === 404) return null;
  if (response.headers.get('X-Emo-Offline')) {
    throw new DemoError(`this device is offline and the ${what} ${printable(fileNameOf(url), 100)} was not kept ` +
      'here: open it once while online (the page keeps what it loaded for offline use)');
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

// ------------------------------------------------------------------------------------------------ the contract
/** The artifact contract (vocabulary, schemas, parity policy, limits) as the server builds it from emo.contract. */
async function loadContract() {
  try {
    const response = await fetch('contract.json');
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    return await response.json();
  } catch (e) {
    throw new DemoError(`the page could not load the artifact contract contract.json (${printable(e.message, 80)}): ` +
      'serve the page with emo-web-demo serve DIR');
  }
}

let contract = null;

// ------------------------------------------------------------------------------------------------ models
/** Models the user loaded, for offline visits: the artifact (tagged with its sha256), its sidecar and examples. */
async function modelCache() {
  try {
    return globalThis.caches ? await caches.open(MODEL_CACHE) : null;  // no Cache API outside a secure context
  } catch {
    return null;
  }
}

async function cachedArtifact(url, sha256) {
  const hit = await (await modelCache())?.match(url);
  return hit && hit.headers.get('X-Emo-Sha256') === sha256 ? hit.arrayBuffer() : null;
}

async function keepModel(entries) {
  const cache = await modelCache();
  for (const [url, bytes, type, sha256] of entries) {
    if (!cache || !url || !bytes) continue;
    const headers = { 'Content-Type': type, ...(sha256 ? { 'X-Emo-Sha256': sha256 } : {}) };
    await cache.put(url, new Response(bytes, { headers })).catch(() => {});  // a full quota only costs offline use
  }
}

/** Check the pair (artifact bytes, sidecar bytes), open the runtime, run the bundled examples, show the card. */
async function loadModel(name, artifactBytes, sidecarBytes, options, source, examplesFor) {
  runtimeFor(name, contract);
  const side = checkSidecar(sidecarBytes, sidecarName(baseName(name), contract), contract);
  const sha256 = await sha256Hex(artifactBytes);
  checkArtifactMatches(side, name, artifactBytes, sha256, contract);
  let examples = null;
  let examplesBytes = null;
  if (side.examples) {
    examplesBytes = await examplesFor(side.examples);
    examples = examplesBytes && readExamples(examplesBytes, printable(side.examples, 100), contract);
  }
  if (state.model) await state.model.release();
  state.model = null;
  setStatus(`Loading ${printable(baseName(name))}…`);
  const start = performance.now();
  const model = serialized(await openModel(name, artifactBytes, side, { ...options, contract }));
  const loadMs = performance.now() - start;
  const parity = examples ? await runExamples(model.run, examples, side, contract)
    : { status: `not checked: ${side.examples ? `no ${side.examples} beside the artifact`
      : 'the sidecar names no examples file'}` };
  Object.assign(state, { model, side, name: baseName(name), threads: options.threads, loadMs, source, parity,
                         bytes: artifactBytes, sidecarBytes, examplesBytes, backend: options.backend });
  showModelCard(side, model.info, loadMs, parity);
  setStatus(`${printable(baseName(name))} ready: classify an image.`);
  if (camera.running) await camera.useModel(cameraModel());
  return { name: baseName(name), variant: side.variant, backend: side.backend, precision: side.precision,
           sha256, source, info: model.info, loadMs, parity, examples: side.examples ?? null };
}

/** One run at a time on a model (the camera loop and the hook share it; a runtime session is not reentrant). */
function serialized(model) {
  let queue = Promise.resolve();
  const run = (x) => {
    const result = queue.then(() => model.run(x));
    queue = result.catch(() => {});
    return result;
  };
  return { ...model, run };
}

function describeBackend(info) {
  const ran = `${info.backend}${info.detail ? ` (${info.detail})` : ''}`;
  const adapter = info.adapter ? `, adapter ${info.adapter.vendor} ${info.adapter.architecture}` +
    `${info.adapter.fallback ? ' (software)' : ''}` : '';
  return `${ran}${adapter}${info.fallback ? ` — ${info.fallback}` : ''}`;
}

function describeParity(parity, info) {
  if (!('max_abs_diff' in parity)) return parity.status;
  const bounds = Object.entries(parity.tolerance).map(([k, v]) => `${k} ${k === 'max_abs_diff' ? '≤' : '≥'} ${v}`);
  return `${parity.status}: max |diff| ${parity.max_abs_diff.toExponential(1)}, cosine ` +
    `${parity.cosine.toFixed(6)}, top-1 ${(100 * parity.top1_agreement).toFixed(0)} % on ${parity.num_examples} ` +
    `bundled examples vs PyTorch (tolerance ${bounds.join(', ')}; ${info.runtime} ${info.backend})`;
}

function showModelCard(side, info, loadMs, parity) {
  const input = side.input;
  const norm = input.normalization;
  const crop = input.preprocessing?.crop_pct ?? contract.limits.crop_pct;
  const exported = side.parity ?? {};
  const rows = [
    ['artifact', state.name],
    ['source', state.source],
    ['variant', `${side.variant} (${side.num_classes} classes)`],
    ['format / precision', `${side.backend} / ${side.precision}`],
    ['input', `${input.name ?? 'image'} ${input.shape.join('×')} ${input.layout ?? 'NCHW'} float32 in [0, 1], ` +
      `shorter side to size / ${crop}, centre crop, ` +
      (norm.in_graph ? 'ImageNet normalisation inside the graph' : `normalised here (mean ${norm.mean}, std ${norm.std})`)],
    ['parity at export', exported.status ? `${exported.status} (max |diff| ${exported.max_abs_diff?.toExponential?.(1) ??
      '?'} vs PyTorch, checked with ${exported.checked_with ?? '?'})` : 'not recorded'],
    ['parity here', describeParity(parity, info)],
    ['weights', describeWeights(side.weights)],
    ['runtime', `${info.runtime} ${info.version}, ${info.threads} thread(s), SIMD ${info.simd ? 'on' : 'off'}` +
      (info.crossOriginIsolated ? '' : ' (page not cross-origin isolated: one thread)')],
    ['backend', describeBackend(info)],
    ['load', `${loadMs.toFixed(0)} ms`],
  ];
  const dl = document.createElement('dl');
  for (const [key, value] of rows) {
    const dt = document.createElement('dt');
    const dd = document.createElement('dd');
    dt.textContent = key;
    dd.textContent = printable(value, 400);  // text only, never HTML; control characters made visible
    if (key === 'parity at export') dd.className = String(exported.status).startsWith('pass') ? 'ok' : 'bad';
    if (key === 'parity here') dd.className = parity.status === 'passed' ? 'ok' : 'bad';
    if (key === 'backend' && info.fallback) dd.className = 'bad';
    dl.append(dt, dd);
  }
  $('model-info').replaceChildren(dl);
  $('model-info').className = 'info';
  $('model-info').hidden = false;
}

/** The checkpoint behind an artifact: its file name and sha256 prefix, so two checkpoints named best.pth differ. */
function describeWeights(weights) {
  if (weights?.random_init) return `random init (seed ${weights.seed ?? 0})`;
  const digest = typeof weights?.sha256 === 'string' ? ` (sha256 ${weights.sha256.slice(0, 8)}…)` : '';
  return `${baseName(String(weights?.path ?? '?').replaceAll('\\', '/'))}${digest}`;
}

/** A model by URL: only from this page's own origin (sameOriginUrl); the name is the URL's decoded file name. The
 * sidecar comes from the network when there is one (a new export is seen at once); the artifact from the model
 * cache when the sidecar's sha256 is the cached one's, else from the network, and is then kept for offline use. */
async function loadFromUrl(text, options) {
  const url = sameOriginUrl(text, location.href, 'model URL');
  const name = fileNameOf(url);
  runtimeFor(name, contract);  // a Core ML package or a .pte: the clear message before any download
  const folder = url.pathname.slice(0, url.pathname.lastIndexOf('/') + 1);
  const near = (file) => new URL(folder + encodeURIComponent(file), url.origin);
  const sidecarUrl = near(sidecarName(name, contract));
  const artifactUrl = new URL(url.pathname, url.origin);  // no query, no fragment
  const sidecar = await fetchBytes(sidecarUrl, 'sidecar', contract.limits.max_sidecar_bytes);
  const expected = checkSidecar(sidecar, sidecarName(name, contract), contract).sha256;
  let artifact = await cachedArtifact(artifactUrl, expected);
  const cached = artifact !== null;
  artifact ??= await fetchBytes(artifactUrl, 'artifact', MAX_ARTIFACT_BYTES);
  let examplesUrl = null;
  const examplesFor = (file) => {
    examplesUrl = near(file);
    return fetchBytes(examplesUrl, 'examples file', contract.limits.max_examples_bytes, true);
  };
  const loaded = await loadModel(name, artifact, sidecar, options, `${artifactUrl.href} (this page's server)`,
                                 examplesFor);
  await keepModel([[artifactUrl, cached ? null : artifact, 'application/octet-stream', loaded.sha256],
                   [sidecarUrl, sidecar, 'application/json'],
                   [examplesUrl, state.examplesBytes, 'application/json']]);
  const listed = [...$('model-list').options].find((o) => o.value &&
    new URL(o.value, location.href).pathname === url.pathname);
  $('model-list').value = listed ? listed.value : '';
  showImagesOf(folder);
  return { ...loaded, cached };
}

/** Dropped or picked files (a folder's files included): the first artifact, with the .json of the same stem. */
async function loadFromFiles(files, options) {
  const byName = new Map(files.map((f) => [f.name, f]));
  const suffixes = browserSuffixes(contract);
  const artifact = files.find((f) => suffixOf(f.name) !== '.json' && suffixOf(f.name) !== '');
  if (!artifact) {
    throw new DemoError(`no artifact among the dropped files: drop an ${suffixes.join(', ')} file with its .json`);
  }
  runtimeFor(artifact.name, contract);
  const side = byName.get(sidecarName(artifact.name, contract));
  if (!side) {
    throw new DemoError(`no sidecar ${printable(sidecarName(artifact.name, contract))} with ` +
      `${printable(artifact.name)}: drop both files (or their folder); the sidecar says how to feed the model`);
  }
  if (side.size > contract.limits.max_sidecar_bytes) tooLarge('sidecar', contract.limits.max_sidecar_bytes);
  if (artifact.size > MAX_ARTIFACT_BYTES) tooLarge('artifact', MAX_ARTIFACT_BYTES);
  const examplesFor = async (file) => (byName.get(file) ? byName.get(file).arrayBuffer() : null);
  return loadModel(artifact.name, await artifact.arrayBuffer(), await side.arrayBuffer(), options,
                   `your file ${artifact.name} (picked on this computer)`, examplesFor);
}

async function filesFromDrop(dataTransfer) {
  const entries = [...dataTransfer.items].map((item) => item.webkitGetAsEntry?.()).filter(Boolean);
  if (!entries.length) return [...dataTransfer.files];
  const suffixes = browserSuffixes(contract);
  const files = [];
  for (const entry of entries) {
    if (entry.isFile) {
      files.push(await new Promise((resolve, reject) => entry.file(resolve, reject)));
    } else if (contract.vocabulary.formats.some((f) => f.suffix === suffixOf(entry.name))) {
      runtimeFor(entry.name, contract);  // an artifact that is a folder (Core ML): its message
    } else {
      const children = await new Promise((resolve, reject) => entry.createReader().readEntries(resolve, reject));
      for (const child of children.filter((c) => c.isFile)) {
        files.push(await new Promise((resolve, reject) => child.file(resolve, reject)));
      }
      const packages = children.filter((c) => c.isDirectory && contract.vocabulary.formats.some(
        (f) => f.suffix === suffixOf(c.name)));
      if (packages.length && !files.some((f) => suffixes.includes(suffixOf(f.name)))) runtimeFor(packages[0].name, contract);
    }
  }
  // a folder from emo-export: prefer the artifacts the browser runs
  files.sort((a, b) => Number(!suffixes.includes(suffixOf(a.name))) - Number(!suffixes.includes(suffixOf(b.name))));
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
  bitmap.close();
  return { pixels, width: canvas.width, height: canvas.height };
}

async function classifyBlob(blob, runs = RUNS_DEFAULT) {
  if (!state.model) throw new DemoError('load a model first (step 1)');
  setStatus('Classifying…');
  const { pixels, width, height } = await decode(blob);
  let start = performance.now();
  const x = preprocess(pixels, width, height, state.side, contract);
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

function top5Rows(top5) {
  return top5.map((t, i) => {
    const tr = document.createElement('tr');
    for (const text of [String(i + 1), t.label, `${(100 * t.probability).toFixed(2)} %`]) {
      const td = document.createElement('td');
      td.textContent = printable(text);  // a label is text from a file: never HTML, control characters visible
      tr.append(td);
    }
    return tr;
  });
}

function showResult(blob, top5, ms) {
  $('preview').src = URL.createObjectURL(blob);
  $('top5').tBodies[0].replaceChildren(...top5Rows(top5));
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
  return { loadMs: state.loadMs, firstMs, latenciesMs: latencies, info: state.model.info, parity: state.parity,
           userAgent: navigator.userAgent, hardwareConcurrency: navigator.hardwareConcurrency };
}

// ------------------------------------------------------------------------------------------------ the camera
const camera = new Camera({ video: $('video'), plot: $('latency-plot'), onResult: showLive,
                            onError: (e) => showError(new DemoError(`camera: ${printable(e.message, 200)}`)) });

function cameraModel() {
  const format = runtimeFor(state.name, contract);
  return { name: state.name, bytes: state.bytes, side: state.side, contract, format, threads: state.threads,
           backend: state.model.info.backend, mainModel: state.model, workerCapable: state.model.info.workerCapable };
}

async function startCamera() {
  let described;
  try {
    described = await camera.start();
  } catch (e) {
    camera.stop();
    throw new DemoError(`no camera: ${printable(e.message, 200)} (allow the page to use the camera; on a phone the ` +
      'page must come from localhost or https)');
  }
  if (state.model) await camera.useModel(cameraModel());
  $('live').hidden = false;
  $('camera').hidden = true;
  $('camera-stop').hidden = false;
  setStatus(state.model ? 'Camera on: classifying its frames.' : 'Camera on: load a model to classify its frames.');
  return { ...described, where: camera.model?.where ?? null };
}

function stopCamera() {
  camera.stop();
  $('live').hidden = true;
  $('camera').hidden = false;
  $('camera-stop').hidden = true;
  setStatus('Camera off.');
}

/** The result object of `classify` for the camera's current frame (plus where it ran and the frame counts). */
async function classifyCamera() {
  if (!camera.running) throw new DemoError('start the camera first (window.emoDemo.camera.start())');
  if (!state.model) throw new DemoError('load a model first (step 1)');
  if (!camera.model) await camera.useModel(cameraModel());
  const frame = await camera.classifyFrame();
  const result = liveResult(frame);
  showLive(frame, { ...camera.stats });
  return result;
}

function liveResult(frame) {
  return { logits: Array.from(frame.logits), top5: topK(frame.logits, state.side, 5),
           ms: { first: frame.ms.total, median: frame.ms.total, runs: [], preprocess: frame.ms.preprocess,
                 inference: frame.ms.inference, total: frame.ms.total },
           input: frame.input, where: frame.where, scope: frame.scope };
}

function showLive(frame, stats) {
  const top5 = topK(frame.logits, state.side, 5);
  $('live-top5').tBodies[0].replaceChildren(...top5Rows(top5));
  const info = state.model?.info ?? {};
  $('live-timing').textContent = `${frame.ms.total.toFixed(1)} ms per frame (preprocessing ` +
    `${frame.ms.preprocess.toFixed(1)} ms, inference ${frame.ms.inference.toFixed(1)} ms) in ${frame.where}; ` +
    `${info.runtime} ${info.backend}; ${frame.input.width}x${frame.input.height}; ${stats.classified} frames ` +
    `classified, ${stats.dropped} dropped while busy`;
}

// ------------------------------------------------------------------------------------------------ offline
const offline = { version: null, registration: null, note: '' };

function setOfflineNote(text) {
  offline.note = text;
  $('offline-status').textContent = text;
}

/** Register sw.js?v=VERSION (the server's hash of the app shell): a new version installs a new worker. */
async function registerServiceWorker() {
  if (params.get('offline') === 'off') {  // emo-bench: no caching in the background while it times
    setOfflineNote('Offline use is off for this visit (?offline=off).');
    return;
  }
  if (!('serviceWorker' in navigator)) {
    setOfflineNote('Offline use needs a secure context (https, or this computer\'s localhost).');
    return;
  }
  try {
    const response = await fetch('version.json', { cache: 'no-store' });
    offline.version = (await response.json()).version;
  } catch {
    offline.registration = await navigator.serviceWorker.getRegistration();
    setOfflineNote(offline.registration ? 'Offline: the page, runtimes and models kept on this device.' : '');
    return;  // offline: the installed worker keeps serving
  }
  const hadController = Boolean(navigator.serviceWorker.controller);
  navigator.serviceWorker.addEventListener('controllerchange', () => {
    if (hadController) setOfflineNote('A new version of the page was installed: reload to use it.');
    else keepEarlyFetches();  // the first visit: what the page fetched before the worker ran
  });
  offline.registration = await navigator.serviceWorker.register(`sw.js?v=${encodeURIComponent(offline.version)}`,
                                                                { updateViaCache: 'none' });
  await navigator.serviceWorker.ready;
  setOfflineNote('Works offline: the page, its runtimes and the models you load are kept on this device.');
}

/** Resolves when a service worker controls the page (models loaded from then on are kept): {version, caches}. */
async function offlineReady(timeoutMs = 60000) {
  if (!('serviceWorker' in navigator)) throw new DemoError('no service worker: the page is not in a secure context');
  if (params.get('offline') === 'off') throw new DemoError('offline use is off for this visit (?offline=off)');
  await registration;
  await navigator.serviceWorker.ready;
  const deadline = performance.now() + timeoutMs;
  while (!navigator.serviceWorker.controller) {
    if (performance.now() > deadline) throw new DemoError('the service worker did not take control of the page');
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  await keepEarlyFetches();
  return offlineStatus();
}

/** The runtimes' files and the model list this page fetched before the worker controlled it (a first visit),
 * fetched again through the worker, which keeps them. */
function keepEarlyFetches() {
  const scope = new URL('./', location.href).pathname;
  const used = performance.getEntriesByType('resource').map((e) => new URL(e.name)).filter((url) =>
    url.origin === location.origin && (url.pathname.startsWith(`${scope}node_modules/`) ||
                                       url.pathname === `${scope}models/index.json`));
  early ??= Promise.all([...new Set(used.map((u) => u.href))].map(
    (url) => fetch(url).then((r) => r.arrayBuffer()).catch(() => null)));
  return early;
}
let early = null;

async function offlineStatus() {
  const keys = globalThis.caches ? await caches.keys() : [];
  const models = (await (await modelCache())?.keys())?.map((r) => new URL(r.url).pathname) ?? [];
  return { version: offline.version, controlled: Boolean(navigator.serviceWorker?.controller),
           script: navigator.serviceWorker?.controller?.scriptURL ?? null, caches: keys, models, note: offline.note };
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

/** What tells one served artifact from another in the list: its sidecar's variant, precision, input, weights. */
function describeListed(entry) {
  const parts = [entry.variant, entry.precision, entry.input, entry.weights && `weights ${entry.weights}`,
                 entry.note].filter(Boolean);
  return printable(parts.length ? `${entry.name} — ${parts.join(', ')}` : entry.name, 160);
}

const pathUrl = (prefix, name) => `${prefix}/${name.split('/').map(encodeURIComponent).join('/')}`;
let servedImages = [];

function sampleButton(label, url) {
  const button = document.createElement('button');
  button.type = 'button';
  button.textContent = printable(label);
  button.addEventListener('click', () => window.emoDemo.classify(url).catch(() => {}));
  return button;
}

/** The sample buttons: the images beside the loaded model first (they are what it was trained on), then the
 * bundled photos. */
function showImagesOf(folder) {
  const inFolder = servedImages.filter((url) => new URL(url, location.href).pathname.startsWith(folder));
  const rest = servedImages.filter((url) => !inFolder.includes(url));
  $('samples').replaceChildren(...[...inFolder, ...rest].map((url) => sampleButton(
    decodeURIComponent(url.replace(/^(models|samples)\//, '')), url)));
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
    $('model-list').add(new Option(describeListed(entry), pathUrl('models', entry.name)));
  }
  servedImages = [...(index.images ?? []).filter((n) => typeof n === 'string').map((n) => pathUrl('models', n)),
                  ...(index.samples ?? []).filter((n) => typeof n === 'string').map((n) => pathUrl('samples', n))];
  showImagesOf('/models/');
  if (index.error) showError(new DemoError(printable(index.error, 300)));
}

function optionsWanted(options) {
  const backend = options?.backend ?? $('backend').value;
  if (!BACKENDS.includes(backend)) {
    throw new DemoError(`backend ${printable(String(backend), 20)} is not one of ${BACKENDS.join(', ')}`);
  }
  return { threads: checkThreads(options?.threads ?? $('threads').value, CORES), backend };
}

async function showGpu() {
  const gpu = await gpuAdapter();
  if (gpu.adapter) {
    $('gpu-note').textContent = `WebGPU adapter: ${gpu.adapter.vendor} ${gpu.adapter.architecture}` +
      (gpu.adapter.fallback ? ' (a software adapter: slow, but it checks the WebGPU path)' : '');
  } else {
    $('gpu-note').textContent = `No WebGPU: ${gpu.reason} (WebGPU falls back to WebAssembly).`;
  }
  return gpu;
}

window.emoDemo = {
  load: (modelUrl, options = {}) => guarded(() => loadFromUrl(modelUrl, optionsWanted(options))),
  classify: (imageUrl, options = {}) => guarded(async () => {
    const blob = new Blob([await fetchBytes(sameOriginUrl(imageUrl, location.href, 'image URL'), 'image')]);
    return classifyBlob(blob, options.runs ?? RUNS_DEFAULT);
  }),
  benchmark: (options = {}) => guarded(() => benchmark(options)),
  camera: {
    start: () => guarded(startCamera),
    stop: () => stopCamera(),
    stats: () => ({ running: camera.running, ...camera.stats, latencies: [...camera.latencies],
                    where: camera.model?.where ?? null }),
  },
  classifyCamera: () => guarded(classifyCamera),
  offline: { ready: () => guarded(() => offlineReady()), status: offlineStatus },
  gpu: () => gpuAdapter(),
  error: () => ($('error').hidden ? null : $('error').textContent),
};

const params = new URLSearchParams(location.search);
const maxThreads = Math.max(1, Math.min(MAX_THREADS, CORES || 1));
$('threads').max = String(maxThreads);
$('threads').value = String(Math.min(2, maxThreads));
let optionsOk = true;
try {
  if (params.has('threads')) $('threads').value = String(checkThreads(params.get('threads'), CORES, '?threads='));
  if (params.has('backend')) $('backend').value = optionsWanted({ backend: params.get('backend') }).backend;
} catch (e) {
  optionsOk = false;  // refused with its message; the model in the URL is not loaded with a wrong setting
  showError(e);
}
const reload = () => {
  if (state.model && state.bytes) {
    guarded(() => loadModel(state.name, state.bytes, state.sidecarBytes, optionsWanted(), state.source,
                            async () => state.examplesBytes)).catch(() => {});
  }
};
$('backend').addEventListener('change', reload);
$('model-files').addEventListener('change', (e) =>
  guarded(async () => loadFromFiles([...e.target.files], optionsWanted())).catch(() => {}));
$('model-list').addEventListener('change', (e) => {
  if (e.target.value) window.emoDemo.load(e.target.value).catch(() => {});
});
$('image-file').addEventListener('change', (e) => guarded(() => classifyBlob(e.target.files[0])).catch(() => {}));
$('camera').addEventListener('click', () => window.emoDemo.camera.start().catch(() => {}));
$('camera-stop').addEventListener('click', () => stopCamera());
dropZone($('model-drop'), async (dt) => loadFromFiles(await filesFromDrop(dt), optionsWanted()));
dropZone($('image-drop'), async (dt) => classifyBlob(dt.files[0]));
document.addEventListener('paste', (e) => {
  const item = [...(e.clipboardData?.items ?? [])].find((i) => i.type.startsWith('image/'));
  if (item) guarded(() => classifyBlob(item.getAsFile())).catch(() => {});
});

const registration = registerServiceWorker().catch((e) => setOfflineNote(`No offline use: ${printable(e.message)}`));
try {
  contract = await loadContract();
  await Promise.all([listServedModels(), showGpu()]);
  setStatus(crossOriginIsolated ? 'Ready: load a model.' : 'Ready (not cross-origin isolated: runtimes use one thread).');
  if (params.get('model') && optionsOk) await window.emoDemo.load(params.get('model')).catch(() => {});
} catch (e) {
  showError(e);
}
window.emoDemo.ready = true;
