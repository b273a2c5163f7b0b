// recvNow (src/runtime/socket-options.ts): the bounded, non-blocking read the h1 transport does
// itself on a paused upstream socket. Real loopback sockets; the reading side is a Bun.connect
// socket, paused so that Bun does not read it meanwhile.
import { test, expect } from "bun:test";
import * as net from "node:net";
import type { Socket } from "bun";
import { RECV_ERROR, RECV_NONE, recvNow } from "../../src/runtime/socket-options.ts";
import { until } from "../hostile/wire.ts";

/** A node:net server socket and the paused Bun.connect socket connected to it. */
async function pair(): Promise<{ server: net.Socket; client: Socket<undefined>; fd: number; close(): void }> {
  let accepted!: (s: net.Socket) => void;
  const got = new Promise<net.Socket>((r) => (accepted = r));
  const srv = net.createServer((s) => {
    s.on("error", () => {});
    accepted(s);
  });
  await new Promise<void>((r) => srv.listen(0, "127.0.0.1", r));
  const client = await Bun.connect({ hostname: "127.0.0.1", port: (srv.address() as net.AddressInfo).port, socket: { data() {}, error() {} } });
  client.pause();
  const server = await got;
  const fd = (client as unknown as { fd: number }).fd;
  return { server, client, fd, close: () => (client.terminate(), server.destroy(), srv.close()) };
}

test("recvNow: nothing yet, then at most the buffer's size of what arrived, then the rest, then the end", async () => {
  const p = await pair();
  try {
    expect(p.fd).toBeGreaterThan(2);
    const buf = new Uint8Array(4);
    expect(recvNow(p.fd, buf)).toBe(RECV_NONE);
    p.server.write("abcdef");
    let n = RECV_NONE;
    await until(() => (n = recvNow(p.fd, buf)) !== RECV_NONE, 2000, "the bytes to arrive");
    expect(n).toBe(4);
    expect(Buffer.from(buf).toString()).toBe("abcd");
    expect(recvNow(p.fd, buf)).toBe(2);
    expect(Buffer.from(buf.subarray(0, 2)).toString()).toBe("ef");
    p.server.end();
    await until(() => (n = recvNow(p.fd, buf)) !== RECV_NONE, 2000, "the FIN");
    expect(n).toBe(0);
    expect(recvNow(p.fd, buf)).toBe(0); // an end stays for Bun to see
  } finally {
    p.close();
  }
});

test("recvNow: a reset is RECV_ERROR (recv consumed the error; Bun would see a plain end next)", async () => {
  const p = await pair();
  try {
    p.server.resetAndDestroy();
    const buf = new Uint8Array(16);
    let n = RECV_NONE;
    await until(() => (n = recvNow(p.fd, buf)) !== RECV_NONE, 2000, "the reset");
    expect(n).toBe(RECV_ERROR);
  } finally {
    p.close();
  }
});
