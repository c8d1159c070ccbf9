/* Service worker of the offline verifier: every file of the app and the trust list are
   cached on install; the app's files are served from the cache, the trust list from the
   network when it answers (and the cache updated), else from the cache. */
"use strict";
const CACHE = "jz-offline-v1";
const TRUST = "/ca/trust-list.json";
const FILES = ["./", "app.js", "app.css", "manifest.webmanifest", "icon-192.png",
  "icon-512.png", "vendor/zxing-reader.js", "vendor/zxing_reader.wasm", TRUST];

self.addEventListener("install", (event) => {
  event.waitUntil(caches.open(CACHE).then((c) => c.addAll(FILES)).then(() => self.skipWaiting()));
});

self.addEventListener("activate", (event) => {
  event.waitUntil((async () => {
    for (const key of await caches.keys()) if (key !== CACHE) await caches.delete(key);
    await self.clients.claim();
  })());
});

self.addEventListener("fetch", (event) => {
  const url = new URL(event.request.url);
  if (event.request.method !== "GET" || url.origin !== location.origin) return;
  if (url.pathname === TRUST) {
    event.respondWith((async () => {
      const cache = await caches.open(CACHE);
      try {
        const fresh = await fetch(event.request, {cache: "no-store"});
        if (fresh.ok) { await cache.put(TRUST, fresh.clone()); return fresh; }
      } catch (e) { /* offline: the cached list below */ }
      const cached = await cache.match(TRUST);
      return cached || new Response("{}", {status: 503, headers: {"Content-Type": "application/json"}});
    })());
    return;
  }
  if (!url.pathname.startsWith("/offline/")) return;
  event.respondWith((async () => {
    const cache = await caches.open(CACHE);
    const hit = await cache.match(event.request, {ignoreSearch: true});
    if (hit) return hit;
    try { return await fetch(event.request); }
    catch (e) { return (await cache.match("./")) || Response.error(); }
  })());
});
