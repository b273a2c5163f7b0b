// The `tls` section (SPEC §2.5) → the `tls` option of Bun.serve, checked at compile time so that
// a bad certificate is a config error with its key path (and an invalid reload changes nothing).
//
// - SNI: Bun.serve takes an array of TLS contexts, each with a `serverName` ("*.x" = one label).
//   Entry 0 has no name: it is the default, used when the client sends no SNI or a name no
//   certificate covers. It is the first pair. Every name of every certificate (its DNS
//   SubjectAltNames, else its CN) gets an entry; a name claimed by two pairs goes to the first.
// - minVersion "1.3": Bun's floor is TLS 1.2; `secureOptions: SSL_OP_NO_TLSv1_2` removes 1.2.
// - TLS 1.2 cipher suites: ECDHE + AEAD only (TLS12_CIPHERS), on every context.
// - mTLS: requireClientCert → `requestCert` + `rejectUnauthorized` + `ca` on every entry (the
//   verify mode comes from the context the connection started on, so all entries must agree).
//   clientCAFile alone ("verify a certificate if one is presented, accept none"): Bun.serve
//   cannot express it. With `requestCert` and `rejectUnauthorized: false` its verify callback
//   accepts ANY certificate, and the request handler is never told whether the client's
//   certificate verified, so a bad certificate could not be refused. Hecate therefore does not
//   request a certificate in that mode: every client is accepted, as the mode allows for
//   clients without one, and no certificate is ever presented unverified. A warning says so.
// - selfSigned: when both files of a pair are missing, a certificate is generated here (in
//   memory) and written by the listener before it binds (`pendingWrites`), so `hecate check`
//   never writes files. Relative paths are resolved against the working directory.
import { readFileSync, statSync } from "node:fs";
import { resolve } from "node:path";
import type { X509Certificate } from "node:crypto";
import type { TLSOptions } from "bun";
import type { Config } from "../config/schema.ts";
import type { ConfigError } from "../config/load.ts";
import { generateSelfSigned } from "./self-signed.ts";

/**
 * node:crypto, loaded when a config has a tls section (see observability/prom.ts on what loading
 * costs). A function of its own because compileTls has a local named `require`.
 */
function nodeCrypto(): typeof import("node:crypto") {
  return require("node:crypto") as typeof import("node:crypto");
}

/** OpenSSL/BoringSSL SSL_OP_NO_TLSv1_2 (BUN-NOTES: forbids TLS 1.2 on Bun.serve). */
const SSL_OP_NO_TLSv1_2 = 0x08000000;

/**
 * TLS 1.2 cipher suites: ECDHE key exchange with AEAD ciphers only (Mozilla "intermediate").
 * Bun's default list also offers static-RSA key exchange (no forward secrecy: AES128-GCM-SHA256,
 * AES128-SHA…) and CBC suites (ECDHE-RSA-AES128-SHA…), which testssl.sh flags as LUCKY13
 * (bench/testssl.sh). TLS 1.3 suites are not affected by this list.
 */
export const TLS12_CIPHERS = [
  "ECDHE-ECDSA-AES128-GCM-SHA256",
  "ECDHE-RSA-AES128-GCM-SHA256",
  "ECDHE-ECDSA-AES256-GCM-SHA384",
  "ECDHE-RSA-AES256-GCM-SHA384",
  "ECDHE-ECDSA-CHACHA20-POLY1305",
  "ECDHE-RSA-CHACHA20-POLY1305",
].join(":");

export interface TlsPair {
  certPath: string;
  keyPath: string;
  /** Names the certificate covers (DNS SANs, else CN), lower case; "*.x" wildcards kept. */
  names: string[];
  notAfter: Date;
  selfSigned: boolean;
}

export interface PendingWrite {
  certPath: string;
  keyPath: string;
  certPem: string;
  keyPem: string;
  names: string[];
}

export interface CompiledTls {
  /** The `tls` option of Bun.serve: entry 0 is the default context, then one per SNI name. */
  readonly serve: TLSOptions[];
  /** Digest of everything that shapes the handshake: when it changes the listener is re-bound. */
  readonly fingerprint: string;
  readonly pairs: readonly TlsPair[];
  /** Self-signed pairs to write before the listener binds (empty when the files exist). */
  readonly pendingWrites: PendingWrite[];
  readonly minVersion: "1.2" | "1.3";
  /** Client certificates are required and verified at the handshake. */
  readonly requireClientCert: boolean;
  /** Lines to log (warn) when a listener starts with this TLS setup. */
  readonly warnings: readonly string[];
}

type FileRead = { ok: true; text: string } | { ok: false; missing: boolean; message: string };

function readText(path: string): FileRead {
  try {
    if (!statSync(path).isFile()) return { ok: false, missing: false, message: "is not a regular file" };
    return { ok: true, text: readFileSync(path, "utf8") };
  } catch (e) {
    const code = (e as { code?: string }).code;
    if (code === "ENOENT" || code === "ENOTDIR") return { ok: false, missing: true, message: "file not found" };
    return { ok: false, missing: false, message: code === "EACCES" ? "permission denied" : `cannot read: ${(e as Error).message}` };
  }
}

/** Names a certificate answers for: DNS SubjectAltNames, else the subject CN. */
export function certificateNames(cert: X509Certificate): string[] {
  const out: string[] = [];
  const san = cert.subjectAltName;
  if (san) {
    for (const part of san.split(",")) {
      const p = part.trim();
      if (p.startsWith("DNS:")) out.push(p.slice(4).toLowerCase());
    }
  }
  if (out.length === 0) {
    const cn = /(?:^|\n|,\s*)CN=([^,\n]+)/.exec(cert.subject)?.[1]?.trim();
    if (cn && /^[*a-z0-9.-]+$/i.test(cn)) out.push(cn.toLowerCase());
  }
  return out;
}

/** Names for a generated certificate: the routes' exact hosts and wildcards, then loopback. */
export function selfSignedNames(config: Config): string[] {
  const out: string[] = [];
  for (const r of config.proxy.routes) for (const h of r.hosts) out.push(h.toLowerCase());
  out.push("localhost", "127.0.0.1", "::1");
  return [...new Set(out)];
}

/**
 * Compile the `tls` section; null when it is absent (plain HTTP). Problems are pushed to
 * `errors` with their key paths; the result is then meaningless (the compile fails).
 */
export async function compileTls(config: Config, errors: ConfigError[]): Promise<CompiledTls | null> {
  const t = config.tls;
  if (!t) return null;
  const { X509Certificate, createPrivateKey, createHash } = nodeCrypto();
  const before = errors.length;
  if (t.certFiles.length === 0) {
    errors.push({ path: "tls.certFiles", message: "needs at least one certificate (with its key in tls.keyFiles), or remove the tls section" });
    return null;
  }
  if (t.certFiles.length !== t.keyFiles.length) return null; // reported by compile.ts

  const pairs: TlsPair[] = [];
  const pems: { cert: string; key: string }[] = [];
  const pendingWrites: PendingWrite[] = [];
  const warnings: string[] = [];
  const generatedNames = selfSignedNames(config);

  for (let i = 0; i < t.certFiles.length; i++) {
    const certPath = resolve(process.cwd(), t.certFiles[i]!);
    const keyPath = resolve(process.cwd(), t.keyFiles[i]!);
    const certAt = `tls.certFiles[${i}]`;
    const keyAt = `tls.keyFiles[${i}]`;
    const c = readText(certPath);
    const k = readText(keyPath);
    if (!c.ok && !k.ok && c.missing && k.missing) {
      if (!t.selfSigned) {
        errors.push({ path: certAt, message: `file not found: ${certPath} (tls.selfSigned is false, so no certificate is generated)` });
        errors.push({ path: keyAt, message: `file not found: ${keyPath} (tls.selfSigned is false, so no key is generated)` });
        continue;
      }
      const gen = await generateSelfSigned(generatedNames);
      pendingWrites.push({ certPath, keyPath, certPem: gen.certPem, keyPem: gen.keyPem, names: generatedNames });
      const x = new X509Certificate(gen.certPem);
      pairs.push({ certPath, keyPath, names: certificateNames(x), notAfter: x.validToDate, selfSigned: true });
      pems.push({ cert: gen.certPem, key: gen.keyPem });
      continue;
    }
    if (!c.ok) {
      errors.push({
        path: certAt,
        message: c.missing ? `file not found: ${certPath} (its key exists; a self-signed pair is generated only when both files are missing)` : `${certPath}: ${c.message}`,
      });
    }
    if (!k.ok) {
      errors.push({
        path: keyAt,
        message: k.missing ? `file not found: ${keyPath} (its certificate exists; a self-signed pair is generated only when both files are missing)` : `${keyPath}: ${k.message}`,
      });
    }
    if (!c.ok || !k.ok) continue;
    let cert: X509Certificate;
    try {
      cert = new X509Certificate(c.text);
    } catch (e) {
      errors.push({ path: certAt, message: `${certPath}: not a PEM certificate (${(e as Error).message})` });
      continue;
    }
    let key: ReturnType<typeof createPrivateKey>;
    try {
      key = createPrivateKey(k.text);
    } catch (e) {
      const msg = (e as Error).message;
      errors.push({ path: keyAt, message: `${keyPath}: not an unencrypted PEM private key (${msg})` });
      continue;
    }
    if (!cert.checkPrivateKey(key)) {
      errors.push({ path: keyAt, message: `${keyPath}: does not match the certificate ${certAt} (${certPath})` });
      continue;
    }
    if (cert.validToDate.getTime() < Date.now()) warnings.push(`${certAt} (${certPath}) expired on ${cert.validToDate.toISOString()}`);
    pairs.push({ certPath, keyPath, names: certificateNames(cert), notAfter: cert.validToDate, selfSigned: false });
    pems.push({ cert: c.text, key: k.text });
  }

  let ca: string | undefined;
  if (t.clientCAFile !== "") {
    const caPath = resolve(process.cwd(), t.clientCAFile);
    const r = readText(caPath);
    if (!r.ok) errors.push({ path: "tls.clientCAFile", message: r.missing ? `file not found: ${caPath}` : `${caPath}: ${r.message}` });
    else {
      try {
        new X509Certificate(r.text);
        ca = r.text;
      } catch (e) {
        errors.push({ path: "tls.clientCAFile", message: `${caPath}: not a PEM certificate (${(e as Error).message})` });
      }
    }
    if (!t.requireClientCert)
      warnings.push(
        "tls.clientCAFile without tls.requireClientCert: client certificates are not requested, because Bun cannot verify an optional certificate; every client is accepted (set requireClientCert: true to enforce mTLS)",
      );
  }
  if (errors.length > before) return null;

  const require = t.requireClientCert && ca !== undefined;
  const common: TLSOptions = { ciphers: TLS12_CIPHERS };
  if (require) {
    common.ca = ca;
    common.requestCert = true;
    common.rejectUnauthorized = true;
  }
  if (t.minVersion === "1.3") common.secureOptions = SSL_OP_NO_TLSv1_2;

  const serve: TLSOptions[] = [{ cert: pems[0]!.cert, key: pems[0]!.key, ...common }];
  const claimed = new Set<string>();
  pairs.forEach((p, i) => {
    for (const name of p.names) {
      if (claimed.has(name)) continue;
      claimed.add(name);
      serve.push({ cert: pems[i]!.cert, key: pems[i]!.key, serverName: name, ...common });
    }
  });

  const h = createHash("sha256");
  for (const p of pems) h.update(p.cert).update("\0").update(p.key).update("\0");
  h.update(`${t.minVersion}\0${require}\0${ca ?? ""}`);
  return {
    serve,
    fingerprint: h.digest("hex"),
    pairs,
    pendingWrites,
    minVersion: t.minVersion,
    requireClientCert: require,
    warnings,
  };
}
