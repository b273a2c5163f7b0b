// Which HTTP version an https:// upstream offers, learned by ALPN (SPEC §3.6: "HTTPS upstreams
// negotiate HTTP/2 when offered").
//
// Why a probe: Bun 1.4.5's fetch offers h2 by ALPN only when the process starts with
// BUN_FEATURE_FLAG_EXPERIMENTAL_HTTP2_CLIENT=1 (read at start-up; setting it later does
// nothing), and `protocol: "http2"` offers ONLY h2 and fails with HTTP2Unsupported against an
// HTTP/1.1-only server. So the first request to an origin goes over HTTP/1.1 while a bare TLS
// handshake (no request is sent) asks the origin for ["h2", "http/1.1"]; later requests use
// `protocol: "http2"` when it chose h2. Answers are cached per origin: h2 until a request
// fails with HTTP2Unsupported, HTTP/1.1 and failed probes for RECHECK_MS.
import type { UpstreamTarget } from "./target.ts";
import { parseIp } from "../policy/ip.ts";

export const ALPN_H2 = 2;
export const ALPN_H1 = 1;
/** Not known yet (a probe may be running). */
export const ALPN_UNKNOWN = 0;

const RECHECK_MS = 5 * 60_000;
const FAILED_RECHECK_MS = 10_000;
const PROBE_TIMEOUT_MS = 5000;

interface Entry {
  proto: number;
  /** performance.now() after which an HTTP/1.1 answer is probed again. */
  until: number;
  probing: boolean;
}

export class AlpnCache {
  private readonly byOrigin = new Map<string, Entry>();

  /** ALPN_H2, ALPN_H1 or ALPN_UNKNOWN for the target's origin; starts a probe when due. */
  get(t: UpstreamTarget): number {
    const e = this.byOrigin.get(t.origin);
    if (e !== undefined && (e.proto === ALPN_H2 || e.probing || performance.now() < e.until)) return e.proto;
    this.probe(t, e);
    return e?.proto ?? ALPN_UNKNOWN;
  }

  /** What is known about `origin` (no probe is started). */
  peek(origin: string): number {
    return this.byOrigin.get(origin)?.proto ?? ALPN_UNKNOWN;
  }

  /** The origin refused h2 after all (HTTP2Unsupported): use HTTP/1.1 until the next probe. */
  downgrade(t: UpstreamTarget): void {
    this.byOrigin.set(t.origin, { proto: ALPN_H1, until: performance.now() + RECHECK_MS, probing: false });
  }

  clear(): void {
    this.byOrigin.clear();
  }

  private probe(t: UpstreamTarget, prev: Entry | undefined): void {
    const e: Entry = { proto: prev?.proto ?? ALPN_UNKNOWN, until: 0, probing: true };
    this.byOrigin.set(t.origin, e);
    const done = (proto: number, ok: boolean) => {
      if (!e.probing) return;
      e.probing = false;
      e.proto = proto;
      e.until = performance.now() + (ok ? RECHECK_MS : FAILED_RECHECK_MS);
    };
    try {
      // node:tls is loaded by the first probe (an https:// upstream), not by every process (see
      // observability/prom.ts on what loading costs)
      const { connect } = require("node:tls") as typeof import("node:tls");
      const sock = connect({
        host: t.hostname,
        port: t.port,
        ...(parseIp(t.hostname) === null ? { servername: t.hostname } : {}),
        ALPNProtocols: ["h2", "http/1.1"],
        // nothing is sent over this connection: the certificate is checked by the real requests
        rejectUnauthorized: false,
      });
      const timer = setTimeout(() => {
        done(e.proto === ALPN_UNKNOWN ? ALPN_H1 : e.proto, false);
        sock.destroy();
      }, PROBE_TIMEOUT_MS);
      timer.unref?.();
      sock.once("secureConnect", () => {
        clearTimeout(timer);
        done(sock.alpnProtocol === "h2" ? ALPN_H2 : ALPN_H1, true);
        sock.end();
        sock.destroy();
      });
      sock.once("error", () => {
        clearTimeout(timer);
        done(e.proto === ALPN_UNKNOWN ? ALPN_H1 : e.proto, false);
      });
    } catch {
      done(ALPN_H1, false);
    }
  }
}
