// Headless Chromium for the tests and `emo-bench --device browser`, driven by playwright-core (no browser
// download: the system's Chromium). One JSON command per stdin line, one JSON answer per stdout line:
//   {"op": "open", "url": ...}                      -> {"ok": true, "version": "Chromium 1xx", "isolated": true}
//   {"op": "call", "fn": "load", "args": [...]}     -> {"ok": true, "value": ...} | {"ok": false, "error": "..."}
//   {"op": "text", "selector": "#error"}            -> {"ok": true, "value": "..."}
//   {"op": "screenshot", "path": "/tmp/x.png"}      -> {"ok": true}
//   {"op": "eval", "expr": "document.title"}        -> {"ok": true, "value": ...}
//   {"op": "files", "selector": "#image-file", "paths": [...]}, {"op": "wait", "expr": "..."}
//   {"op": "context", "options": {viewport, deviceScaleFactor, isMobile, hasTouch}}  a fresh browser context
//   {"op": "offline", "value": true}                 the context's network off (Playwright's setOffline)
//   {"op": "reload"}, {"op": "tap", "selector": "..."}, {"op": "cdp", "method": "Page.getAppManifest"}
//   {"op": "close"}
// usage: node driver.mjs CHROMIUM_PATH [OPTIONS_JSON]
//   options: {"webgpu": true}  WebGPU on (SwiftShader's Vulkan when there is no GPU), else --disable-gpu
//            {"fakeCamera": "/path/frames.y4m"}  a fake camera playing that file, access granted
//            {"persistent": true}  a normal (not incognito) profile in a temporary folder: Chromium judges
//                                  installability only there ("context" is then not available)
// The caller (runtime_bench/browser.py) bounds every command with a timeout; when one passes it sends SIGTERM: the
// driver exits at once, and playwright's exit handler kills Chromium's whole process group (a renderer stuck in a
// WebAssembly loop included), so nothing is left running.

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { chromium } from 'playwright-core';

const executablePath = process.argv[2] || '/usr/bin/chromium';
const options = JSON.parse(process.argv[3] || '{}');
for (const signal of ['SIGTERM', 'SIGINT', 'SIGHUP']) process.on(signal, () => process.exit(143));
// a fresh profile per launch (playwright's temporary user-data-dir); nothing phones home
const args = ['--no-sandbox', '--no-first-run', '--disable-background-networking', '--disable-component-update',
              '--disable-sync', '--disable-dev-shm-usage'];
if (options.webgpu) {
  // Chromium 156 on Linux: WebGPU behind this flag; with no GPU, Dawn's Vulkan backend on SwiftShader (a software
  // adapter: slow, but the same WebGPU path a phone's GPU takes)
  args.push('--enable-unsafe-webgpu', '--use-angle=swiftshader', '--enable-features=Vulkan');
} else {
  args.push('--disable-gpu');
}
if (options.fakeCamera) {
  args.push('--use-fake-device-for-media-stream', '--use-fake-ui-for-media-stream',
            `--use-file-for-fake-video-capture=${options.fakeCamera}`);
}
const viewport = { width: 1100, height: 900 };
let browser = null;
let context;
let profile = null;
if (options.persistent) {
  profile = fs.mkdtempSync(path.join(os.tmpdir(), 'emo-web-demo-profile-'));
  context = await chromium.launchPersistentContext(profile, { executablePath, headless: true, args, viewport });
  process.on('exit', () => fs.rmSync(profile, { recursive: true, force: true }));
} else {
  browser = await chromium.launch({ executablePath, headless: true, args });
  context = await browser.newContext({ viewport });
}
let page = null;
let version = browser ? `Chromium ${browser.version()}` : null;
const consoleLines = [];

function reply(obj) { process.stdout.write(`${JSON.stringify(obj)}\n`); }

async function handle(cmd) {
  switch (cmd.op) {
    case 'open': {
      if (page) await page.close();
      page = await context.newPage();
      page.on('console', (m) => consoleLines.push(`${m.type()}: ${m.text()}`.slice(0, 500)));
      page.on('pageerror', (e) => consoleLines.push(`pageerror: ${e.message}`.slice(0, 500)));
      await page.goto(cmd.url);
      await page.waitForFunction(() => window.emoDemo?.ready === true, null, { timeout: cmd.timeoutMs ?? 60000 });
      const isolated = await page.evaluate(() => crossOriginIsolated);
      if (!version) {
        const session = await context.newCDPSession(page);
        version = `Chromium ${(await session.send('Browser.getVersion')).product.split('/').pop()}`;
        await session.detach();
      }
      return { version, isolated };
    }
    case 'call':
      return page.evaluate(async ({ fn, args }) => window.emoDemo[fn](...args), { fn: cmd.fn, args: cmd.args ?? [] });
    case 'text':
      return page.locator(cmd.selector).innerText();
    case 'screenshot':
      await page.screenshot({ path: cmd.path, fullPage: true });
      return null;
    case 'files':  // tests: pick files in an <input type=file>, as a user does
      await page.setInputFiles(cmd.selector, cmd.paths);
      return null;
    case 'wait': {  // tests: until an expression is truthy in the page (polled with evaluate: a string predicate
      // in waitForFunction is eval'd in the page, which the page's Content-Security-Policy rightly refuses)
      const deadline = Date.now() + (cmd.timeoutMs ?? 120000);
      while (!(await page.evaluate(cmd.expr))) {
        if (Date.now() > deadline) throw new Error(`timed out waiting for ${cmd.expr}`);
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
      return null;
    }
    case 'eval':  // tests: an expression evaluated in the page
      return page.evaluate(cmd.expr);
    case 'context': {  // tests: a fresh context (a phone's viewport and touch; no service worker, no caches)
      if (!browser) throw new Error('a persistent profile has one context');
      if (page) await page.close();
      page = null;
      await context.close();
      context = await browser.newContext(cmd.options ?? {});
      return null;
    }
    case 'offline':
      await context.setOffline(Boolean(cmd.value));
      return null;
    case 'reload':
      await page.reload();
      await page.waitForFunction(() => window.emoDemo?.ready === true, null, { timeout: cmd.timeoutMs ?? 60000 });
      return page.evaluate(() => crossOriginIsolated);
    case 'tap':  // tests: a touch on an element (needs a context with hasTouch)
      await page.locator(cmd.selector).first().tap();
      return null;
    case 'cdp': {  // tests: one DevTools protocol command on the page (Page.getAppManifest, ...)
      const session = await context.newCDPSession(page);
      try {
        return await session.send(cmd.method, cmd.params ?? {});
      } finally {
        await session.detach();
      }
    }
    case 'console':
      return consoleLines.splice(0);
    default:
      throw new Error(`unknown op ${cmd.op}`);
  }
}

const lines = createInterface({ input: process.stdin });
for await (const line of lines) {
  if (!line.trim()) continue;
  const cmd = JSON.parse(line);
  if (cmd.op === 'close') break;
  try {
    reply({ ok: true, value: (await handle(cmd)) ?? null });
  } catch (e) {
    // page.evaluate wraps the page's error: keep the page's own message
    const message = String(e?.message ?? e).replace(/^page\.evaluate: (Error: )?/, '').split('\n')[0];
    reply({ ok: false, error: message });
  }
}
// close the browser, but never hang on it (a stuck renderer must not keep the bench or the tests waiting)
await Promise.race([(browser ?? context).close(), new Promise((resolve) => setTimeout(resolve, 5000))]);
process.exit(0);
