// HTTP authentication for routes (SPEC §3.1 stage 6, realm "hecate") and the admin listener
// (SPEC §4, realm "hecate-admin").
//
// - Bearer and Basic; when both are configured either one is accepted.
// - Secrets are compared in constant time: SHA-256 digests of the presented and the expected
//   value (32 bytes whatever the input) with timingSafeEqual below (no early exit); username and
//   password are both always compared.
// - A Basic password may be a bcrypt (`$2a$`/`$2b$`/`$2y$…`) or argon2 (`$argon2id$…`,
//   `$argon2i$`, `$argon2d$`) hash, verified with Bun.password.verify (off the event loop).
//   Successful verifications are remembered per credential in a small bounded cache, keyed
//   by a salted SHA-256 of the credential (the salt is random per process, so the cache holds
//   nothing that helps an offline guess), so the slow hash runs once, not per request.
// - A refusal is 401 with one `WWW-Authenticate` challenge per configured scheme (Basic first).
//   They are appended as separate fields, but Bun.serve writes repeated fields other than
//   Set-Cookie as one comma-joined field (`Basic realm="hecate", Bearer realm="hecate"`), which
//   RFC 9110 §11.6.1 defines as the same challenge list; clients (curl, browsers) read both.
import type { AuthConfig } from "../config/schema.ts";
import type { ConfigError } from "../config/load.ts";
import type { Stage } from "../pipeline/stage.ts";
import type { Exchange } from "../pipeline/exchange.ts";
import { deny } from "./deny.ts";

const sha256 = (data: string | Uint8Array): Uint8Array => Bun.SHA256.hash(data) as Uint8Array;

const BCRYPT = /^\$2[abxy]\$\d{2}\$[./A-Za-z0-9]{53}$/;
const ARGON2 = /^\$argon2(?:id|i|d)\$v=\d+\$m=\d+,t=\d+,p=\d+\$[A-Za-z0-9+/]+\$[A-Za-z0-9+/]+$/;
const LOOKS_HASHED = /^\$(?:2[abxy]\$|argon2)/;

/** How many verified credentials a Basic authenticator remembers. */
export const VERIFIED_CACHE_MAX = 256;

const SALT = crypto.getRandomValues(new Uint8Array(32));

/**
 * Constant-time equality of two SHA-256 digests: no early exit, and both are always 32 bytes.
 * Not node:crypto's timingSafeEqual, so that a process without auth does not load node:crypto
 * (see observability/prom.ts on what loading costs).
 */
function timingSafeEqual(a: Uint8Array, b: Uint8Array): boolean {
  let d = a.length ^ b.length;
  const n = a.length < b.length ? a.length : b.length;
  for (let i = 0; i < n; i++) d |= a[i]! ^ b[i]!;
  return d === 0;
}

export interface Authenticator {
  /** true/false, or a promise of it when a password hash has to be verified. */
  check(authorization: string | null): boolean | Promise<boolean>;
  /** WWW-Authenticate values, one per configured scheme. */
  readonly challenges: readonly string[];
  /** Credentials held in the verified-hash cache (≤ VERIFIED_CACHE_MAX). */
  verifiedCount(): number;
}

const U8_SLICE = Uint8Array.prototype.slice;

class BasicChecker {
  private readonly user: Uint8Array;
  private readonly pass: Uint8Array | null;
  private readonly hash: string | null;
  readonly verified = new Set<string>();

  constructor(username: string, password: string) {
    this.user = sha256(username);
    if (LOOKS_HASHED.test(password)) {
      this.hash = password;
      this.pass = null;
    } else {
      this.hash = null;
      this.pass = sha256(password);
    }
  }

  /** `b64` is the base64 part of "Basic <b64>". */
  check(b64: string): boolean | Promise<boolean> {
    const raw = Buffer.from(b64, "base64");
    const colon = raw.indexOf(58);
    if (colon < 0) return false;
    // copies, not views (subarray): a view gives the decoded buffer an ArrayBuffer object that
    // every young collection then walks (see piece() in upstream/h1/transport.ts)
    const user = U8_SLICE.call(raw, 0, colon);
    const pass = U8_SLICE.call(raw, colon + 1);
    const userOk = timingSafeEqual(sha256(user), this.user);
    if (this.pass !== null) {
      const passOk = timingSafeEqual(sha256(pass), this.pass);
      return userOk && passOk;
    }
    const key = Buffer.from(sha256(Buffer.concat([SALT, raw]))).toString("base64");
    if (this.verified.has(key)) return true; // only verified (user, password) pairs get here
    return Bun.password.verify(pass, this.hash!).then(
      (ok) => {
        if (!(ok && userOk)) return false;
        if (this.verified.size >= VERIFIED_CACHE_MAX) this.verified.delete(this.verified.values().next().value!);
        this.verified.add(key);
        return true;
      },
      () => false,
    );
  }
}

/** Validate and compile an auth block; null when absent. Errors go to `errors` under `at`. */
export function compileAuth(cfg: AuthConfig | undefined, at: string, realm: string, errors: ConfigError[]): Authenticator | null {
  if (!cfg || (cfg.bearerToken === undefined && cfg.basic === undefined)) return null;
  const challenges: string[] = [];
  let basic: BasicChecker | null = null;
  let bearer: Uint8Array | null = null;
  if (cfg.basic) {
    const { username, password } = cfg.basic;
    if (username === "") errors.push({ path: `${at}.basic.username`, message: "must not be empty" });
    if (username.includes(":")) errors.push({ path: `${at}.basic.username`, message: 'must not contain ":" (RFC 7617)' });
    if (password === "") errors.push({ path: `${at}.basic.password`, message: "must not be empty" });
    if (LOOKS_HASHED.test(password) && !BCRYPT.test(password) && !ARGON2.test(password))
      errors.push({ path: `${at}.basic.password`, message: "looks like a bcrypt/argon2 hash but is not a valid one" });
    basic = new BasicChecker(username, password);
    challenges.push(`Basic realm="${realm}"`);
  }
  if (cfg.bearerToken !== undefined) {
    bearer = sha256(cfg.bearerToken);
    challenges.push(`Bearer realm="${realm}"`);
  }
  const b = basic;
  const t = bearer;
  return {
    challenges,
    verifiedCount: () => (b === null ? 0 : b.verified.size),
    check(h: string | null): boolean | Promise<boolean> {
      if (h === null) return false;
      const sp = h.indexOf(" ");
      if (sp < 0) return false;
      const scheme = h.slice(0, sp).toLowerCase();
      if (scheme === "bearer" && t !== null) {
        return timingSafeEqual(sha256(h.slice(sp + 1).trim()), t);
      }
      if (scheme === "basic" && b !== null) return b.check(h.slice(sp + 1).trim());
      return false;
    },
  };
}

/** The 401 answer: short text body, one WWW-Authenticate per scheme. */
export function unauthorized(challenges: readonly string[], requestId?: string): Response {
  const h = new Headers({ "content-type": "text/plain; charset=utf-8" });
  for (const c of challenges) h.append("www-authenticate", c);
  if (requestId !== undefined) h.set("x-request-id", requestId);
  return new Response("unauthorized\n", { status: 401, headers: h });
}

function refuse(ex: Exchange, a: Authenticator): Response {
  deny(ex, "auth");
  return unauthorized(a.challenges, ex.requestId);
}

/** Route auth stage (realm "hecate"). The credential is not forwarded: forward.ts drops
 *  Authorization for routes that have auth. */
export function authStage(a: Authenticator): Stage {
  return (ex) => {
    const r = a.check(ex.req.headers.get("authorization"));
    if (r === true) return undefined;
    if (r === false) return refuse(ex, a);
    return r.then((ok) => (ok ? undefined : refuse(ex, a)));
  };
}
