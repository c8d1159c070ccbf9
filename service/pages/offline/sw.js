/* Service worker of the offline verifier: every file of the app, the pinned platform root
   (root.json) and the trust list are cached on install; the app's files and the root are
   served from the cache, the trust list from the network when it answers. A fetched list
   is cached only when the pinned root's signature over it verifies (trust.js); otherwise
   the cached list is served, with the reason in the X-JZ-Trust-Refused header. */
"use strict";
importScripts("trust.js");
const CACHE = JZTrust.CACHE;
const TRUST = "/ca/trust-list.json";
const ROOT = "root.json";
const FILES = ["./", "app.js", "trust.js", "app.css", "manifest.webmanifest", "icon-192.png",
  "icon-512.png", "vendor/zxing-reader.js", "vendor/zxing_reader.wasm", ROOT];

async function pinnedRoots(cache) {
  const hit = await cache.match(ROOT);
  return hit ? hit.json() : {roots: []};
}

/** The network's trust list, cached when it verifies: {response} or {refused: why}. */
async function freshTrust(cache, request) {
  const fresh = await fetch(request || TRUST, {cache: "no-store"});
  if (!fresh.ok) return {refused: null};
  const text = await fresh.text();
  const verdict = await JZTrust.checkTrustList(text, await pinnedRoots(cache));
  if (!verdict.ok) return {refused: verdict.why};
  const headers = {"Content-Type": "application/json", "Cache-Control": "no-cache"};
  await cache.put(TRUST, new Response(text, {headers}));
  return {response: new Response(text, {headers})};
}

self.addEventListener("install", (event) => {
  event.waitUntil((async () => {
    const cache = await caches.open(CACHE);
    await cache.addAll(FILES);
    try { await freshTrust(cache); } catch (e) { /* the page says the list is missing */ }
    await self.skipWaiting();
  })());
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
      let refused = null;
      try {
        const got = await freshTrust(cache, event.request);
        if (got.response) return got.response;
        refused = got.refused;
      } catch (e) { /* offline: the cached list below */ }
      const cached = await cache.match(TRUST);
      const headers = {"Content-Type": "application/json", "Cache-Control": "no-cache"};
      if (refused) headers["X-JZ-Trust-Refused"] = encodeURIComponent(refused);
      if (cached) return new Response(await cached.text(), {headers});
      return new Response("{}", {status: 503, headers});
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
