// Bun.serve listeners: the public one (HTTP/1.1; h2/h2c/h3 per config) and the admin one.
import type { Server } from "bun";
import type { Runtime } from "./runtime.ts";
import { createHandler } from "../pipeline/handler.ts";
import { createAdminHandler } from "../admin/server.ts";
import { log } from "../observability/log.ts";
import type { ListenAddress } from "../config/compile.ts";

export interface Listeners {
  publicServer: Server<unknown>;
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

export function startListeners(rt: Runtime, opts: { reusePort?: boolean } = {}): Listeners {
  const c = rt.gen.compiled;
  const cfg = c.config;
  const idle = Math.min(255, Math.round(cfg.proxy.server.idleTimeoutSec));
  const tls = false; // TLS termination: see tls.ts (policy/security issue)
  const handler = createHandler(rt, tls);
  const publicServer = serveOrFail("proxy.listen", c.listen, {
    hostname: c.listen.hostname,
    port: c.listen.port,
    reusePort: opts.reusePort ?? false,
    idleTimeout: idle,
    maxRequestBodySize: MAX_BODY,
    development: false,
    fetch: handler,
    error(e: Error) {
      log("error", "request handler failed", { error: e.message });
      return new Response("internal error\n", { status: 500, headers: { "content-type": "text/plain; charset=utf-8" } });
    },
  } as never);
  let adminServer: Server<unknown>;
  try {
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
    throw e;
  }
  log("info", "listening", { listener: "public", address: `${publicServer.hostname}:${publicServer.port}`, tls, protocols: ["http/1.1"] });
  log("info", "listening", { listener: "admin", address: `${adminServer.hostname}:${adminServer.port}` });
  return {
    publicServer,
    adminServer,
    tls,
    async stopAccepting() {
      void publicServer.stop(false); // resolves only when every connection is gone: do not wait here
    },
    async stop(force: boolean) {
      await Promise.all([publicServer.stop(force), adminServer.stop(force)]);
    },
  };
}
