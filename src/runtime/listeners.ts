// Bun.serve listeners: the public one (HTTP/1.1; h2/h2c/h3 per config) and the admin one.
//
// Public listener (SPEC §2.2, §2.5):
// - TLS (a `tls` section): HTTP/2 by ALPN with HTTP/1.1 fallback (`http2: true`); SNI picks the
//   certificate (src/tls/compile-tls.ts builds the `tls` array); mTLS and minVersion apply to
//   every context. Plain: HTTP/1.1, plus h2c by prior knowledge when `enableH2C`.
// - HTTP/3 (`enableHTTP3`, TLS only): a second Bun.serve with `http1: false, http3: true` —
//   Bun then binds only UDP — on `http3Listen`, or on the TCP listener's address and port when
//   it is empty. Being a separate server, it knows its requests are HTTP/3 (Exchange.proto) and
//   both cases work the same way: TLS responses of the TCP listener carry
//   `Alt-Svc: h3=":<udp port>"; ma=86400`, set here (Bun adds its own only with `http3: true`
//   on the same server); an upstream's Alt-Svc is replaced, never duplicated.
// - WebSocket upgrades: the TCP listener has the `websocket` handler of src/proxy/websocket.ts.
// - Certificates on reload: Bun.serve's reload() swaps handlers, not TLS contexts. When a
//   reload changes the TLS material (files, minVersion, mTLS), a new server is bound on the
//   same address with SO_REUSEPORT (TLS listeners always set it), then the old one stops
//   accepting and finishes its requests and WebSocket sessions (`stop(false)`). New
//   connections get the new certificates at once; no connection is refused in between.
//   Caveats: (1) the kernel may reset connections that were queued on the old socket but not
//   yet accepted when it closes (Linux ≥ 5.14: `net.ipv4.tcp_migrate_req=1` migrates them);
//   (2) HTTP/3 connections open during the swap are cut (the UDP port's flows are re-hashed
//   across the sockets) and clients reconnect; (3) because of SO_REUSEPORT, a second process of
//   the same user that also sets it can bind the same TLS port without an error.
//   Turning TLS on or off, or changing enableHTTP3/http3Listen/enableH2C, needs a restart
//   (reload.ts reports it); a rebind keeps the settings the listeners started with.
import type { Server } from "bun";
import type { Runtime } from "./runtime.ts";
import { createHandler, type Handler } from "../pipeline/handler.ts";
import { createAdminHandler } from "../admin/server.ts";
import { log } from "../observability/log.ts";
import { hooks } from "../pipeline/hooks.ts";
import { parseListen, type ListenAddress } from "../config/compile.ts";
import type { CompiledTls } from "../tls/compile-tls.ts";
import { writeSelfSigned, TlsWriteError } from "../tls/write-self-signed.ts";
import { websocketHandler } from "../proxy/websocket.ts";
import { setNotSentLowWatermark } from "./socket-options.ts";

export interface Listeners {
  /** The public TCP listener (replaced when a reload re-binds it with new certificates). */
  readonly publicServer: Server<unknown>;
  /** The HTTP/3 (UDP) listener, when enableHTTP3. */
  readonly http3Server: Server<unknown> | null;
  adminServer: Server<unknown>;
  tls: boolean;
  /** Stop accepting new public connections; open ones keep being served. */
  stopAccepting(): Promise<void>;
  stop(force: boolean): Promise<void>;
}

export class ListenError extends Error {
  constructor(
    readonly key: string,
    readonly address: string,
    message: string,
  ) {
    super(message);
  }
}

const MAX_BODY = Number.MAX_SAFE_INTEGER; // Hecate enforces bodyBytesCap itself (413 with a request id)

function serveOrFail(key: string, addr: ListenAddress, opts: Parameters<typeof Bun.serve>[0]): Server<unknown> {
  try {
    return Bun.serve(opts as never) as Server<unknown>;
  } catch (e) {
    const code = (e as { code?: string }).code ?? "";
    const why = code === "EADDRINUSE" ? "address already in use" : code === "EACCES" ? "permission denied" : (e as Error).message;
    throw new ListenError(key, addr.text, `${key}: cannot listen on ${JSON.stringify(addr.text)}: ${why}`);
  }
}

function onError(e: Error): Response {
  log("error", "request handler failed", { error: e.message });
  return new Response("internal error\n", { status: 500, headers: { "content-type": "text/plain; charset=utf-8" } });
}

/** What the public listeners were started with; a TLS rebind reuses it. */
interface PublicSetup {
  readonly rt: Runtime;
  readonly tcpAddr: ListenAddress;
  /** UDP address for HTTP/3 (port 0 = the TCP listener's port); null when HTTP/3 is off. */
  readonly h3Addr: ListenAddress | null;
  readonly h3Key: string;
  readonly tls: boolean;
  readonly h2c: boolean;
  readonly idle: number;
  readonly wsIdle: number;
  readonly reusePort: boolean;
  /** TCP_NOTSENT_LOWAT for accepted connections (0 = kernel default); socket-options.ts. */
  readonly lowat: number;
  /** Set once, right after the setup exists (the Alt-Svc wrapper reads `altSvc` from it). */
  tcpHandler: Handler;
  readonly h3Handler: Handler | null;
  /** Alt-Svc value for TCP responses ("" until the UDP port is known, or without HTTP/3). */
  altSvc: string;
}

interface PublicState {
  setup: PublicSetup;
  tcp: Server<unknown>;
  h3: Server<unknown> | null;
  fingerprint: string;
  /** Servers replaced by a rebind, finishing their connections. */
  retired: Set<Server<unknown>>;
  stopped: boolean;
}

const states = new WeakMap<Runtime, PublicState>();

function protocols(s: PublicSetup): string[] {
  const out = ["http/1.1"];
  if (s.tls || s.h2c) out.push(s.tls ? "h2" : "h2c");
  return out;
}

function bindTcp(s: PublicSetup, tls: CompiledTls | null, port: number): Server<unknown> {
  const server = serveOrFail("proxy.listen", s.tcpAddr, {
    hostname: s.tcpAddr.hostname,
    port,
    reusePort: s.reusePort,
    idleTimeout: s.idle,
    maxRequestBodySize: MAX_BODY,
    development: false,
    http2: s.tls || s.h2c,
    ...(tls !== null ? { tls: tls.serve } : {}),
    fetch: s.tcpHandler,
    websocket: { ...websocketHandler, idleTimeout: s.wsIdle },
    error: onError,
  } as never);
  setNotSentLowWatermark(server.port!, s.lowat);
  return server;
}

function bindH3(s: PublicSetup, tls: CompiledTls, port: number): Server<unknown> {
  const addr = s.h3Addr!;
  return serveOrFail(s.h3Key, addr, {
    hostname: addr.hostname,
    port,
    reusePort: true,
    idleTimeout: s.idle,
    maxRequestBodySize: MAX_BODY,
    development: false,
    http1: false,
    http3: true,
    tls: tls.serve,
    fetch: s.h3Handler!,
    error: onError,
  } as never);
}

/** Set Alt-Svc on TCP responses (h3 on): ours replaces an upstream's. */
function withAltSvc(setup: PublicSetup, inner: Handler): Handler {
  const set = (res: Response): Response => {
    if (res !== undefined && setup.altSvc !== "") {
      try {
        res.headers.set("alt-svc", setup.altSvc);
      } catch {
        // immutable headers: leave the response as it is
      }
    }
    return res;
  };
  return (req, server) => {
    const r = inner(req, server);
    return r instanceof Promise ? r.then(set) : set(r);
  };
}

function writeCerts(tls: CompiledTls, certFiles: readonly string[]): void {
  try {
    writeSelfSigned(tls, certFiles);
  } catch (e) {
    if (e instanceof TlsWriteError) throw new ListenError(e.message.slice(0, e.message.indexOf(":")), "", e.message);
    throw e;
  }
}

/** `admin: false`: public listeners only (a serving worker thread; `adminServer` is then null). */
export function startListeners(rt: Runtime, opts: { reusePort?: boolean; admin?: boolean } = {}): Listeners {
  const c = rt.gen.compiled;
  const cfg = c.config;
  const tls = c.tls;
  if (tls !== null) {
    writeCerts(tls, cfg.tls!.certFiles);
    for (const w of tls.warnings) log("warn", `tls: ${w}`);
  }
  const isTls = tls !== null;
  const h2c = !isTls && cfg.proxy.enableH2C;
  const h3 = isTls && cfg.proxy.enableHTTP3;
  const idleSec = cfg.proxy.server.idleTimeoutSec;
  const h3Listen = h3 && cfg.proxy.http3Listen !== "" ? parseListen(cfg.proxy.http3Listen) : null;
  // the listener serves one HTTP version only when it is plain HTTP without h2c
  const base = createHandler(rt, isTls, isTls || h2c ? "" : "HTTP/1.1");
  const setup: PublicSetup = {
    rt,
    tcpAddr: c.listen,
    h3Addr: !h3 ? null : (h3Listen ?? { ...c.listen, port: 0 }),
    h3Key: h3Listen !== null ? "proxy.http3Listen" : "proxy.listen",
    tls: isTls,
    h2c,
    idle: Math.min(255, Math.round(idleSec)),
    // WebSocket idle timeout (Bun pings idle clients, so only dead ones are cut): 8..960 s, 0 = none
    wsIdle: idleSec === 0 ? 0 : Math.min(960, Math.max(8, Math.round(idleSec))),
    // TLS listeners always set SO_REUSEPORT so that a certificate reload can bind beside them.
    reusePort: isTls || (opts.reusePort ?? false),
    lowat: cfg.proxy.server.sendLowWatermarkBytes,
    tcpHandler: base,
    h3Handler: h3 ? createHandler(rt, true, "HTTP/3") : null,
    altSvc: "",
  };
  if (h3) setup.tcpHandler = withAltSvc(setup, base);

  const publicServer = bindTcp(setup, tls, c.listen.port);
  let http3Server: Server<unknown> | null = null;
  if (h3) {
    try {
      http3Server = bindH3(setup, tls!, setup.h3Addr!.port === 0 && h3Listen === null ? publicServer.port! : setup.h3Addr!.port);
    } catch (e) {
      publicServer.stop(true);
      throw e;
    }
    setup.altSvc = `h3=":${http3Server.port}"; ma=86400`;
  }
  let adminServer: Server<unknown> | null = null;
  if (opts.admin !== false) try {
    adminServer = serveOrFail("admin.listen", c.adminListen, {
      hostname: c.adminListen.hostname,
      port: c.adminListen.port,
      idleTimeout: 255,
      development: false,
      fetch: createAdminHandler(rt),
      error(e: Error) {
        log("error", "admin handler failed", { error: e.message });
        return new Response("internal error\n", { status: 500, headers: { "content-type": "text/plain; charset=utf-8" } });
      },
    } as never);
  } catch (e) {
    publicServer.stop(true);
    http3Server?.stop(true);
    throw e;
  }
  const st: PublicState = { setup, tcp: publicServer, h3: http3Server, fingerprint: tls?.fingerprint ?? "", retired: new Set(), stopped: false };
  states.set(rt, st);
  log("info", "listening", { listener: "public", address: `${publicServer.hostname}:${publicServer.port}`, tls: isTls, protocols: protocols(setup) });
  if (http3Server !== null) log("info", "listening", { listener: "public-h3", address: `${http3Server.hostname}:${http3Server.port}`, tls: true, protocols: ["h3"], udp: true });
  if (tls !== null)
    log("info", "tls", {
      certificates: tls.pairs.map((p) => ({ cert: p.certPath, names: p.names, notAfter: p.notAfter.toISOString(), selfSigned: p.selfSigned })),
      minVersion: tls.minVersion,
      requireClientCert: tls.requireClientCert,
    });
  if (adminServer !== null) log("info", "listening", { listener: "admin", address: `${adminServer.hostname}:${adminServer.port}` });
  return {
    get publicServer() {
      return st.tcp;
    },
    get http3Server() {
      return st.h3;
    },
    adminServer: adminServer as Server<unknown>,
    tls: isTls,
    async stopAccepting() {
      st.stopped = true;
      // stop() resolves only when every connection is gone: do not wait here
      void st.tcp.stop(false);
      if (st.h3 !== null) void st.h3.stop(false);
    },
    async stop(force: boolean) {
      st.stopped = true;
      const all = [st.tcp, ...st.retired];
      if (adminServer !== null) all.push(adminServer);
      if (st.h3 !== null) all.push(st.h3);
      await Promise.all(all.map((s) => s.stop(force)));
    },
  };
}

/**
 * A new generation is serving: when its TLS material differs from the listeners', bind new
 * public servers with it beside the old ones, then retire the old ones (see the file header).
 */
function rebindTls(rt: Runtime): void {
  const st = states.get(rt);
  if (st === undefined || st.stopped) return;
  const c = rt.gen.compiled;
  const tls = c.tls;
  if (tls === null || !st.setup.tls || tls.fingerprint === st.fingerprint) return;
  let tcp: Server<unknown>;
  let h3: Server<unknown> | null = null;
  try {
    writeCerts(tls, c.config.tls!.certFiles);
    tcp = bindTcp(st.setup, tls, st.tcp.port!);
    try {
      if (st.h3 !== null) h3 = bindH3(st.setup, tls, st.h3.port!);
    } catch (e) {
      tcp.stop(true);
      throw e;
    }
  } catch (e) {
    log("error", "tls: cannot apply the new certificates; the listeners keep the previous ones", { error: (e as Error).message, generation: rt.gen.id });
    return;
  }
  for (const w of tls.warnings) log("warn", `tls: ${w}`);
  const old = [st.tcp, st.h3];
  st.tcp = tcp;
  st.h3 = h3;
  st.fingerprint = tls.fingerprint;
  for (const s of old) {
    if (s === null) continue;
    st.retired.add(s);
    void s.stop(false).then(() => st.retired.delete(s));
  }
  log("info", "tls: certificates reloaded", {
    generation: rt.gen.id,
    certificates: tls.pairs.map((p) => ({ cert: p.certPath, names: p.names, notAfter: p.notAfter.toISOString() })),
    minVersion: tls.minVersion,
    requireClientCert: tls.requireClientCert,
  });
}

const previousGeneration = hooks.generation;
hooks.generation = function listenersGeneration(rt: unknown): void {
  previousGeneration(rt);
  rebindTls(rt as Runtime);
};
