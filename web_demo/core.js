// The platform-free core of the web demo: what the page does with the artifact contract (web_demo/contract.js),
// preprocessing and post-processing.
//
// Nothing here touches the DOM or a runtime, so Node runs it too (tests/test_web_demo.py checks `preprocess`
// against Pillow pixel for pixel, and the contract reader against every conformance vector). Everything the model
// needs comes from the sidecar that emo-export writes next to the artifact (input size, layout, normalisation,
// crop fraction, labels), and every word of the vocabulary (formats, suffixes, which run in a browser, precisions)
// from the contract document the server builds from emo.contract: nothing is copied by hand.

import {
  DemoError, agreement, formatNamed, inputGeometry, labelOf, preprocessing, readSidecar,
} from './contract.js';

export { DemoError, inputGeometry } from './contract.js';

// Where an artifact that is not for the browser runs, per runtime family of the contract's vocabulary (prose only:
// which formats exist and which run here comes from the vocabulary)
const ELSEWHERE = {
  coreml: 'a Core ML package runs on Apple devices only (the iOS demo, or emo-bench --device mac/ios)',
  executorch: 'an ExecuTorch program runs in the ExecuTorch runtime (Android/iOS apps, emo-bench --device ' +
    'host/adb), not in a browser',
  pytorch: 'a torch.export program runs in PyTorch (emo-bench --device host), not in a browser',
  qnn: 'a QNN artifact runs on a Snapdragon NPU (emo-bench --device adb or aihub), not in a browser',
  // the LiteRT format that is not for the browser: a .tflite compiled ahead of time for one phone SoC's NPU
  litert: 'an NPU-compiled .tflite (litert-npu) runs only on the phone SoC it was compiled for (the Android demo, ' +
    'accelerator npu), not in a browser',
};

/** The suffix of a file name ('.onnx'), lower case; '' if none. Names are file names, never URLs: a '#' or '?' is
 * part of the name (app.js turns a URL into the file name it names first). */
export function suffixOf(name) {
  const clean = name.replace(/\/+$/, '');
  const dot = clean.lastIndexOf('.');
  return dot > clean.lastIndexOf('/') ? clean.slice(dot).toLowerCase() : '';
}

/** The sidecar's file name: the same stem with the contract's sidecar suffix (emo.contract.sidecar.sidecar_path). */
export function sidecarName(name, contract) {
  const clean = name.replace(/\/+$/, '');
  return clean.slice(0, clean.length - suffixOf(clean).length) + contract.vocabulary.sidecar_suffix;
}

/** The contract's formats that run in a browser, and their suffixes (".onnx, .ort and .tflite"). */
export function browserFormats(contract) {
  return contract.vocabulary.formats.filter((f) => f.browser);
}

export function browserSuffixes(contract) {
  return [...new Set(browserFormats(contract).map((f) => f.suffix))];
}

function spoken(items, conjunction = 'and') {
  return items.length > 1 ? `${items.slice(0, -1).join(', ')} ${conjunction} ${items[items.length - 1]}`
    : items.join('');
}

/** The browser format of an artifact name ({name, suffix, runtime, ...}), or a DemoError saying where such a file
 * runs instead. */
export function runtimeFor(name, contract) {
  const suffix = suffixOf(name);
  const formats = contract.vocabulary.formats.filter((f) => f.suffix === suffix);
  const here = formats.find((f) => f.browser);
  if (here) return here;
  if (formats.length) throw elsewhere(name, formats[0], contract);
  const runs = spoken(browserSuffixes(contract), 'or');
  throw new DemoError(`${baseName(name)} is not an artifact this page can run: use an ${runs} file exported by ` +
    'emo-export, with its .json sidecar.');
}

function elsewhere(name, format, contract) {
  return new DemoError(`${baseName(name)}: ${ELSEWHERE[format.runtime] ?? `a ${format.name} artifact does not run ` +
    'in a browser'}. The browser runs ${spoken(browserSuffixes(contract))} artifacts.`);
}

export function baseName(name) {
  return name.replace(/\/+$/, '').split('/').pop();
}

// ------------------------------------------------ bounds on what a file or a URL can make this page allocate
// The contract accepts inputs up to 2^28 elements; a browser tab gets far less memory than a phone app, so the page
// runs what emo-export writes by default and refuses the rest before allocating anything.
export const MIN_SIDE = 32;              // emo-export --input-size: each side 32..4096 pixels
export const MAX_SIDE = 4096;
export const MAX_BATCH = 64;
export const MAX_INPUT_ELEMENTS = 3 * MAX_SIDE * MAX_SIDE;  // one 4096x4096 RGB image (192 MiB of float32)
export const MAX_ARTIFACT_BYTES = 2 ** 31;                  // 2 GiB: far above any EMO export
export const MAX_THREADS = 64;
export const MAX_IMAGE_PIXELS = 64e6;

const CONTROL = /[\u0000-\u001f\u007f-\u009f\u200e\u200f\u202a-\u202e\u2066-\u2069\u2028\u2029]/g;

/** `text` as one inert line for the page: control characters, terminal escapes and bidi overrides become U+FFFD
 * (the page also only ever sets textContent: no text from a file is parsed as HTML). */
export function printable(text, limit = 200) {
  const clean = String(text).replace(CONTROL, '\ufffd');
  return clean.length <= limit ? clean : `${clean.slice(0, limit - 1)}…`;
}

/**
 * The URL `text` names, resolved against the page, if it is on the page's own origin; else a DemoError. Another
 * origin's model (and its labels) must not run under this page's name, and data:, blob: and javascript: URLs are
 * not model files: a model from elsewhere is downloaded and picked as a file (which stays allowed).
 */
export function sameOriginUrl(text, pageUrl, what = 'model URL') {
  const page = new URL(pageUrl);
  let url;
  try {
    url = new URL(String(text), page);
  } catch {
    throw new DemoError(`${what} ${printable(text, 100)} is not a URL: give a path on this server such as ` +
      'models/NAME.onnx');
  }
  if (url.origin === page.origin && url.protocol === page.protocol && !url.username && !url.password) return url;
  const scheme = url.protocol.replace(/:$/, '');
  let kind = `another origin (${url.origin})`;
  if (!['http', 'https'].includes(scheme)) kind = `a ${scheme}: URL`;
  else if (url.origin === page.origin) kind = 'a URL with a user name or password';
  throw new DemoError(`${what} ${printable(text, 100)} is refused: the page loads only from its own origin ` +
    `${page.origin}, not ${kind}; download the file and pick it with "choose files", or serve its folder with ` +
    'emo-web-demo serve DIR');
}

/** The thread count `value` asks for, if it is an integer in 1..min(cores, 64); else a DemoError (`label` names
 * where it came from: 'threads ' for the hook and the field, '?threads=' for the page's URL). */
export function checkThreads(value, cores, label = 'threads ') {
  const limit = Math.max(1, Math.min(MAX_THREADS, Number.isInteger(cores) && cores > 0 ? cores : 1));
  const n = typeof value === 'string' && value.trim() !== '' ? Number(value) : value;
  if (!Number.isInteger(n) || n < 1 || n > limit) {
    const shown = typeof value === 'string' ? value : JSON.stringify(value) ?? String(value);
    throw new DemoError(`${label}${printable(shown, 40)} is out of range: use 1..${limit} (this computer has ` +
      `${cores} logical cores; at most ${MAX_THREADS})`);
  }
  return n;
}

/**
 * The sidecar (raw bytes) if the contract accepts it and this page can run it, else a DemoError: the contract's
 * field and reason for a file every reader refuses, then the page's own bounds (input size, batch) and what a
 * browser runtime takes (a float input, not a full-integer graph).
 */
export function checkSidecar(raw, where, contract) {
  const side = readSidecar(raw, printable(where, 100), contract);
  const fail = (field, expected, value) => new DemoError(
    `sidecar ${printable(where, 100)}: field '${field}' must be ${expected}, not ` +
    `${printable(JSON.stringify(value)?.slice(0, 60) ?? String(value))}; re-export the artifact with emo-export`,
    field, 'range');
  const { height: h, width: w, batch } = inputGeometry(side);
  const shape = side.input.shape;
  if (![h, w].every((d) => d >= MIN_SIDE && d <= MAX_SIDE) || batch > MAX_BATCH ||
      batch * shape[1] * shape[2] * shape[3] > MAX_INPUT_ELEMENTS) {
    throw fail('input.shape', `a size emo-export writes (height and width ${MIN_SIDE}..${MAX_SIDE}, batch at most ` +
      `${MAX_BATCH})`, shape);
  }
  const io = side.quantization?.io?.input;
  if (io && io.dtype !== 'float32') {
    throw fail('quantization.io.input.dtype', 'float32 for the page (a full-integer graph needs the Android app)',
               io.dtype);
  }
  return side;
}

/** A DemoError unless the sidecar describes exactly these bytes (size and sha256) of an artifact of this type. */
export function checkArtifactMatches(side, name, bytes, sha256hex, contract) {
  const suffix = suffixOf(name);
  const expected = browserFormats(contract).filter((f) => f.suffix === suffix).map((f) => f.name);
  const described = formatNamed(contract, side.backend);
  if (!described.browser && described.suffix === suffix) throw elsewhere(name, described, contract);  // a QNN .onnx
  if (!expected.includes(side.backend)) {
    throw new DemoError(`${baseName(name)}: the sidecar describes a '${side.backend}' artifact, not a ${suffix} file; ` +
      'the sidecar does not belong to this file (load the .json that emo-export wrote next to it)');
  }
  if (side.size_bytes !== undefined && side.size_bytes !== bytes.byteLength) {
    throw new DemoError(`${baseName(name)} has ${bytes.byteLength} bytes but its sidecar says ${side.size_bytes}: ` +
      'the file is truncated or is not the exported artifact; copy it again or re-export it');
  }
  if (sha256hex !== side.sha256) {
    throw new DemoError(`${baseName(name)}: sha256 ${sha256hex.slice(0, 12)}… differs from the sidecar's ` +
      `${side.sha256.slice(0, 12)}…: the file changed since export or the sidecar belongs to another file; re-export it`);
  }
}

// ---------------------------------------------------------------- Pillow's bicubic resize, bit for bit
// emo.preprocess resizes with PIL.Image.resize(..., BICUBIC) on 8-bit RGB. A canvas resize uses other filters and
// would move logits by ~1e-2, so this is a port of Pillow's libImaging/Resample.c (8 bits per channel): a
// separable convolution (horizontal pass first, rounded to 8 bits, then vertical), bicubic a = -0.5 with the
// support widened by the scale when downsampling, coefficients in fixed point with 22 fractional bits.
const PRECISION_BITS = 32 - 8 - 2;

function bicubic(x) {
  const a = -0.5;
  x = Math.abs(x);
  if (x < 1) return ((a + 2) * x - (a + 3)) * x * x + 1;
  if (x < 2) return (((x - 5) * x + 8) * x - 4) * a;
  return 0;
}

function coefficients(inSize, outSize) {
  const scale = inSize / outSize;
  const filterscale = Math.max(scale, 1);
  const support = 2 * filterscale;
  const ksize = Math.ceil(support) * 2 + 1;
  const bounds = new Int32Array(outSize * 2);
  const kk = new Int32Array(outSize * ksize);
  const k = new Float64Array(ksize);
  const ss = 1 / filterscale;  // Pillow multiplies by the reciprocal; dividing can differ in the last bit
  for (let xx = 0; xx < outSize; xx++) {
    const center = (xx + 0.5) * scale;
    const xmin = Math.max(Math.trunc(center - support + 0.5), 0);
    const xmax = Math.min(Math.trunc(center + support + 0.5), inSize) - xmin;
    let ww = 0;
    for (let x = 0; x < xmax; x++) {
      k[x] = bicubic((x + xmin - center + 0.5) * ss);
      ww += k[x];
    }
    for (let x = 0; x < xmax; x++) {
      const v = ww !== 0 ? k[x] / ww : k[x];
      kk[xx * ksize + x] = v < 0 ? Math.trunc(-0.5 + v * (1 << PRECISION_BITS))
        : Math.trunc(0.5 + v * (1 << PRECISION_BITS));
    }
    bounds[xx * 2] = xmin;
    bounds[xx * 2 + 1] = xmax;
  }
  return { ksize, bounds, kk };
}

function clip8(v) {
  if (v >= (1 << PRECISION_BITS) * 256) return 255;
  if (v <= 0) return 0;
  return Math.floor(v / (1 << PRECISION_BITS));
}

/** Resize RGBA pixels (Uint8ClampedArray, w*h*4) to (outW, outH) as Pillow's BICUBIC does; returns RGB bytes. */
export function resizeBicubic(rgba, inW, inH, outW, outH) {
  const half = 1 << (PRECISION_BITS - 1);
  const horiz = coefficients(inW, outW);
  const vert = coefficients(inH, outH);
  const needH = outW !== inW;
  const needV = outH !== inH;
  // rows of the source the vertical pass reads
  const yFirst = vert.bounds[0];
  const yLast = vert.bounds[outH * 2 - 2] + vert.bounds[outH * 2 - 1];
  let src = new Uint8Array(inW * inH * 3);
  for (let i = 0, j = 0; i < inW * inH; i++, j += 4) {
    src[i * 3] = rgba[j]; src[i * 3 + 1] = rgba[j + 1]; src[i * 3 + 2] = rgba[j + 2];
  }
  let width = inW;
  let rowOffset = 0;
  if (needH) {
    const rows = needV ? yLast - yFirst : inH;
    const first = needV ? yFirst : 0;
    const tmp = new Uint8Array(outW * rows * 3);
    for (let y = 0; y < rows; y++) {
      const srcRow = (y + first) * inW * 3;
      for (let xx = 0; xx < outW; xx++) {
        const xmin = horiz.bounds[xx * 2];
        const xmax = horiz.bounds[xx * 2 + 1];
        const k = xx * horiz.ksize;
        for (let c = 0; c < 3; c++) {
          let ss = half;
          for (let x = 0; x < xmax; x++) ss += src[srcRow + (x + xmin) * 3 + c] * horiz.kk[k + x];
          tmp[(y * outW + xx) * 3 + c] = clip8(ss);
        }
      }
    }
    src = tmp;
    width = outW;
    rowOffset = needV ? yFirst : 0;
  }
  if (!needV) return src;
  const out = new Uint8Array(outW * outH * 3);
  for (let yy = 0; yy < outH; yy++) {
    const ymin = vert.bounds[yy * 2] - rowOffset;
    const ymax = vert.bounds[yy * 2 + 1];
    const k = yy * vert.ksize;
    for (let x = 0; x < width; x++) {
      for (let c = 0; c < 3; c++) {
        let ss = half;
        for (let y = 0; y < ymax; y++) ss += src[((y + ymin) * width + x) * 3 + c] * vert.kk[k + y];
        out[(yy * width + x) * 3 + c] = clip8(ss);
      }
    }
  }
  return out;
}

/** Python's round() on a float: halves go to the even neighbour (emo.data uses int(round(...)) for the crop). */
function roundHalfEven(x) {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/**
 * emo.data.to_unit_array + the sidecar's input contract: RGBA pixels of the decoded photo -> the model input
 * (Float32Array). Resize the short side to int(max(h, w) / crop_pct) with Pillow's bicubic (input.preprocessing;
 * an older sidecar without it gets the contract's default), centre-crop (h, w), scale to [0, 1], normalise only
 * when the graph does not, lay out as NCHW or NHWC.
 */
export function preprocess(rgba, imgW, imgH, side, contract) {
  const { height: h, width: w, layout } = inputGeometry(side);
  const { cropPct, interpolation } = preprocessing(side, contract);
  if (interpolation !== 'bicubic') throw new DemoError(`interpolation ${printable(interpolation)} is not implemented`);
  const short = Math.trunc(Math.max(h, w) / cropPct);
  const [nw, nh] = imgW <= imgH ? [short, Math.trunc(short * imgH / imgW)] : [Math.trunc(short * imgW / imgH), short];
  const resized = resizeBicubic(rgba, imgW, imgH, nw, nh);
  const top = roundHalfEven((nh - h) / 2);
  const left = roundHalfEven((nw - w) / 2);
  const norm = side.input.normalization;
  const mean = norm.in_graph ? [0, 0, 0] : norm.mean.map(Math.fround);
  const std = norm.in_graph ? [1, 1, 1] : norm.std.map(Math.fround);
  const x = new Float32Array(3 * h * w);
  for (let y = 0; y < h; y++) {
    for (let xx = 0; xx < w; xx++) {
      const p = ((y + top) * nw + xx + left) * 3;
      for (let c = 0; c < 3; c++) {
        // float32 arithmetic as NumPy does it: value / 255, then (value - mean) / std
        let v = Math.fround(resized[p + c] / 255);
        if (!norm.in_graph) v = Math.fround(Math.fround(v - mean[c]) / std[c]);
        x[layout === 'NHWC' ? (y * w + xx) * 3 + c : c * h * w + y * w + xx] = v;
      }
    }
  }
  return x;
}

// ---------------------------------------------------------------- post-processing
export function softmax(logits) {
  let max = -Infinity;
  for (const v of logits) max = Math.max(max, v);
  const exps = Array.from(logits, (v) => Math.exp(v - max));
  const total = exps.reduce((a, b) => a + b, 0);
  return exps.map((e) => e / total);
}

/** The k best classes: [{index, label, probability, logit}], best first (ties keep the lower index first). */
export function topK(values, side, k = 5) {
  const probabilities = (side.output?.kind ?? 'logits') === 'probabilities' ? Array.from(values) : softmax(values);
  return Array.from(values.keys())
    .sort((a, b) => values[b] - values[a] || a - b)
    .slice(0, k)
    .map((index) => ({ index, label: labelOf(side, index), probability: probabilities[index], logit: values[index] }));
}

export function median(values) {
  const s = [...values].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

export async function sha256Hex(bytes) {
  const digest = await crypto.subtle.digest('SHA-256', bytes);
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, '0')).join('');
}

// ---------------------------------------------------------------- what the runtimes share
/** The tensor shape the runtime takes (a symbolic batch becomes 1). */
export function tensorShape(side) {
  const { height, width, layout, batch } = inputGeometry(side);
  return layout === 'NHWC' ? [batch, height, width, 3] : [batch, 3, height, width];
}

/** One image's input as the model's batch: the image repeated for a static batch N (as the examples file says). */
export function batched(x, side) {
  const { batch } = inputGeometry(side);
  if (batch === 1) return x;
  const out = new Float32Array(x.length * batch);
  for (let i = 0; i < batch; i++) out.set(x, i * x.length);
  return out;
}

/** The first image's output of a batch (num_classes values). */
export function firstRow(values, side) {
  return values.length > side.num_classes ? values.slice(0, side.num_classes) : values;
}

/** A runtime's refusal as the page's one line. */
export function runtimeError(name, runtime, error) {
  const text = String(error?.message ?? error).split('\n')[0].slice(0, 200);
  return new DemoError(`${baseName(name)}: ${runtime} could not load it (${text}); the file is damaged or not a ` +
    'model this runtime reads: re-export it with emo-export');
}

/**
 * The bundled examples (contract.js readExamples) through a loaded model's `run`: the agreement with PyTorch's
 * outputs judged by the file's tolerance (emo.contract.examples.agreement), i.e. the export's parity check on this
 * device, this browser and this backend.
 */
export async function runExamples(run, examples, side, contract) {
  const size = tensorShape(side).slice(1).reduce((a, b) => a * b, 1);
  const outputs = [];
  for (const [i, example] of examples.examples.entries()) {
    if (example.input.values.length !== size) {
      return { status: `failed: examples[${i}].input has ${example.input.values.length} values, the model takes ` +
        `${size}: the examples file belongs to another export` };
    }
    outputs.push(await run(example.input.values));
  }
  return agreement(examples, outputs, contract);
}
