// Differential test of the HTTP/1.1 upstream transport against Bun's fetch: one raw TCP
// upstream (Bun.listen) plays a corpus of behaviours, both clients fetch each one, and we
// compare status, headers and body bytes, or the kind of failure. Where fetch is lenient and
// we are strict on purpose (duplicate Content-Length, Content-Length with Transfer-Encoding),
// the test asserts our documented behaviour instead.
import { afterAll, describe, expect, test } from "bun:test";
import type { Socket } from "bun";
import { ProxyError } from "../../src/errors.ts";
import { H1Transport } from "../../src/upstream/h1/transport.ts";
import { parseUpstreamUrl, type UpstreamTarget } from "../../src/upstream/target.ts";
import { stripResponseHopHeaders } from "../../src/pipeline/headers.ts";

// ---- raw upstream -----------------------------------------------------------------------

interface RawReq {
  method: string;
  path: string;
  head: string;
}
type Behaviour = (s: Socket<ConnState>, req: RawReq) => void | Promise<void>;
interface ConnState {
  buf: Buffer;
  busy: boolean;
  out: Buffer[];
  drained: (() => void) | null;
}

const BIG = Buffer.alloc(5 * 1024 * 1024);
for (let i = 0; i < BIG.length; i++) BIG[i] = (i * 31 + (i >> 13)) & 0xff;

/** Write everything, waiting for drain (raw sockets do not buffer). */
function send(s: Socket<ConnState>, data: string | Buffer): Promise<void> {
  const st = s.data;
  const b = typeof data === "string" ? Buffer.from(data, "latin1") : data;
  if (st.out.length === 0) {
    const n = s.write(b);
    if (n < 0 || n === b.length) return Promise.resolve();
    st.out.push(b.subarray(n));
  } else st.out.push(b);
  return new Promise<void>((resolve) => {
    const prev = st.drained;
    st.drained = () => {
      prev?.();
      resolve();
    };
  });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const behaviours: Record<string, Behaviour> = {
  "/cl": (s) => void send(s, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nX-Test: cl\r\nContent-Length: 11\r\n\r\nhello world"),
  "/chunked-ext": (s) => void send(s, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-Test: ext\r\n\r\n5;foo=bar\r\nhello\r\n6;x=\"y z\"\r\n world\r\n0;last\r\n\r\n"),
  // RFC 9112 §7.1.1 allows BWS around the ";" of a chunk extension; fetch rejects it
  "/chunked-ext-bws": (s) => void send(s, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5 ;foo=bar\r\nhello\r\n6\t; x = y\r\n world\r\n0\r\n\r\n"),
  "/chunked-trailers": (s) => void send(s, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Checksum\r\n\r\n3\r\nabc\r\n3\r\ndef\r\n0\r\nX-Checksum: 1234\r\nX-More: yes\r\n\r\n"),
  "/close-delimited": async (s) => {
    await send(s, "HTTP/1.1 200 OK\r\nX-Test: eof\r\n\r\nuntil ");
    await sleep(10);
    await send(s, "the end");
    s.end();
  },
  "/head-cl": (s) => void send(s, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 1234\r\n\r\n"),
  "/204": (s) => void send(s, "HTTP/1.1 204 No Content\r\nX-Test: nc\r\n\r\n"),
  "/304": (s) => void send(s, 'HTTP/1.1 304 Not Modified\r\nETag: "v1"\r\nContent-Length: 50\r\n\r\n'),
  "/continue": async (s) => {
    await send(s, "HTTP/1.1 100 Continue\r\n\r\n");
    await sleep(10);
    await send(s, "HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfinal");
  },
  "/large": async (s) => {
    await send(s, `HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: ${BIG.length}\r\n\r\n`);
    await send(s, BIG);
  },
  "/slow": async (s) => {
    await send(s, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
    for (let i = 0; i < 5; i++) {
      await sleep(15);
      await send(s, `2\r\n${i}.\r\n`);
    }
    await send(s, "0\r\n\r\n");
  },
  "/hop": (s) =>
    void send(s, "HTTP/1.1 200 OK\r\nConnection: keep-alive, X-Private\r\nKeep-Alive: timeout=30\r\nX-Private: secret\r\nProxy-Connection: keep-alive\r\nUpgrade: h2c\r\nTE: trailers\r\nX-Kept: 1\r\nTrailer: X-Sum\r\nContent-Length: 2\r\n\r\nok"),
  "/keepalive": (s) => void send(s, "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nkept"),
  "/conn-close": (s) => void send(s, "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 3\r\n\r\nbye"),
  "/http10": (s) => void send(s, "HTTP/1.0 200 OK\r\nContent-Length: 3\r\n\r\nold"),
  "/http10-ka": (s) => void send(s, "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 3\r\n\r\nold"),
  "/truncated-cl": async (s) => {
    await send(s, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly ten b");
    await sleep(10);
    s.end();
  },
  "/truncated-chunked": async (s) => {
    await send(s, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n");
    await sleep(10);
    s.end();
  },
  "/reset-before-head": (s) => s.terminate(),
  "/close-before-head": (s) => void s.end(),
  "/partial-head": async (s) => {
    await send(s, "HTTP/1.1 200 OK\r\nContent-Le");
    await sleep(10);
    s.end();
  },
  "/garbage": async (s) => {
    await send(s, "SSH-2.0-OpenSSH_9.2\r\n\r\nmore junk");
    s.end();
  },
  "/dup-cl": (s) => void send(s, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nok"),
  "/cl-te": (s) => void send(s, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n"),
};

let accepted = 0;
const server = Bun.listen<ConnState>({
  hostname: "127.0.0.1",
  port: 0,
  socket: {
    open(s) {
      accepted++;
      s.data = { buf: Buffer.alloc(0), busy: false, out: [], drained: null };
    },
    data(s, d) {
      const st = s.data;
      st.buf = Buffer.concat([st.buf, d]);
      const end = st.buf.indexOf("\r\n\r\n");
      if (end < 0) return;
      const head = st.buf.toString("latin1", 0, end);
      st.buf = st.buf.subarray(end + 4); // the corpus requests carry no body
      const [method = "", path = ""] = head.split(" ");
      const b = behaviours[path];
      if (!b) {
        void send(s, "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n");
        return;
      }
      void b(s, { method, path, head });
    },
    drain(s) {
      const st = s.data;
      while (st.out.length > 0) {
        const b = st.out[0]!;
        const n = s.write(b);
        if (n < 0) return;
        if (n < b.length) {
          st.out[0] = b.subarray(n);
          return;
        }
        st.out.shift();
      }
      const d = st.drained;
      st.drained = null;
      d?.();
    },
  },
});

const base = `http://127.0.0.1:${server.port}`;
const target: UpstreamTarget = { url: base, ...parseUpstreamUrl(base), weight: 1, stickyId: "0", index: 0, state: {} as never };
const h1 = new H1Transport();

afterAll(() => {
  h1.close();
  server.stop(true);
});

// ---- the two clients ----------------------------------------------------------------------

type Outcome =
  | { kind: "response"; status: number; headers: [string, string][]; body: Buffer | null }
  | { kind: "head-error"; code: string }
  | { kind: "body-error"; code: string; status: number };

async function readAll(body: ReadableStream<Uint8Array>): Promise<Buffer> {
  const parts: Uint8Array[] = [];
  for await (const c of body) parts.push(c);
  return Buffer.concat(parts);
}

async function viaFetch(path: string, method = "GET"): Promise<Outcome> {
  let res: Response;
  try {
    res = await fetch(base + path, { method, redirect: "manual", decompress: false, keepalive: false } as RequestInit);
  } catch (e) {
    return { kind: "head-error", code: (e as { code?: string }).code ?? (e as Error).name };
  }
  try {
    const body = res.body === null ? null : await readAll(res.body);
    return { kind: "response", status: res.status, headers: endToEnd(res.headers, false), body };
  } catch (e) {
    return { kind: "body-error", code: (e as { code?: string }).code ?? (e as Error).name, status: res.status };
  }
}

async function viaH1(path: string, method = "GET"): Promise<Outcome> {
  let res;
  try {
    res = await h1.send({ method, target, path, host: "corpus.test", headers: ["accept", "*/*"], body: null, signal: new AbortController().signal, connectTimeoutMs: 2000 });
  } catch (e) {
    expect(e).toBeInstanceOf(ProxyError);
    return { kind: "head-error", code: (e as ProxyError).code };
  }
  try {
    const body = res.body === null ? null : await readAll(res.body);
    expect(res.hopStripped).toBe(true);
    return { kind: "response", status: res.status, headers: endToEnd(res.headers, true), body };
  } catch (e) {
    expect(e).toBeInstanceOf(ProxyError);
    return { kind: "body-error", code: (e as ProxyError).code, status: res.status };
  }
}

/**
 * The fields a client of the proxy would get: forward() strips fetch's hop-by-hop fields; the
 * h1 transport leaves them out itself (and must leave out exactly those).
 */
function endToEnd(h: Headers, stripped: boolean): [string, string][] {
  const copy = new Headers(h);
  if (!stripped) stripResponseHopHeaders(copy);
  return [...copy];
}

/** Both clients; the responses' bodies compared as bytes (a null body is an empty one for fetch). */
async function both(path: string, method = "GET") {
  const f = await viaFetch(path, method);
  const o = await viaH1(path, method);
  return { f, o };
}

function expectSame(f: Outcome, o: Outcome) {
  expect(o.kind).toBe(f.kind);
  if (f.kind === "response" && o.kind === "response") {
    expect(o.status).toBe(f.status);
    expect(o.headers).toEqual(f.headers);
    expect((o.body ?? Buffer.alloc(0)).equals(f.body ?? Buffer.alloc(0))).toBe(true);
  }
  if (f.kind === "body-error" && o.kind === "body-error") expect(o.status).toBe(f.status);
}

// ---- the corpus -------------------------------------------------------------------------------

describe("same as fetch", () => {
  test("Content-Length body", async () => {
    const { f, o } = await both("/cl");
    expectSame(f, o);
    expect(o.kind === "response" && o.body!.toString()).toBe("hello world");
  });

  test("chunked with extensions", async () => {
    const { f, o } = await both("/chunked-ext");
    expectSame(f, o);
    expect(o.kind === "response" && o.body!.toString()).toBe("hello world");
  });

  test("chunked with trailers (trailers discarded)", async () => {
    const { f, o } = await both("/chunked-trailers");
    expectSame(f, o);
    expect(o.kind === "response" && o.body!.toString()).toBe("abcdef");
    expect(o.kind === "response" && o.headers.some(([k]) => k === "x-checksum")).toBe(false);
  });

  test("hop-by-hop fields (and those Connection lists) are left out, end-to-end ones kept", async () => {
    const { f, o } = await both("/hop");
    expectSame(f, o);
    expect(o.kind === "response" && o.headers).toEqual([["content-length", "2"], ["x-kept", "1"]]);
  });

  test("close-delimited body", async () => {
    const { f, o } = await both("/close-delimited");
    expectSame(f, o);
    expect(o.kind === "response" && o.body!.toString()).toBe("until the end");
  });

  test("HEAD with Content-Length: no body, header kept, connection reused", async () => {
    const { f, o } = await both("/head-cl", "HEAD");
    expectSame(f, o);
    expect(o.kind === "response" && o.body).toBeNull();
    expect(o.kind === "response" && o.headers).toContainEqual(["content-length", "1234"]);
    const before = accepted;
    expectSame(f, await viaH1("/head-cl", "HEAD"));
    expect(accepted).toBe(before);
  });

  test("204 and 304: no body", async () => {
    for (const p of ["/204", "/304"]) {
      const { f, o } = await both(p);
      expectSame(f, o);
      expect(o.kind === "response" && o.body).toBeNull();
    }
  });

  test("100 Continue and 103 Early Hints, then 200", async () => {
    const { f, o } = await both("/continue");
    expectSame(f, o);
    expect(o.kind === "response" && o.status).toBe(200);
    expect(o.kind === "response" && o.body!.toString()).toBe("final");
  });

  test("large body (5 MiB) arrives byte for byte", async () => {
    const { f, o } = await both("/large");
    expectSame(f, o);
    expect(o.kind === "response" && o.body!.equals(BIG)).toBe(true);
  });

  test("slow chunked body", async () => {
    const { f, o } = await both("/slow");
    expectSame(f, o);
    expect(o.kind === "response" && o.body!.toString()).toBe("0.1.2.3.4.");
  });

  test("truncated Content-Length body: the body errors, never looks complete", async () => {
    const { f, o } = await both("/truncated-cl");
    expect(f.kind).toBe("body-error");
    expectSame(f, o);
    expect(o.kind === "body-error" && o.code).toBe("upstream_reset");
  });

  test("truncated chunked body: the body errors, never looks complete", async () => {
    const { f, o } = await both("/truncated-chunked");
    expect(f.kind).toBe("body-error");
    expectSame(f, o);
    expect(o.kind === "body-error" && o.code).toBe("upstream_reset");
  });

  test("reset / close / partial head before the response: upstream_reset", async () => {
    for (const p of ["/reset-before-head", "/close-before-head", "/partial-head"]) {
      const { f, o } = await both(p);
      expect(f.kind).toBe("head-error");
      expectSame(f, o);
      expect(o.kind === "head-error" && o.code).toBe("upstream_reset");
    }
  });

  test("garbage instead of HTTP: bad_response", async () => {
    const { f, o } = await both("/garbage");
    expect(f.kind).toBe("head-error");
    expectSame(f, o);
    expect(o.kind === "head-error" && o.code).toBe("bad_response");
  });
});

describe("connection reuse", () => {
  test("keep-alive: three sequential requests share one connection", async () => {
    await viaH1("/keepalive"); // warm: one pooled connection exists now
    const before = accepted;
    for (let i = 0; i < 3; i++) {
      const o = await viaH1("/keepalive");
      expect(o.kind === "response" && o.body!.toString()).toBe("kept");
    }
    expect(accepted).toBe(before);
  });

  test("Connection: close, and HTTP/1.0 without keep-alive: a new connection each time", async () => {
    for (const p of ["/conn-close", "/http10"]) {
      const { f, o } = await both(p);
      expectSame(f, o);
      const before = accepted;
      await viaH1(p);
      await viaH1(p);
      expect(accepted - before).toBe(2);
    }
  });

  test("HTTP/1.0 with Connection: keep-alive is reused", async () => {
    await viaH1("/http10-ka");
    const before = accepted;
    await viaH1("/http10-ka");
    await viaH1("/http10-ka");
    expect(accepted).toBe(before);
  });
});

describe("where fetch differs (documented)", () => {
  // fetch accepts these; a proxy must not (response smuggling / desync, RFC 9112 §6.3)
  test("duplicate Content-Length → bad_response", async () => {
    const { f, o } = await both("/dup-cl");
    expect(f.kind).toBe("response");
    expect(o).toEqual({ kind: "head-error", code: "bad_response" });
  });

  test("chunk extensions with whitespace (allowed by RFC 9112, refused by fetch) are accepted", async () => {
    const { f, o } = await both("/chunked-ext-bws");
    expect(f.kind).toBe("body-error");
    expect(o.kind === "response" && o.body!.toString()).toBe("hello world");
  });

  test("Content-Length with Transfer-Encoding → bad_response", async () => {
    const { f, o } = await both("/cl-te");
    expect(f.kind).toBe("response"); // fetch lets chunked win and shows both headers
    expect(o).toEqual({ kind: "head-error", code: "bad_response" });
  });
});
