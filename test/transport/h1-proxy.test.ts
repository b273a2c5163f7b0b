// The HTTP/1.1 transport behind the whole proxy (forward.ts, retries, streaming): Hecate
// in-process with its http:// transport replaced by H1Transport, clients using fetch.
import { afterAll, expect, test } from "bun:test";
import type { Socket } from "bun";
import { startHecate, type Hecate } from "../helpers/hecate.ts";
import { H1Transport } from "../../src/upstream/h1/transport.ts";

const stops: (() => unknown)[] = [];
afterAll(async () => {
  for (const s of stops.reverse()) await s();
});

async function proxyTo(port: number, extra: Record<string, unknown> = {}): Promise<Hecate> {
  const h = await startHecate({ proxy: { routes: [{ name: "r", upstreams: [`http://127.0.0.1:${port}`], ...extra }] } });
  h.rt.httpTransport.close();
  h.rt.httpTransport = new H1Transport();
  stops.push(() => h.shutdown());
  return h;
}

interface St {
  buf: Buffer;
  n: number;
}

/** Raw upstream: `answer` gets each request head; counts accepted connections. */
function upstream(answer: (s: Socket<St>, head: string) => void) {
  const u = { port: 0, accepted: 0, heads: [] as string[] };
  const l = Bun.listen<St>({
    hostname: "127.0.0.1",
    port: 0,
    socket: {
      open(s) {
        u.accepted++;
        s.data = { buf: Buffer.alloc(0), n: 0 };
      },
      data(s, d) {
        s.data.buf = Buffer.concat([s.data.buf, d]);
        for (;;) {
          const e = s.data.buf.indexOf("\r\n\r\n");
          if (e < 0) return;
          const head = s.data.buf.toString("latin1", 0, e + 4);
          const m = /content-length: (\d+)/i.exec(head);
          const bodyLen = m ? Number(m[1]) : 0;
          if (s.data.buf.length < e + 4 + bodyLen) return;
          s.data.buf = s.data.buf.subarray(e + 4 + bodyLen);
          s.data.n++;
          u.heads.push(head);
          answer(s, head);
        }
      },
    },
  });
  u.port = l.port;
  stops.push(() => l.stop(true));
  return u;
}

test("requests flow through and reuse one upstream connection", async () => {
  const up = upstream((s, head) => {
    const body = head.split("\r\n")[0]!;
    s.write(`HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: ${body.length}\r\n\r\n${body}`);
  });
  const h = await proxyTo(up.port);
  for (let i = 0; i < 20; i++) {
    const r = await fetch(`${h.url}/item/${i}?q=${i}`, { method: i % 2 ? "POST" : "GET", body: i % 2 ? `body ${i}` : undefined });
    expect(r.status).toBe(200);
    expect(await r.text()).toBe(`${i % 2 ? "POST" : "GET"} /item/${i}?q=${i} HTTP/1.1`);
    expect(r.headers.get("via")).toBe("1.1 hecate");
  }
  expect(up.accepted).toBe(1);
  expect(up.heads[1]).toContain("content-length: 6\r\n");
  expect(up.heads[0]).toContain("x-forwarded-for: 127.0.0.1\r\n");
});

test("a streamed response is passed on as it arrives (no buffering)", async () => {
  let next: (() => void) | null = null;
  const up = upstream((s) => {
    s.write("HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n");
    s.write("a\r\ndata: one\n\r\n");
    next = () => s.write("a\r\ndata: two\n\r\n0\r\n\r\n");
  });
  const h = await proxyTo(up.port);
  const r = await fetch(`${h.url}/events`);
  const reader = r.body!.getReader();
  const first = await reader.read();
  expect(Buffer.from(first.value!).toString()).toBe("data: one\n"); // arrived before the upstream finished
  next!();
  let rest = "";
  for (;;) {
    const c = await reader.read();
    if (c.done) break;
    rest += Buffer.from(c.value).toString();
  }
  expect(rest).toBe("data: two\n");
});

test("a truncated large body cuts the client's response; a reset before the head is a 502", async () => {
  const up = upstream((s, head) => {
    if (head.startsWith("GET /reset")) return s.terminate();
    s.write(`HTTP/1.1 200 OK\r\nContent-Length: ${4 * 1024 * 1024}\r\n\r\n`);
    s.write(Buffer.alloc(512 * 1024, 97));
    setTimeout(() => s.end(), 20);
  });
  const h = await proxyTo(up.port);
  const r = await fetch(`${h.url}/big`);
  expect(r.status).toBe(200);
  let failed = false;
  let got = 0;
  try {
    for await (const c of r.body!) got += c.byteLength;
  } catch {
    failed = true;
  }
  expect(failed).toBe(true);
  expect(got).toBeLessThan(4 * 1024 * 1024);
  const r2 = await fetch(`${h.url}/reset`);
  expect(r2.status).toBe(502);
});
