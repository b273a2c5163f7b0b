// Test helpers: start Hecate in-process on port 0 with a config object, and small upstream
// fixtures. Every server is kept by handle and stopped by the test; nothing probes ports.
import { startFromObject, type Hecate } from "../../src/runtime/start.ts";
import "../../src/register.ts";

export type { Hecate };

/** Start Hecate with `proxy` and `admin` listening on 127.0.0.1:0 unless the config says otherwise. */
export async function startHecate(config: Record<string, any>, opts: { configPath?: string } = {}): Promise<Hecate> {
  const c = structuredClone(config);
  c.admin = { listen: "127.0.0.1:0", ...c.admin };
  c.proxy = { listen: "127.0.0.1:0", ...c.proxy };
  c.telemetry = { accessLog: false, logLevel: "warn", ...c.telemetry };
  return startFromObject(c, opts);
}

export interface Upstream {
  url: string;
  port: number;
  server: ReturnType<typeof Bun.serve>;
  /** Requests seen, newest last. */
  seen: { method: string; path: string; headers: Record<string, string>; body: string }[];
  stop(): void;
}

/** An upstream built on Bun.serve whose handler the test writes. Records every request. */
export function startUpstream(handler?: (req: Request, i: number) => Response | Promise<Response>): Upstream {
  const seen: Upstream["seen"] = [];
  let n = 0;
  const server: ReturnType<typeof Bun.serve> = Bun.serve({
    port: 0,
    hostname: "127.0.0.1",
    idleTimeout: 30,
    async fetch(req): Promise<Response> {
      const url = new URL(req.url);
      const headers: Record<string, string> = {};
      req.headers.forEach((v, k) => (headers[k] = v));
      const i = n++;
      if (handler) {
        seen.push({ method: req.method, path: url.pathname + url.search, headers, body: "" });
        return handler(req, i);
      }
      const body = await req.text();
      seen.push({ method: req.method, path: url.pathname + url.search, headers, body });
      return Response.json({ method: req.method, path: url.pathname + url.search, headers, body, port: server.port });
    },
  });
  return { url: `http://127.0.0.1:${server.port}`, port: server.port!, server, seen, stop: () => server.stop(true) };
}

/** One route to the given upstreams, any host. */
export function oneRoute(upstreams: string[], extra: Record<string, any> = {}, proxy: Record<string, any> = {}) {
  return { proxy: { ...proxy, routes: [{ name: "r", upstreams, ...extra }] } };
}
