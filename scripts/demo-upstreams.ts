// Two demo upstreams for config/example.yaml: 127.0.0.1:18080 ("blue") and :18081 ("green").
// Each answers every path with a small JSON echo, /healthz with "ok", /stream with SSE, and
// /ws as a WebSocket echo. Ports can be overridden: DEMO_PORTS=18080,18081.
// DEMO_HOST (default 127.0.0.1) and DEMO_NAMES=blue,green set the bind address and the names
// (docker-compose.yml runs each upstream in its own container on 0.0.0.0).
const ports = (process.env.DEMO_PORTS ?? "18080,18081").split(",").map(Number);
const names = process.env.DEMO_NAMES?.split(",") ?? ["blue", "green", "red", "yellow"];

export function startDemoUpstream(port: number, name: string) {
  return Bun.serve({
    port,
    hostname: process.env.DEMO_HOST ?? "127.0.0.1",
    fetch(req, server) {
      const url = new URL(req.url);
      if (url.pathname === "/healthz") return new Response("ok\n");
      if (url.pathname === "/ws" && server.upgrade(req)) return undefined;
      if (url.pathname === "/stream") {
        let i = 0;
        const body = new ReadableStream({
          async pull(c) {
            if (i >= 5) return c.close();
            c.enqueue(new TextEncoder().encode(`data: ${name} event ${i++}\n\n`));
            await Bun.sleep(200);
          },
        });
        return new Response(body, { headers: { "content-type": "text/event-stream", "cache-control": "no-cache" } });
      }
      const headers: Record<string, string> = {};
      req.headers.forEach((v, k) => (headers[k] = v));
      return Response.json({ upstream: name, port, method: req.method, path: url.pathname + url.search, headers });
    },
    websocket: {
      message(ws, msg) {
        ws.send(msg);
      },
    },
  });
}

if (import.meta.main) {
  for (const [i, port] of ports.entries()) {
    const s = startDemoUpstream(port, names[i] ?? `upstream${i}`);
    console.log(JSON.stringify({ msg: "demo upstream listening", name: names[i], url: `http://127.0.0.1:${s.port}` }));
  }
}
