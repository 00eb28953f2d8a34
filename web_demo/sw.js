// The service worker of the web demo: the page works offline after one visit.
//
// Caches (Cache API), all of this origin only:
//   emo-web-demo-shell-VERSION  the app shell (page, scripts, styles, manifest, icons, the contract document),
//                               cached at install from /version.json's list, and the runtimes' JS/WASM from
//                               node_modules as the page first uses them; served cache-first. VERSION is a hash of all
//                               of it that the server computes: the page registers sw.js?v=VERSION, so a change
//                               installs a new worker, which fills a new cache and deletes the old ones on activation.
//   emo-web-demo-models-1       the artifacts the user loaded, with their sidecar and examples file, put there by the
//                               page after it checked their sha256 against the sidecar (app.js); an artifact whose
//                               sidecar names another sha256 is fetched again and replaced.
//   emo-web-demo-data-1         the model list and the images (samples, photos beside the models), network first.
// Everything under /models/ and /samples/ goes to the network first and falls back to these caches offline.
// Registered by app.js; scope: the page's folder (sw.js sits there, so no Service-Worker-Allowed header is needed).

const VERSION = new URL(self.location.href).searchParams.get('v') || 'unversioned';
const SHELL_PREFIX = 'emo-web-demo-shell-';
const SHELL = `${SHELL_PREFIX}${VERSION}`;
const DATA = 'emo-web-demo-data-1';
const SCOPE = new URL(self.registration.scope);

self.addEventListener('install', (event) => {
  event.waitUntil((async () => {
    const response = await fetch(new URL('version.json', SCOPE), { cache: 'no-store' });
    const { shell } = await response.json();
    const cache = await caches.open(SHELL);
    await cache.addAll(shell.map((path) => new Request(new URL(path, SCOPE), { cache: 'no-store' })));
    await self.skipWaiting();  // a new version takes over at once; the page says "reload to update"
  })());
});

self.addEventListener('activate', (event) => {
  event.waitUntil((async () => {
    for (const key of await caches.keys()) {
      if (key.startsWith(SHELL_PREFIX) && key !== SHELL) await caches.delete(key);
    }
    await self.clients.claim();
  })());
});

self.addEventListener('fetch', (event) => {
  const { request } = event;
  const url = new URL(request.url);
  if (request.method !== 'GET' || url.origin !== SCOPE.origin || !url.pathname.startsWith(SCOPE.pathname)) return;
  const path = url.pathname.slice(SCOPE.pathname.length);
  if (path === 'version.json') return;  // always the network: it is how an update is noticed
  if (path.startsWith('models/') || path.startsWith('samples/')) {
    event.respondWith(networkFirst(request, path === 'models/index.json'));
    return;
  }
  event.respondWith(cacheFirst(request, request.mode === 'navigate'));
});

function offline(request) {
  return new Response(`offline, and ${new URL(request.url).pathname} was not cached on this device\n`, {
    status: 504, statusText: 'Offline', headers: { 'Content-Type': 'text/plain; charset=utf-8',
                                                   'X-Emo-Offline': '1' } });
}

/** The page and the runtimes: from this version's cache; what is missing comes from the network and is kept. */
async function cacheFirst(request, navigation) {
  const cache = await caches.open(SHELL);
  const hit = await cache.match(navigation ? new URL('./', SCOPE).href : request, { ignoreSearch: navigation });
  if (hit) return hit;
  try {
    const response = await fetch(request);
    if (response.ok && response.status === 200) await cache.put(request, response.clone());
    return response;
  } catch {
    return offline(request);
  }
}

/** Models, the model list and images: the network first (a changed model is seen at once), the caches offline. The
 * list and the images are kept here; artifacts, sidecars and examples files by the page, once it checked them. */
async function networkFirst(request, isIndex) {
  try {
    const response = await fetch(request);
    const image = (response.headers.get('Content-Type') ?? '').startsWith('image/');
    if ((isIndex || image) && response.status === 200) await (await caches.open(DATA)).put(request, response.clone());
    return response;
  } catch {
    return (await caches.match(request, { ignoreSearch: true })) ?? offline(request);
  }
}
