// The platform-free core of the web demo: the sidecar contract, preprocessing and post-processing.
//
// Nothing here touches the DOM or a runtime, so Node runs it too (tests/test_web_demo.py checks `preprocess`
// against Pillow pixel for pixel). Everything the model needs comes from the sidecar that emo-export writes next
// to the artifact (input size, layout, normalisation, labels): nothing is copied by hand.

export const BROWSER_FORMATS = { '.onnx': 'onnxruntime-web', '.ort': 'onnxruntime-web', '.tflite': 'LiteRT.js' };
export const OTHER_FORMATS = {
  '.mlpackage': 'a Core ML package runs on Apple devices only (the iOS demo, or emo-bench --device mac/ios)',
  '.mlmodel': 'a Core ML model runs on Apple devices only (the iOS demo, or emo-bench --device mac/ios)',
  '.pte': 'an ExecuTorch program runs in the ExecuTorch runtime (Android/iOS apps, emo-bench --device host/adb), ' +
    'not in a browser',
  '.pt2': 'a torch.export program runs in PyTorch (emo-bench --device host), not in a browser',
};
const CROP_PCT = 0.875;  // emo.data.CROP_PCT: the authors' eval transform resizes the short side to size / 0.875

/** An error whose message is shown to the user as is (one line that names the fix). */
export class DemoError extends Error {}

/** The suffix of a file name ('.onnx'), lower case; '' if none. Names are file names, never URLs: a '#' or '?' is
 * part of the name (app.js turns a URL into the file name it names first). */
export function suffixOf(name) {
  const clean = name.replace(/\/+$/, '');
  const dot = clean.lastIndexOf('.');
  return dot > clean.lastIndexOf('/') ? clean.slice(dot).toLowerCase() : '';
}

/** The sidecar's file name: the same stem with `.json` (runtime_bench/sidecar.py: sidecar_path). */
export function sidecarName(name) {
  const clean = name.replace(/\/+$/, '');
  return clean.slice(0, clean.length - suffixOf(clean).length) + '.json';
}

/** The runtime for an artifact name, or a DemoError saying where such a file runs instead. */
export function runtimeFor(name) {
  const suffix = suffixOf(name);
  if (BROWSER_FORMATS[suffix]) return BROWSER_FORMATS[suffix];
  if (OTHER_FORMATS[suffix]) throw new DemoError(`${baseName(name)}: ${OTHER_FORMATS[suffix]}. ` +
    'The browser runs .onnx, .ort and .tflite artifacts.');
  throw new DemoError(`${baseName(name)} is not an artifact this page can run: use an .onnx, .ort or .tflite file ` +
    'exported by emo-export, with its .json sidecar.');
}

export function baseName(name) {
  return name.replace(/\/+$/, '').split('/').pop();
}

// ---------------------------------------------------------------- bounds on what a file or a URL can ask for
export const MIN_SIDE = 32;              // emo-export --input-size: each side 32..4096 pixels
export const MAX_SIDE = 4096;
export const MAX_BATCH = 64;
export const MAX_INPUT_ELEMENTS = 3 * MAX_SIDE * MAX_SIDE;  // one 4096x4096 RGB image (192 MiB of float32)
export const MAX_SIDECAR_BYTES = 16 << 20;                  // as runtime_bench/sidecar.py
export const MAX_ARTIFACT_BYTES = 2 ** 31;                  // 2 GiB: far above any EMO export
export const MAX_JSON_DEPTH = 64;
export const MAX_THREADS = 64;
export const MAX_IMAGE_PIXELS = 64e6;

const CONTROL = /[\u0000-\u001f\u007f-\u009f\u200e\u200f\u202a-\u202e\u2066-\u2069]/g;

/** `text` as one inert line for the page: control characters, terminal escapes and bidi overrides become U+FFFD
 * (the page also only ever sets textContent: no text from a file is parsed as HTML). */
export function printable(text, limit = 200) {
  const clean = String(text).replace(CONTROL, '\ufffd');
  return clean.length <= limit ? clean : `${clean.slice(0, limit - 1)}…`;
}

/** JSON.parse, after checking without recursion that arrays/objects nest at most MAX_JSON_DEPTH deep. */
export function parseJson(text, what) {
  let depth = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 0x5c) i++;  // a backslash escapes the next character
      else if (c === 0x22) inString = false;
    } else if (c === 0x22) {
      inString = true;
    } else if (c === 0x5b || c === 0x7b) {
      if (++depth > MAX_JSON_DEPTH) {
        throw new DemoError(`${what} nests deeper than ${MAX_JSON_DEPTH} levels: it is not a file emo-export wrote; ` +
          're-export the artifact with emo-export');
      }
    } else if (c === 0x5d || c === 0x7d) {
      depth--;
    }
  }
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new DemoError(`${what} is not JSON (${printable(e.message, 120)}); re-export the artifact with emo-export`);
  }
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

const isPositiveInt = (v) => Number.isInteger(v) && v >= 1;

/**
 * The sidecar if this page can use it, else a DemoError naming the wrong field (the same checks as
 * runtime_bench/sidecar.py `validate`, for the fields the page reads).
 */
export function checkSidecar(side, where) {
  const fail = (field, expected, value) => new DemoError(
    `sidecar ${printable(where, 100)}: field '${field}' must be ${expected}, not ` +
    `${printable(JSON.stringify(value)?.slice(0, 60) ?? String(value))}; ` +
    're-export the artifact with emo-export');
  if (side === null || typeof side !== 'object' || Array.isArray(side)) throw fail('(top level)', 'a JSON object', side);
  for (const field of ['variant', 'backend']) {
    if (typeof side[field] !== 'string' || !side[field]) throw fail(field, 'a non-empty string', side[field]);
  }
  if (!['fp32', 'fp16', 'int8', 'w8a16'].includes(side.precision)) {
    throw fail('precision', 'one of fp32, fp16, int8, w8a16', side.precision);
  }
  const input = side.input;
  if (!input || typeof input !== 'object') throw fail('input', 'an object', input);
  const shape = input.shape;
  if (!(Array.isArray(shape) && shape.length === 4 && (shape[0] === 'batch' || isPositiveInt(shape[0])) &&
        shape.slice(1).every(isPositiveInt))) {
    throw fail('input.shape', '[batch, ...] with 4 positive sizes', shape);
  }
  // bounded before anything is allocated: a sidecar asking for 16384x16384 would make the page take gigabytes
  const [h, w] = (input.layout ?? 'NCHW') === 'NHWC' ? [shape[1], shape[2]] : [shape[2], shape[3]];
  const batch = shape[0] === 'batch' ? 1 : shape[0];
  if (![h, w].every((d) => d >= MIN_SIDE && d <= MAX_SIDE) || batch > MAX_BATCH ||
      batch * shape[1] * shape[2] * shape[3] > MAX_INPUT_ELEMENTS) {
    throw fail('input.shape', `a size emo-export writes (height and width ${MIN_SIDE}..${MAX_SIDE}, batch at most ` +
      `${MAX_BATCH})`, shape);
  }
  const layout = input.layout ?? 'NCHW';
  if (!['NCHW', 'NHWC'].includes(layout)) throw fail('input.layout', 'NCHW or NHWC for a browser runtime', layout);
  if ((layout === 'NHWC' ? shape[3] : shape[1]) !== 3) throw fail('input.shape', `RGB (3 channels in ${layout})`, shape);
  const norm = input.normalization;
  if (!norm || typeof norm.in_graph !== 'boolean') {
    throw fail('input.normalization', "an object with a boolean 'in_graph'", norm);
  }
  for (const key of ['mean', 'std']) {
    const v = norm[key];
    if (!(Array.isArray(v) && v.length === 3 && v.every((x) => typeof x === 'number' && (key === 'mean' || x > 0)))) {
      throw fail(`input.normalization.${key}`, '3 numbers (std > 0)', v);
    }
  }
  const output = side.output;
  if (!output || typeof output !== 'object' || !['logits', 'probabilities'].includes(output.kind ?? 'logits')) {
    throw fail('output', "an object whose 'kind' is logits or probabilities", output);
  }
  const names = side.labels?.names;
  if (side.labels != null && !(Array.isArray(names) && names.every((n) => typeof n === 'string'))) {
    throw fail('labels.names', 'a list of strings', names);
  }
  if (side.num_classes !== undefined && !isPositiveInt(side.num_classes)) {
    throw fail('num_classes', 'a positive integer', side.num_classes);
  }
  if (names && side.num_classes !== undefined && names.length !== side.num_classes) {
    throw fail('labels.names', `${side.num_classes} names (num_classes)`, names.length);
  }
  if (typeof side.sha256 !== 'string' || !/^[0-9a-f]{64}$/.test(side.sha256)) {
    throw fail('sha256', 'the artifact\'s sha256 (64 hex digits)', side.sha256);
  }
  return side;
}

/** A DemoError unless the sidecar describes exactly these bytes (size and sha256) of an artifact of this type. */
export function checkArtifactMatches(side, name, bytes, sha256hex) {
  const suffix = suffixOf(name);
  const expected = { '.onnx': ['onnx'], '.ort': ['ort'], '.tflite': ['tflite'] }[suffix] ?? [];
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

/** (height, width, layout, batch) of the model input the sidecar describes. */
export function inputGeometry(side) {
  const { shape } = side.input;
  const layout = side.input.layout ?? 'NCHW';
  const [h, w] = layout === 'NHWC' ? [shape[1], shape[2]] : [shape[2], shape[3]];
  return { height: h, width: w, layout, batch: shape[0] === 'batch' ? 1 : shape[0] };
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
 * emo.data.to_unit_array + the sidecar's layout and normalisation: RGBA pixels of the decoded photo -> the
 * model input (Float32Array). Resize the short side to int(max(h, w) / 0.875) with Pillow's bicubic, centre-crop
 * (h, w), scale to [0, 1], normalise only when the graph does not, lay out as NCHW or NHWC.
 */
export function preprocess(rgba, imgW, imgH, side) {
  const { height: h, width: w, layout } = inputGeometry(side);
  const short = Math.trunc(Math.max(h, w) / CROP_PCT);
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
  const names = side.labels?.names;
  return Array.from(values.keys())
    .sort((a, b) => values[b] - values[a] || a - b)
    .slice(0, k)
    .map((index) => ({ index, label: names?.[index] ?? `class ${index}`, probability: probabilities[index],
                       logit: values[index] }));
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
