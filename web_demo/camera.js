// The live camera: getUserMedia (the rear camera preferred on phones), every frame the model can take classified off
// the main thread, the latency of each and a small plot of the recent ones. Frames are dropped, never queued: while
// one frame is in flight, the frames the camera delivers are counted and skipped, so the result shown is never
// older than one inference, however slow the model is.
//
// A frame is grabbed as an ImageBitmap and transferred to frame-worker.js, which decodes it to pixels, preprocesses it
// as `classify` does a photo (core.js) and, for onnxruntime-web, runs the model there. LiteRT.js cannot run in a
// worker (runtime-litert.js says why): its frames are preprocessed in the worker and classified on the main thread.

const PLOT_POINTS = 90;

export class Camera {
  /** `onResult(result, stats)` for every classified frame of the live loop; `onError(error)`. */
  constructor({ video, plot, onResult, onError }) {
    Object.assign(this, { video, plot, onResult, onError });
    this.stream = null;
    this.worker = null;
    this.model = null;        // {runtime, mainModel, where, info} of the model the worker was opened with
    this.pending = new Map();
    this.nextId = 1;
    this.busy = false;
    this.stats = { frames: 0, classified: 0, dropped: 0, maxInFlight: 0 };
    this.inFlight = 0;
    this.latencies = [];
  }

  get running() { return this.stream !== null; }

  /** Open the camera and resolve when its first frame has arrived: {width, height, label, facingMode}. */
  async start() {
    if (this.running) return this.describe();
    if (!navigator.mediaDevices?.getUserMedia) throw new Error('this browser gives the page no camera access');
    this.stream = await navigator.mediaDevices.getUserMedia({
      audio: false, video: { facingMode: { ideal: 'environment' }, width: { ideal: 1280 }, height: { ideal: 720 } },
    });
    this.video.srcObject = this.stream;
    this.video.hidden = false;
    await this.video.play();
    await this.firstFrame();
    this.stats = { frames: 0, classified: 0, dropped: 0, maxInFlight: 0 };
    this.latencies = [];
    this.video.requestVideoFrameCallback(this.onFrame);
    return this.describe();
  }

  describe() {
    const settings = this.stream.getVideoTracks()[0]?.getSettings() ?? {};
    return { width: this.video.videoWidth, height: this.video.videoHeight, label: this.stream.getVideoTracks()[0]?.label,
             facingMode: settings.facingMode ?? null, where: this.model?.where ?? null };
  }

  firstFrame() {
    return new Promise((resolve) => {
      if (this.video.videoWidth > 0 && this.video.readyState >= 2) resolve();
      else this.video.requestVideoFrameCallback(() => resolve());
    });
  }

  stop() {
    for (const track of this.stream?.getTracks() ?? []) track.stop();
    this.stream = null;
    this.video.srcObject = null;
    this.video.hidden = true;
  }

  /** Give the worker the model to classify frames with (called at start and whenever the page loads a model). */
  async useModel({ name, bytes, side, contract, format, threads, backend, mainModel, workerCapable }) {
    this.ensureWorker();
    const inWorker = workerCapable;
    const reply = await this.ask({ op: 'open', name, bytes: inWorker ? bytes : null, side, contract,
                                   runtime: inWorker ? format.runtime : null, options: { threads, backend } });
    this.model = { mainModel: inWorker ? null : mainModel, info: reply.info ?? mainModel.info,
                   where: inWorker ? 'a Web Worker' : 'the main thread (LiteRT.js cannot run in a worker; the ' +
                     'frames are preprocessed in a worker)' };
    return this.model;
  }

  ensureWorker() {
    if (this.worker) return;
    this.worker = new Worker(new URL('./frame-worker.js', import.meta.url), { type: 'module', name: 'emo-frames' });
    this.worker.addEventListener('message', (event) => {
      const { id, ...body } = event.data;
      const waiter = this.pending.get(id);
      this.pending.delete(id);
      if (waiter) waiter(body);
    });
    this.worker.addEventListener('error', (event) => {
      for (const waiter of this.pending.values()) waiter({ error: `the frame worker failed: ${event.message}` });
      this.pending.clear();
      this.worker = null;
    });
  }

  ask(message, transfer = []) {
    return new Promise((resolve, reject) => {
      const id = this.nextId++;
      this.pending.set(id, (body) => (body.error ? reject(Object.assign(new Error(body.error), body)) : resolve(body)));
      this.worker.postMessage({ ...message, id }, transfer);
    });
  }

  /** The current frame through the worker (and the main-thread model when the runtime needs it): raw logits. */
  async classifyFrame() {
    if (!this.running) throw new Error('start the camera first');
    if (!this.model) throw new Error('load a model first (step 1)');
    const start = performance.now();
    const bitmap = await createImageBitmap(this.video);
    const reply = await this.ask({ op: 'frame', bitmap }, [bitmap]);
    let { logits } = reply;
    const ms = { ...reply.ms };
    if (!logits) {
      const begin = performance.now();
      logits = await this.model.mainModel.run(reply.x);
      ms.inference = performance.now() - begin;
    }
    ms.total = performance.now() - start;
    return { logits, ms, input: reply.input, where: this.model.where,
             scope: { preprocess: reply.scope, inference: reply.logits ? reply.scope : 'Window' } };
  }

  onFrame = () => {
    if (!this.running) return;
    this.stats.frames++;
    if (this.busy) {
      this.stats.dropped++;  // the model is still on the previous frame: skip this one
    } else if (this.model) {
      this.busy = true;
      this.stats.maxInFlight = Math.max(this.stats.maxInFlight, ++this.inFlight);  // stays 1: frames never queue
      const stats = this.stats;  // this run's counts: a restart while the frame is in flight starts new ones
      this.classifyFrame()
        .then((result) => {
          stats.classified++;
          if (stats !== this.stats) return;  // the camera was restarted: this frame belongs to the last run
          this.latencies.push(result.ms.total);
          if (this.latencies.length > PLOT_POINTS) this.latencies.shift();
          this.drawPlot();
          this.onResult(result, { ...this.stats });
        })
        .catch((e) => { if (this.running) this.onError(e); })
        .finally(() => { this.inFlight--; this.busy = false; });
    }
    this.video.requestVideoFrameCallback(this.onFrame);
  };

  /** The recent latencies, newest on the right, on a scale from 0 to the largest shown. */
  drawPlot() {
    const canvas = this.plot;
    const ratio = globalThis.devicePixelRatio || 1;
    const width = canvas.clientWidth || 320;
    const height = canvas.clientHeight || 80;
    if (canvas.width !== Math.round(width * ratio)) {
      canvas.width = Math.round(width * ratio);
      canvas.height = Math.round(height * ratio);
    }
    const ctx = canvas.getContext('2d');
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    ctx.clearRect(0, 0, width, height);
    const top = Math.max(...this.latencies, 1);
    const step = width / (PLOT_POINTS - 1);
    const offset = PLOT_POINTS - this.latencies.length;
    ctx.strokeStyle = '#1a5fb4';
    ctx.lineWidth = 1.5;
    ctx.beginPath();
    this.latencies.forEach((ms, i) => {
      const x = (offset + i) * step;
      const y = height - 4 - (ms / top) * (height - 18);
      if (i === 0) ctx.moveTo(x, y); else ctx.lineTo(x, y);
    });
    ctx.stroke();
    ctx.fillStyle = '#444';
    ctx.font = '11px system-ui, sans-serif';
    ctx.fillText(`${top.toFixed(0)} ms`, 2, 11);
    ctx.fillText('latency per frame', width - 100, 11);
  }
}
