/* The trust list's own check, shared by the page (app.js) and the service worker (sw.js):
   RFC 8785 canonical JSON, the SubjectPublicKeyInfo of a certificate, and the platform
   root's ES256 signature over the list (docs/offline-qr.md). The root comes from
   root.json, which the service worker caches on its first install and serves from the
   cache afterwards: a list fetched later must be signed by that root. */
"use strict";
(function (scope) {
  // --- RFC 8785 (JCS) ----------------------------------------------------------------------
  // Numbers: ECMAScript Number.prototype.toString, which is what JSON.stringify writes for
  // a finite number (-0 as "0"). Strings: JSON.stringify's escapes are JCS's (\b \t \n \f
  // \r \" \\, other controls as \u00xx lower case, everything else as is); a lone surrogate
  // is not Unicode and is refused. Members: sorted by UTF-16 code units, which is how
  // Array.prototype.sort compares strings.
  const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?:^|[^\uD800-\uDBFF])[\uDC00-\uDFFF]/;

  function jcsString(s) {
    if (LONE_SURROGATE.test(s)) throw new Error("JCS: lone surrogate");
    return JSON.stringify(s);
  }

  function jcs(value, depth) {
    if (depth > 64) throw new Error("JCS: too deep");
    if (value === null || value === true || value === false) return String(value);
    switch (typeof value) {
      case "number":
        if (!Number.isFinite(value)) throw new Error("JCS: NaN or Infinity");
        return JSON.stringify(value);
      case "string":
        return jcsString(value);
      case "object":
        if (Array.isArray(value)) return "[" + value.map((v) => jcs(v, depth + 1)).join(",") + "]";
        return "{" + Object.keys(value).sort().map(
          (k) => jcsString(k) + ":" + jcs(value[k], depth + 1)).join(",") + "}";
    }
    throw new Error("JCS: not a JSON value");
  }

  /** The RFC 8785 canonical UTF-8 bytes of a JSON value. */
  function canonicalize(value) {
    return new TextEncoder().encode(jcs(value, 0));
  }

  // --- small helpers -----------------------------------------------------------------------
  const hex = (b) => Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
  const b64 = (s) => Uint8Array.from(atob(s), (c) => c.charCodeAt(0));

  // The SubjectPublicKeyInfo of an X.509 certificate (DER): the 7th field of tbsCertificate.
  function spkiOf(der) {
    function tlv(pos) {
      if (pos + 2 > der.length) throw new Error("DER");
      let len = der[pos + 1], head = 2;
      if (len & 0x80) {
        const n = len & 0x7f; len = 0;
        for (let k = 0; k < n; k++) len = len * 256 + der[pos + 2 + k];
        head = 2 + n;
      }
      if (pos + head + len > der.length) throw new Error("DER");
      return {start: pos, body: pos + head, end: pos + head + len};
    }
    const cert = tlv(0), tbs = tlv(cert.body);
    let pos = tbs.body;
    if (der[pos] === 0xa0) pos = tlv(pos).end; // version
    for (let k = 0; k < 5; k++) pos = tlv(pos).end; // serial, signature, issuer, validity, subject
    const spki = tlv(pos);
    return der.slice(spki.start, spki.end);
  }

  async function sha256(bytes) {
    return new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
  }

  async function es256Verify(certDer, signature, data) {
    const key = await crypto.subtle.importKey(
      "spki", spkiOf(certDer), {name: "ECDSA", namedCurve: "P-256"}, false, ["verify"]);
    return crypto.subtle.verify({name: "ECDSA", hash: "SHA-256"}, key, signature, data);
  }

  // --- the trust list's signature ----------------------------------------------------------
  /** The members the list's signatures do not cover (verifier.qr.SIGNATURE_MEMBERS). */
  const SIGNATURE_MEMBERS = ["signature", "signature_sm2"];

  /** Check a trust list (JSON text) against the pinned roots ({roots: [{root_id,
      certificate}]}). Resolves to {ok: true, doc} or {ok: false, why} (why in Chinese). */
  async function checkTrustList(text, pinned) {
    let doc;
    try { doc = JSON.parse(text); } catch (e) { return {ok: false, why: "信任列表不是有效的 JSON。"}; }
    if (!doc || typeof doc !== "object" || doc.format !== "jianzheng-trust/1" ||
        !Array.isArray(doc.keys) || typeof doc.issued_at !== "number") {
      return {ok: false, why: "信任列表格式不对。"};
    }
    const sig = doc.signature;
    if (!sig || sig.alg !== "ES256" || typeof sig.root_id !== "string" || typeof sig.value !== "string") {
      return {ok: false, why: "信任列表没有平台根证书的签名。"};
    }
    const roots = (pinned && Array.isArray(pinned.roots)) ? pinned.roots : [];
    let root = null;
    for (const r of roots) {
      try {
        const der = b64(r.certificate);
        if (hex((await sha256(der)).slice(0, 8)) === sig.root_id && r.root_id === sig.root_id) root = der;
      } catch (e) { /* an unusable entry is no root */ }
    }
    if (!root) {
      return {ok: false, why: "信任列表不是由平台根证书签发的（签名者 " + sig.root_id + " 不是本应用内置的平台根证书）。"};
    }
    const covered = {};
    for (const k of Object.keys(doc)) if (!SIGNATURE_MEMBERS.includes(k)) covered[k] = doc[k];
    let good = false;
    try {
      const value = b64(sig.value);
      good = value.length === 64 && await es256Verify(root, value, canonicalize(covered));
    } catch (e) { good = false; }
    if (!good) return {ok: false, why: "信任列表的平台根签名验证失败：内容被改动过。"};
    return {ok: true, doc};
  }

  /** The service worker's cache (sw.js), where the verified list is kept. */
  const CACHE = "jz-offline-v2";

  scope.JZTrust = {CACHE, canonicalize, checkTrustList, spkiOf, es256Verify, sha256, hex, b64};
})(self);
