// The artifact contract (emo/contract), read in JavaScript: the sidecar and the bundled examples file, with the same
// verdict as the Python validator on every conformance vector (emo/contract/conformance; tests/test_web_demo.py runs
// them all in Node).
//
// Nothing is restated here: the vocabulary, the JSON Schema files, the parity policy and the limits come in one
// document that the demo's server builds from the Python contract (`/contract.json`, runtime_bench/webserver.py
// `contract_document`). What this file holds is the reading: a small JSON Schema (2020-12) validator for the keywords
// the contract's schemas use, the same choice of the first wrong field as emo.contract.schema.check (document order,
// the branch of an anyOf the value was meant for), and the cross-field rules of each schema's x-rules.
// No DOM, no runtime: Node runs it as is.

/** A file the page cannot use: the one-line message shown to the user, the wrong `field` ('' for the file as a
 * whole) and the `reason` word of the contract (emo.contract.jsonio.REASONS). */
export class DemoError extends Error {
  constructor(message, field = '', reason = '') {
    super(message);
    this.field = field;
    this.reason = reason;
  }
}

const FIX = 're-export the artifact with emo-export';

// JSON Schema keyword -> the contract's reason word (emo.contract.schema._REASON)
const REASON = {
  required: 'required', type: 'type', enum: 'enum', const: 'enum', minimum: 'range', maximum: 'range',
  exclusiveMinimum: 'range', exclusiveMaximum: 'range', minItems: 'length', maxItems: 'length', minLength: 'length',
  maxLength: 'length', minProperties: 'length', maxProperties: 'length', pattern: 'format',
  additionalProperties: 'enum',
};

// ------------------------------------------------------------------------------------------------- bounded JSON
/** Nesting depth of a parsed value without recursion (a scalar is 0, [] is 1); stops once past `limit`. */
function depthOf(value, limit) {
  let deepest = 0;
  const stack = [[value, 0]];
  while (stack.length) {
    const [item, parent] = stack.pop();
    if (item === null || typeof item !== 'object') continue;
    const level = parent + 1;
    deepest = Math.max(deepest, level);
    if (level > limit) return level;
    for (const child of Array.isArray(item) ? item : Object.values(item)) stack.push([child, level]);
  }
  return deepest;
}

/** Nesting depth of JSON text, counted without parsing (so a deep file is refused before anything is built). */
function textDepth(text, limit) {
  let depth = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 0x5c) i++;
      else if (c === 0x22) inString = false;
    } else if (c === 0x22) {
      inString = true;
    } else if (c === 0x5b || c === 0x7b) {
      if (++depth > limit) return depth;
    } else if (c === 0x5d || c === 0x7d) {
      depth--;
    }
  }
  return depth;
}

function hasInfinity(value) {
  const stack = [value];
  while (stack.length) {
    const item = stack.pop();
    if (typeof item === 'number' && !Number.isFinite(item)) return true;
    if (item !== null && typeof item === 'object') stack.push(...(Array.isArray(item) ? item : Object.values(item)));
  }
  return false;
}

/**
 * emo.contract.jsonio.loads: bytes (ArrayBuffer or a typed array) or text -> the parsed value, or a DemoError with
 * reason `size` (over `maxBytes`), `json` (not UTF-8, not JSON, NaN, Infinity, a number that overflows) or `depth`
 * (nested deeper than the contract's limit). A byte-order mark is not JSON (as in Python).
 */
export function parseJson(data, what, limits, maxBytes = Infinity) {
  let text = data;
  if (typeof data !== 'string') {
    const bytes = data instanceof ArrayBuffer ? new Uint8Array(data) : new Uint8Array(data.buffer, data.byteOffset,
                                                                                        data.byteLength);
    if (bytes.byteLength > maxBytes) {
      throw new DemoError(`${what} is larger than ${Math.floor(maxBytes / 2 ** 20)} MiB: it is not a file ` +
        `emo-export wrote; ${FIX}`, '', 'size');
    }
    try {
      text = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(bytes);
    } catch {
      throw new DemoError(`${what} is not JSON: it is not UTF-8 text; ${FIX}`, '', 'json');
    }
  }
  const deep = () => new DemoError(`${what} nests deeper than ${limits.max_json_depth} levels: it is not a file ` +
    `emo-export wrote; ${FIX}`, '', 'depth');
  if (textDepth(text, limits.max_json_depth) > limits.max_json_depth) throw deep();
  let value;
  try {
    value = JSON.parse(text);
  } catch (e) {
    throw new DemoError(`${what} is not JSON (${String(e.message).split('\n')[0].slice(0, 120)}); ${FIX}`, '', 'json');
  }
  if (depthOf(value, limits.max_json_depth) > limits.max_json_depth) throw deep();
  if (hasInfinity(value)) throw new DemoError(`${what} is not JSON: a number overflows to infinity; ${FIX}`, '', 'json');
  return value;
}

// -------------------------------------------------------------------------------- a small JSON Schema validator
function jsonType(value) {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'array';
  if (typeof value === 'number') return 'number';
  return { boolean: 'boolean', string: 'string', object: 'object' }[typeof value] ?? '?';
}

function isType(value, type) {
  switch (type) {
    case 'integer': return typeof value === 'number' && Number.isInteger(value);  // 112.0 is 112, as in jsonschema
    case 'number': return typeof value === 'number';
    default: return jsonType(value) === type;
  }
}

function equal(a, b) {
  if (a === b) return true;
  if (jsonType(a) !== jsonType(b) || a === null || typeof a !== 'object') return false;
  const ka = Object.keys(a);
  const kb = Object.keys(b);
  return ka.length === kb.length && ka.every((k) => Object.hasOwn(b, k) && equal(a[k], b[k]));
}

const codePoints = (s) => [...s].length;  // Python's len(str)

// Python's \s (str.isspace) where a pattern says \s: ECMAScript's \s differs (it counts U+FEFF, not U+001C..U+001F)
const PY_SPACE = '\\t\\n\\v\\f\\r\\x1c-\\x20\\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000';
const patterns = new Map();

/** A schema pattern as a RegExp with Python's `re.search` meaning (the Python validator's). */
function pattern(source) {
  if (!patterns.has(source)) {
    let out = '';
    let inClass = false;
    for (let i = 0; i < source.length; i++) {
      const c = source[i];
      if (c === '\\') {
        const next = source[i + 1];
        out += next === 's' ? (inClass ? PY_SPACE : `[${PY_SPACE}]`) : c + next;
        i++;
      } else {
        if (c === '[' && !inClass) inClass = true;
        else if (c === ']' && inClass) inClass = false;
        out += c;
      }
    }
    // the schemas end their patterns with $(?!\n) (Python's $ also matches before a final newline); here $ is the end
    patterns.set(source, new RegExp(out, 'u'));
  }
  return patterns.get(source);
}

/** The schema a $ref ("#/$defs/NAME") names. */
function resolve(root, ref) {
  if (!ref.startsWith('#/')) throw new Error(`unsupported $ref ${ref}`);
  return ref.slice(2).split('/').reduce((node, key) => node[key.replaceAll('~1', '/').replaceAll('~0', '~')], root);
}

/**
 * Every violation of `schema` by `value` at `path` (a list of keys and indices), in the order jsonschema yields them:
 * {path, keyword, schema (the schema object holding the keyword), value, extra (additionalProperties), missing
 * (required), context (anyOf: the branches' errors, each with its `branch`)}.
 */
function violations(root, schema, value, path, out = []) {
  const add = (keyword, extra = {}) => out.push({ path, keyword, schema, value, ...extra });
  for (const [keyword, arg] of Object.entries(schema)) {
    switch (keyword) {
      case '$ref':
        violations(root, resolve(root, arg), value, path, out);
        break;
      case 'type':
        if (!(Array.isArray(arg) ? arg : [arg]).some((t) => isType(value, t))) add('type');
        break;
      case 'enum':
        if (!arg.some((v) => equal(v, value))) add('enum');
        break;
      case 'const':
        if (!equal(arg, value)) add('const');
        break;
      case 'minimum': if (typeof value === 'number' && value < arg) add(keyword); break;
      case 'maximum': if (typeof value === 'number' && value > arg) add(keyword); break;
      case 'exclusiveMinimum': if (typeof value === 'number' && value <= arg) add(keyword); break;
      case 'exclusiveMaximum': if (typeof value === 'number' && value >= arg) add(keyword); break;
      case 'minLength': if (typeof value === 'string' && codePoints(value) < arg) add(keyword); break;
      case 'maxLength': if (typeof value === 'string' && codePoints(value) > arg) add(keyword); break;
      case 'pattern': if (typeof value === 'string' && !pattern(arg).test(value)) add(keyword); break;
      case 'minItems': if (Array.isArray(value) && value.length < arg) add(keyword); break;
      case 'maxItems': if (Array.isArray(value) && value.length > arg) add(keyword); break;
      case 'prefixItems':
        if (Array.isArray(value)) {
          arg.forEach((item, i) => { if (i < value.length) violations(root, item, value[i], [...path, i], out); });
        }
        break;
      case 'items':
        if (Array.isArray(value)) {
          const first = schema.prefixItems?.length ?? 0;
          for (let i = first; i < value.length; i++) violations(root, arg, value[i], [...path, i], out);
        }
        break;
      case 'required':
        if (jsonType(value) === 'object') {
          for (const name of arg) if (!Object.hasOwn(value, name)) add('required', { missing: name });
        }
        break;
      case 'properties':
        if (jsonType(value) === 'object') {
          for (const [name, sub] of Object.entries(arg)) {
            if (Object.hasOwn(value, name)) violations(root, sub, value[name], [...path, name], out);
          }
        }
        break;
      case 'additionalProperties':
        if (jsonType(value) === 'object' && arg === false) {
          const extra = Object.keys(value).filter((k) => !Object.hasOwn(schema.properties ?? {}, k)).sort();
          if (extra.length) add('additionalProperties', { extra });
        }
        break;
      case 'minProperties': if (jsonType(value) === 'object' && Object.keys(value).length < arg) add(keyword); break;
      case 'maxProperties': if (jsonType(value) === 'object' && Object.keys(value).length > arg) add(keyword); break;
      case 'anyOf': {
        const context = [];
        let matched = false;
        arg.forEach((branch, i) => {
          const errors = violations(root, branch, value, path);
          if (!errors.length) matched = true;
          context.push(...errors.map((e) => ({ ...e, branch: i })));
        });
        if (!matched) add('anyOf', { context, branches: arg });
        break;
      }
      case 'if':
        if (!violations(root, arg, value, path).length) {
          if (schema.then) violations(root, schema.then, value, path, out);
        } else if (schema.else) {
          violations(root, schema.else, value, path, out);
        }
        break;
      default:  // annotations (title, description, x-expected, x-rules, $defs, then/else via 'if')
        break;
    }
  }
  return out;
}

/** Where a path lies in the document: the index of each key in its object (emo.contract.schema._position). */
function position(data, path) {
  const at = [];
  let node = data;
  for (const part of path) {
    if (node !== null && typeof node === 'object' && !Array.isArray(node) && Object.hasOwn(node, part)) {
      at.push(Object.keys(node).indexOf(part));
      node = node[part];
    } else if (Array.isArray(node) && typeof part === 'number' && part >= 0 && part < node.length) {
      at.push(part);
      node = node[part];
    } else {
      at.push(2 ** 30);
      node = undefined;
    }
  }
  return at;
}

/** Python's ordering of (list, str) keys: element by element, a prefix first, then the keyword. */
function compareKeys([pa, ka], [pb, kb]) {
  for (let i = 0; i < Math.min(pa.length, pb.length); i++) if (pa[i] !== pb[i]) return pa[i] - pb[i];
  if (pa.length !== pb.length) return pa.length - pb.length;
  return ka < kb ? -1 : ka > kb ? 1 : 0;
}

function smallest(items, key) {
  return items.reduce((best, item) => (compareKeys(key(item), key(best)) < 0 ? item : best));
}

/** The JSON types an anyOf branch accepts ("integer" counts as a number: 1.5 was meant for it). */
function branchTypes(branch) {
  const types = 'type' in branch ? [branch.type].flat()
    : (branch.enum ?? ('const' in branch ? [branch.const] : [])).map(jsonType);
  return new Set(types.map((t) => (t === 'integer' ? 'number' : t)));
}

/** The most specific error under an anyOf: that of the branch whose JSON type the value has (schema._leaf). */
function leaf(error) {
  while (error.keyword === 'anyOf' && error.context.length) {
    const kind = jsonType(error.value);
    const meant = error.branches.map((b, i) => (branchTypes(b).has(kind) ? i : -1)).filter((i) => i >= 0);
    if (meant.length !== 1) return error;
    const errors = error.context.filter((e) => e.branch === meant[0]);
    if (!errors.length) return error;
    error = smallest(errors, (e) => [[-e.path.length], e.keyword]);
  }
  return error;
}

/** ['input', 'shape', 2] -> 'input.shape[2]' (schema.field_path). */
export function fieldPath(parts) {
  let text = '';
  for (const part of parts) text += typeof part === 'number' ? `[${part}]` : (text ? `.${part}` : String(part));
  return text;
}

/** A value as an error message shows it: JSON, cut to 60 characters, non-ASCII escaped (schema.shown). */
export function shown(value) {
  let text;
  try {
    text = JSON.stringify(value).replace(/[\u0080-\uffff]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
  } catch {
    text = String(value);
  }
  if (text === undefined) text = String(value);
  return text.length <= 60 ? text : `${text.slice(0, 57)}...`;
}

/** emo.contract.schema.check: the first violation in document order as a DemoError naming the field. */
export function checkSchema(schema, data, what) {
  const errors = violations(schema, schema, data, []);
  if (!errors.length) return;
  const top = smallest(errors, (e) => [position(data, e.path), e.keyword]);
  const error = leaf(top);
  if (error.keyword === 'required') {
    const field = fieldPath([...error.path, error.missing]);
    throw new DemoError(`${what}: field '${field}' is missing; ${FIX}`, field, field === 'schema' ? 'schema' : 'required');
  }
  if (error.keyword === 'additionalProperties') {
    const field = fieldPath([...error.path, error.extra[0]]);
    throw new DemoError(`${what}: field '${field}' is not ${error.schema['x-expected'] ?? 'a known name'}; ${FIX}`,
                        field, 'enum');
  }
  const field = fieldPath(error.path);
  const expected = error.schema['x-expected'] ?? top.schema['x-expected'] ?? `valid (${error.keyword})`;
  throw new DemoError(`${what}: field '${field || '(top level)'}' must be ${expected}, not ${shown(error.value)}; ` +
    FIX, field, field === 'schema' ? 'schema' : (REASON[error.keyword] ?? 'type'));
}

// ------------------------------------------------------------------------------------------------- the sidecar
/** The format of a sidecar's `backend` in the contract's vocabulary table. */
export function formatNamed(contract, name) {
  return contract.vocabulary.formats.find((f) => f.name === name);
}

/** The sidecar's cross-field rules (x-rules of sidecar.schema.json), in their order (emo.contract.sidecar._rules). */
function sidecarRules(data, where, contract) {
  const fail = (field, reason, message) => new DemoError(`sidecar ${where}: field '${field}' ${message}; ${FIX}`,
                                                         field, reason);
  const input = data.input;
  const shape = input.shape;
  const layout = input.layout ?? 'NCHW';
  if ((layout === 'NHWC' ? shape[3] : shape[1]) !== 3) {
    throw fail('input.shape', 'mismatch', `must hold RGB (3 channels in ${layout}), not ${shown(shape)}`);
  }
  const batch = shape[0] === 'batch' ? 1 : shape[0];
  const limit = contract.limits.max_input_elements;
  if (batch * shape[1] * shape[2] * shape[3] > limit) {
    throw fail('input.shape', 'range', `must have at most ${limit} elements, not ${shown(shape)}`);
  }
  if (layout === 'image' && (data.backend !== 'coreml' || batch !== 1)) {
    throw fail('input.layout', 'mismatch', "'image' (a Core ML ImageType) needs backend coreml and batch 1");
  }
  const format = formatNamed(contract, data.backend);
  if (!format.precisions.includes(data.precision)) {
    throw fail('precision', 'mismatch', `must be one of ${format.precisions.join(', ')} for ${format.name}, not ` +
      shown(data.precision));
  }
  if (!data.file.toLowerCase().endsWith(format.suffix)) {
    throw fail('file', 'mismatch', `must end with ${format.suffix} for ${format.name}, not ${shown(data.file)}`);
  }
  const outShape = data.output?.shape;
  if (outShape !== undefined && outShape !== null && outShape[outShape.length - 1] !== data.num_classes) {
    throw fail('output.shape', 'mismatch', `must end with num_classes ${data.num_classes}, not ${shown(outShape)}`);
  }
  if (data.labels !== undefined && data.labels !== null && data.labels.names.length !== data.num_classes) {
    throw fail('labels.names', 'mismatch', `must hold ${data.num_classes} names (num_classes), not ` +
      `${data.labels.names.length}`);
  }
  const io = data.quantization?.io;
  for (const key of io ? ['input', 'output'] : []) {
    if (io[key].dtype !== 'float32' && io[key].scale <= 0) {
      throw fail(`quantization.io.${key}.scale`, 'range', 'must be > 0 for an integer tensor');
    }
  }
}

/**
 * A sidecar (its raw bytes or text) read as every reader of the contract reads it: the parsed document if it is
 * valid, else a DemoError with the field, the reason and the one-line message. `where` names the file in messages.
 */
export function readSidecar(raw, where, contract) {
  const data = parseJson(raw, `sidecar ${where}`, contract.limits, contract.limits.max_sidecar_bytes);
  checkSchema(contract.schemas.sidecar, data, `sidecar ${where}`);
  sidecarRules(data, where, contract);
  return data;
}

/** (height, width, layout, batch) of the model input a valid sidecar describes. */
export function inputGeometry(side) {
  const { shape } = side.input;
  const layout = side.input.layout ?? 'NCHW';
  const [h, w] = layout === 'NHWC' ? [shape[1], shape[2]] : [shape[2], shape[3]];
  return { height: h, width: w, layout, batch: shape[0] === 'batch' ? 1 : shape[0] };
}

/** How a photo becomes the input (input.preprocessing; a sidecar of an older export has none: the defaults). */
export function preprocessing(side, contract) {
  const pre = side.input.preprocessing ?? {};
  return { cropPct: pre.crop_pct ?? contract.limits.crop_pct, interpolation: pre.interpolation ?? 'bicubic' };
}

/** The name of class `index`: its label, or "class N" for a model exported without labels (every reader). */
export function labelOf(side, index) {
  const names = side.labels?.names;
  return names && index >= 0 && index < names.length ? names[index] : `class ${index}`;
}

// ----------------------------------------------------------------------------------------- the examples file
const B64 = new Int16Array(128).fill(-1);
[...'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/'].forEach((c, i) => { B64[c.charCodeAt(0)] = i; });

/** Strict base64 (as Python's b64decode(validate=True)): bytes, or null for text that is not base64. */
function base64Bytes(text) {
  if (text.length % 4) return null;
  const pad = text.endsWith('==') ? 2 : text.endsWith('=') ? 1 : 0;
  const out = new Uint8Array((text.length / 4) * 3 - pad);
  for (let i = 0, o = 0; i < text.length; i += 4, o += 3) {
    let word = 0;
    for (let j = 0; j < 4; j++) {
      const c = text.charCodeAt(i + j);
      let v = c < 128 ? B64[c] : -1;
      if (c === 0x3d && i + 4 === text.length && j >= 4 - pad) v = 0;  // '=' only as the final padding
      if (v < 0) return null;
      word = (word << 6) | v;
    }
    for (const [k, byte] of [(word >> 16) & 0xff, (word >> 8) & 0xff, word & 0xff].entries()) {
      if (o + k < out.length) out[o + k] = byte;
    }
  }
  return out;
}

function decodeTensor(record, field, where, contract) {
  const fail = (f, reason, message) => new DemoError(`examples file ${where}: field '${f}' ${message}; ${FIX}`,
                                                     f, reason);
  const shape = record.shape;
  const count = shape.reduce((a, b) => a * b, 1);
  const limit = contract.limits.max_tensor_elements;
  if (count > limit) throw fail(`${field}.shape`, 'range', `must have at most ${limit} elements, not ${shown(shape)}`);
  const width = record.encoding === 'u8' ? 1 : 4;
  const message = `must hold ${count * width} bytes for shape ${shown(shape)} in ${record.encoding}`;
  if (record.data.length !== 4 * Math.ceil((count * width) / 3)) throw fail(`${field}.data`, 'length', message);
  const raw = base64Bytes(record.data);
  if (raw === null) throw fail(`${field}.data`, 'format', 'must be base64 text');
  if (raw.length !== count * width) throw fail(`${field}.data`, 'length', `${message}, not ${raw.length}`);
  const values = new Float32Array(count);
  if (record.encoding === 'f32le') {
    const view = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
    for (let i = 0; i < count; i++) values[i] = view.getFloat32(4 * i, true);
  } else {
    // float32(byte) / float32(divisor): a double quotient rounded once to float32 is the float32 quotient (double
    // rounding is innocuous for division when 53 >= 2 * 24 + 2)
    for (let i = 0; i < count; i++) values[i] = raw[i] / record.divisor;
  }
  return { shape, values };
}

/** Every name the precision's policy needs is there, none looser than the policy (examples._check_tolerance). */
function checkTolerance(data, where, contract) {
  const policy = contract.parity.tolerances[data.precision ?? ''] ?? {};
  for (const [name, bound] of Object.entries(policy)) {
    const field = `tolerance.${name}`;
    if (!Object.hasOwn(data.tolerance, name)) {
      throw new DemoError(`examples file ${where}: field '${field}' is missing (the ${data.precision} policy needs ` +
        `it); ${FIX}`, field, 'required');
    }
    const value = data.tolerance[name];
    const upper = contract.parity.upper_bounds.includes(name);
    if (upper ? value > bound : value < bound) {
      throw new DemoError(`examples file ${where}: field '${field}' must not be looser than the ${data.precision} ` +
        `policy (${upper ? '<=' : '>='} ${bound}), not ${value}; ${FIX}`, field, 'range');
    }
  }
}

/**
 * A bundled examples file ({stem}.examples.json) read as emo.contract.examples reads it: the document with every
 * example's input and output decoded to {shape, values: Float32Array}, or a DemoError naming the field.
 */
export function readExamples(raw, where, contract) {
  const what = `examples file ${where}`;
  const data = parseJson(raw, what, contract.limits, contract.limits.max_examples_bytes);
  const schemaName = contract.schemas.examples.properties.schema.const;
  if (jsonType(data) === 'object' && data.schema !== schemaName) {  // another file type or version: refused whole
    throw new DemoError(Object.hasOwn(data, 'schema')
      ? `${what}: field 'schema' must be '${schemaName}', not ${shown(data.schema)}; ${FIX}`
      : `${what}: field 'schema' is missing; ${FIX}`, 'schema', 'schema');
  }
  checkSchema(contract.schemas.examples, data, what);
  checkTolerance(data, where, contract);
  let size = null;
  const examples = data.examples.map((example, i) => {
    const input = decodeTensor(example.input, `examples[${i}].input`, where, contract);
    const output = decodeTensor(example.output, `examples[${i}].output`, where, contract);
    if (size !== null && output.values.length !== size) {
      throw new DemoError(`${what}: field 'examples[${i}].output.shape' must have ${size} elements like ` +
        `examples[0].output; ${FIX}`, `examples[${i}].output.shape`, 'mismatch');
    }
    size = output.values.length;
    return { ...example, input, output };
  });
  return { ...data, examples };
}

/** Indices of the k largest values, best first; ties keep the lower index first (examples.top_k). */
export function topIndices(values, k = 5) {
  return Array.from(values.keys()).sort((a, b) => values[b] - values[a] || a - b).slice(0, k);
}

/**
 * emo.contract.examples.agreement: max |diff|, the smallest cosine, top-1 and top-5 agreement of `outputs` (one per
 * example) with the expected outputs, judged by the file's tolerance: {..., tolerance, status: 'passed' | 'failed: ...'}.
 */
export function agreement(examples, outputs, contract) {
  const expected = examples.examples.map((e) => e.output.values);
  if (outputs.length !== expected.length || outputs.some((o, i) => o.length !== expected[i].length)) {
    return { status: `failed: outputs of [${outputs.map((o) => o.length)}] values do not match the ` +
      `${expected.length} expected outputs of ${expected[0].length} values` };
  }
  if (outputs.some((o) => Array.from(o).some((v) => !Number.isFinite(v)))) return { status: 'failed: non-finite outputs' };
  let maxAbs = 0;
  let cosine = Infinity;
  let top1 = 0;
  let top5 = 0;
  outputs.forEach((actual, i) => {
    const want = expected[i];
    let dot = 0;
    let na = 0;
    let ne = 0;
    for (let j = 0; j < want.length; j++) {
      maxAbs = Math.max(maxAbs, Math.abs(actual[j] - want[j]));
      dot += actual[j] * want[j];
      na += actual[j] * actual[j];
      ne += want[j] * want[j];
    }
    cosine = Math.min(cosine, dot / Math.max(Math.sqrt(na) * Math.sqrt(ne), 1e-300));
    top1 += topIndices(actual, 1)[0] === topIndices(want, 1)[0];
    const a5 = topIndices(actual).sort((x, y) => x - y).join();
    top5 += a5 === topIndices(want).sort((x, y) => x - y).join();
  });
  const n = outputs.length;
  const result = { max_abs_diff: maxAbs, cosine, top1_agreement: top1 / n, top5_agreement: top5 / n, num_examples: n };
  const failures = [];
  for (const [name, bound] of Object.entries(examples.tolerance)) {
    const upper = contract.parity.upper_bounds.includes(name);
    if (upper ? result[name] > bound : result[name] < bound) {
      failures.push(`${name} ${result[name].toPrecision(3)} ${upper ? '>' : '<'} ${bound}`);
    }
  }
  return { ...result, tolerance: { ...examples.tolerance },
           status: failures.length ? `failed: ${failures.join('; ')}` : 'passed' };
}
