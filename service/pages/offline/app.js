/* Offline verifier of the signed QR payload (INTERFACE §7.5), in the browser:
   zxing-wasm decodes the photo, a small CBOR reader parses the COSE_Sign1 message,
   WebCrypto verifies the ES256 signature with the certificate the trust list names; the
   trust list itself is used only when the pinned platform root's signature verifies. */
"use strict";
(function () {
  const $ = (id) => document.getElementById(id);
  const TRUST_URL = "/ca/trust-list.json";
  const ROOT_URL = "root.json";
  let trust = null;

  // --- network state and the service worker ----------------------------------------------
  function showNet() {
    const el = $("net");
    el.textContent = navigator.onLine ? "在线" : "离线";
    el.className = "pill " + (navigator.onLine ? "on" : "off");
  }
  addEventListener("online", showNet);
  addEventListener("offline", showNet);
  showNet();
  if ("serviceWorker" in navigator) {
    navigator.serviceWorker.register("sw.js", {scope: "./"}).catch(() => {});
  }

  // The trust list, checked against the pinned platform root (trust.js) before it is used:
  // a list the service worker refused, or one this page got from the network that fails the
  // check, is not used; the copy cached earlier (verified when it was cached, and again
  // here) stays in use.
  async function loadTrust() {
    const el = $("trust"), warn = $("trust-warning");
    let roots = null;
    try { const r = await fetch(ROOT_URL); if (r.ok) roots = await r.json(); } catch (e) { roots = null; }
    if (!roots) { el.textContent = "平台根证书不可用：请联网打开一次本页。"; return; }
    let text = null, refused = null;
    try {
      const r = await fetch(TRUST_URL);
      const header = r.headers.get("X-JZ-Trust-Refused");
      if (header) refused = decodeURIComponent(header);
      if (r.ok) text = await r.text();
    } catch (e) { text = null; }
    let verdict = text === null ? null : await JZTrust.checkTrustList(text, roots);
    if (verdict && !verdict.ok) {
      refused = verdict.why;
      verdict = null;
      try {
        const hit = await (await caches.open(JZTrust.CACHE)).match(TRUST_URL);
        if (hit) verdict = await JZTrust.checkTrustList(await hit.text(), roots);
      } catch (e) { verdict = null; }
      if (verdict && !verdict.ok) verdict = null;
    }
    if (refused) {
      warn.hidden = false;
      warn.dataset.refused = "1";
      warn.textContent = "已拒绝新获取的信任列表：" + refused +
        (verdict ? "继续使用此前缓存、已核验的信任列表。" : "");
    }
    if (!verdict) {
      trust = null;
      el.textContent = "信任列表不可用：请在可信网络下联网打开一次本页。";
      return;
    }
    trust = verdict.doc;
    el.textContent = "信任列表：" + trust.keys.length + " 个签名密钥，签发于 " +
      beijing(trust.issued_at) + "，平台根证书 " + trust.signature.root_id +
      " 的签名已核验（已缓存，可离线使用）";
    el.dataset.ready = "1";
    el.dataset.issuedAt = String(trust.issued_at);
  }
  loadTrust();

  // --- small decoders ----------------------------------------------------------------------
  function base32(text) {
    const abc = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let bits = 0, value = 0; const out = [];
    for (const ch of text) {
      const v = abc.indexOf(ch);
      if (v < 0) throw new Error("Base32");
      value = (value << 5) | v; bits += 5;
      if (bits >= 8) { out.push((value >>> (bits - 8)) & 255); bits -= 8; }
    }
    return new Uint8Array(out);
  }

  function cbor(bytes) {
    let i = 0;
    function len(info) {
      if (info < 24) return info;
      let n = {24: 1, 25: 2, 26: 4}[info];
      if (!n) throw new Error("CBOR length");
      let v = 0;
      while (n--) { v = v * 256 + bytes[i++]; }
      return v;
    }
    function item(depth) {
      if (depth > 8 || i >= bytes.length) throw new Error("CBOR");
      const b = bytes[i++], major = b >> 5, info = b & 31;
      if (major === 7) {
        if (info === 20) return false; if (info === 21) return true; if (info === 22) return null;
        throw new Error("CBOR simple");
      }
      const n = len(info);
      switch (major) {
        case 0: return n;
        case 1: return -1 - n;
        case 2: { if (i + n > bytes.length) throw new Error("CBOR"); const v = bytes.slice(i, i + n); i += n; return v; }
        case 3: { if (i + n > bytes.length) throw new Error("CBOR"); const v = new TextDecoder("utf-8", {fatal: true}).decode(bytes.slice(i, i + n)); i += n; return v; }
        case 4: { const a = []; for (let k = 0; k < n; k++) a.push(item(depth + 1)); return a; }
        case 5: { const m = new Map(); for (let k = 0; k < n; k++) { const key = item(depth + 1); m.set(key, item(depth + 1)); } return m; }
        case 6: return {tag: n, value: item(depth + 1)};
      }
      throw new Error("CBOR");
    }
    const v = item(0);
    if (i !== bytes.length) throw new Error("CBOR trailing bytes");
    return v;
  }

  function bstrHead(n) {
    if (n < 24) return [0x40 + n];
    if (n < 256) return [0x58, n];
    return [0x59, n >> 8, n & 255];
  }

  function sigStructure(prot, payload) {
    const parts = [[0x84, 0x6a], Array.from(new TextEncoder().encode("Signature1")),
      bstrHead(prot.length), Array.from(prot), [0x40], bstrHead(payload.length), Array.from(payload)];
    return new Uint8Array([].concat(...parts));
  }

  const {hex, b64} = JZTrust;
  function beijing(unix) {
    const d = new Date((unix + 8 * 3600) * 1000);
    return d.toISOString().slice(0, 19).replace("T", " ") + "（北京时间）";
  }
  const group = (c) => c.length === 19 ? [c.slice(0, 6), c.slice(6, 8), c.slice(8, 13), c.slice(13, 18), c.slice(18)].join("-") : c;

  // --- verification ----------------------------------------------------------------------
  async function verifyText(text) {
    const m = /\/v\/([0-9A-Z]+)\/(JZ1[A-Z2-7]+)\/?$/i.exec(text.trim()) || /^(?:)(JZ1[A-Z2-7]+)$/i.exec(text.trim());
    if (!m) {
      if (/\/v\/[0-9A-Z]+\/?$/i.test(text)) return {result: "unusable", why: "该二维码不含平台签名（早期报告），请联网扫码在线验证。"};
      return {result: "unusable", why: "这不是见证平台的报告二维码。"};
    }
    const urlCode = m.length > 2 ? m[1].toUpperCase() : null;
    const p = (m.length > 2 ? m[2] : m[1]).toUpperCase();
    let msg;
    try { msg = cbor(base32(p.slice(3))); } catch (e) { return {result: "unusable", why: "二维码内容无法解析。"}; }
    if (!msg || msg.tag !== 18 || !Array.isArray(msg.value) || msg.value.length !== 4) return {result: "unusable", why: "二维码内容不是 COSE_Sign1 签名消息。"};
    const [prot, , payloadBytes, sig] = msg.value;
    let header, payload;
    try { header = cbor(prot); payload = cbor(payloadBytes); } catch (e) { return {result: "unusable", why: "签名消息的内容无法解析。"}; }
    const alg = header.get(1), kid = header.get(4);
    const facts = {
      code: payload.get(1), report_no: payload.get(2), institution: payload.get(3),
      conclusion: payload.get(4), issued_on: payload.get(5), sha: payload.get(6), sealed_at: payload.get(7),
    };
    if (typeof facts.code !== "string" || typeof facts.sealed_at !== "number" || !(facts.sha instanceof Uint8Array) || !(kid instanceof Uint8Array)) {
      return {result: "unusable", why: "签名消息缺少报告要素。"};
    }
    if (!trust) return {result: "invalid", facts, why: "没有信任列表，无法核验签名：请联网打开一次本页。"};
    const kidHex = hex(kid);
    const key = trust.keys.find((k) => k.kid === kidHex);
    if (!key) return {result: "invalid", facts, why: "未知签名密钥 " + kidHex + "：不在信任列表中（未知或已撤销）。"};
    if (alg !== -7 || key.alg !== "ES256") return {result: "invalid", facts, why: "不支持的签名算法。"};
    const der = b64(key.certificate);
    if (hex((await JZTrust.sha256(der)).slice(0, 8)) !== kidHex) return {result: "invalid", facts, why: "信任列表中的证书与密钥标识不符。"};
    const good = sig instanceof Uint8Array && sig.length === 64 &&
      await JZTrust.es256Verify(der, sig, sigStructure(prot, payloadBytes));
    if (!good) return {result: "invalid", facts, why: "签名验证失败：二维码内容被改动，或不是平台签发的。"};
    // the key's window, at the payload's own signing time (not the phone's clock)
    if (!(facts.sealed_at >= key.not_before && facts.sealed_at <= key.not_after)) {
      return {result: "invalid", facts, why: "签章时间 " + beijing(facts.sealed_at) + " 不在该密钥的有效期内（" +
        beijing(key.not_before) + " 至 " + beijing(key.not_after) + "）。"};
    }
    if (urlCode && urlCode !== facts.code) return {result: "invalid", facts, why: "链接中的标识码与签名内容不符。"};
    return {result: "valid", facts, why: "签名密钥 " + kidHex + "，由平台信任列表确认。"};
  }

  function show(outcome) {
    $("result").hidden = false;
    const v = $("verdict");
    v.dataset.result = outcome.result;
    v.textContent = {valid: "✓ 平台签名有效", invalid: "✗ 签名无效", unusable: "无法识别", working: "正在识别…"}[outcome.result];
    $("why").textContent = outcome.why || "";
    const f = outcome.facts;
    $("facts-box").hidden = !f;
    if (!f) return;
    $("facts-title").textContent = outcome.result === "valid" ? "平台签名的报告信息" : "二维码中的报告信息（未通过核验，勿作依据）";
    const rows = [
      ["报告标识码", group(f.code), "mono"], ["报告编号", f.report_no, "mono"],
      ["检测机构", "统一社会信用代码 " + f.institution, ""],
      ["检测结论", f.conclusion === 0 ? "合格" : (f.conclusion === 1 ? "不合格" : "?"), f.conclusion === 0 ? "ok" : "bad"],
      ["签发日期", f.issued_on, ""], ["签章时间", beijing(f.sealed_at), ""],
      ["原始文件指纹", "SHA-256 " + hex(f.sha), "mono hash"],
    ];
    const dl = $("facts"); dl.textContent = "";
    for (const [k, val, cls] of rows) {
      const dt = document.createElement("dt"); dt.textContent = k;
      const dd = document.createElement("dd"); dd.textContent = val; if (cls) dd.className = cls;
      dd.dataset.fact = k;
      dl.append(dt, dd);
    }
    $("guide").hidden = outcome.result !== "valid";
  }

  $("photo").addEventListener("change", async (event) => {
    const file = event.target.files && event.target.files[0];
    if (!file) return;
    show({result: "working"});
    try {
      const found = await ZXingWASM.readBarcodes(file, {formats: ["QRCode"], tryHarder: true, maxNumberOfSymbols: 4});
      const texts = found.filter((b) => b.isValid).map((b) => b.text);
      if (!texts.length) { show({result: "unusable", why: "照片中没有找到二维码：请靠近、对焦后重拍。"}); return; }
      let best = null;
      for (const t of texts) { const o = await verifyText(t); if (!best || o.result === "valid") best = o; }
      show(best);
    } catch (e) {
      show({result: "unusable", why: "识别失败：" + e});
    }
  });

  ZXingWASM.prepareZXingModule({
    overrides: {locateFile: (path, prefix) => path.endsWith(".wasm") ? new URL("vendor/" + path, location.href).href : prefix + path},
  });
  window.jzVerifyText = verifyText;
})();
