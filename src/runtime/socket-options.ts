// Socket calls Bun does not offer, made with libc through bun:ffi (Linux; elsewhere they report
// failure and callers fall back): TCP_NOTSENT_LOWAT on the public listener
// (`proxy.server.sendLowWatermarkBytes`), and a bounded non-blocking recv() for the upstream
// transport (`recvNow`, below).
//
// Why: a client that reads slowly (slowhttptest -X) lets the kernel queue as much of a response
// as its send buffer holds, and on Linux that buffer autotunes to megabytes (tcp_wmem max 4 MiB;
// on loopback one segment is 64 KiB). Measured here with 200 slow readers of a 10 MiB response:
// while they connect, the kernel spends Hecate's time copying megabytes per connection into
// send buffers (`allocate_slab`, `_copy_from_iter`), a normal request waits up to 0.4 s, and
// what flows in from the upstream meanwhile takes Hecate's RSS from 58 to ~330 MiB. With
// TCP_NOTSENT_LOWAT the socket takes at most about this many unsent bytes (plus one segment)
// before a write returns EAGAIN, so a slow reader holds a bounded amount and the rest waits
// upstream (bench/RESULTS.md, docs/hardening.md). nginx/HAProxy expose the same lever as
// `listen … sndbuf=` / `tune.sndbuf.client`.
//
// How: Bun.serve neither takes socket options nor exposes its listening socket, but Linux
// copies TCP_NOTSENT_LOWAT from a listening socket to the connections it accepts. So after
// Bun.serve binds, the listening sockets of this process on that port are found among
// /proc/self/fd (SO_ACCEPTCONN + getsockname) and the option is set on them with libc's
// setsockopt through bun:ffi. Where that is impossible (not Linux, no libc found) it logs one
// warning and the listener works as before.
import { readdirSync } from "node:fs";
import { dlopen, FFIType, ptr, read, type Pointer } from "bun:ffi";
import { log } from "../observability/log.ts";

const SOL_SOCKET = 1;
const SO_ACCEPTCONN = 30;
const IPPROTO_TCP = 6;
const TCP_NOTSENT_LOWAT = 25;
const AF_INET = 2;
const AF_INET6 = 10;

interface Libc {
  setsockopt(fd: number, level: number, name: number, value: Pointer, len: number): number;
  getsockopt(fd: number, level: number, name: number, value: Pointer, len: Pointer): number;
  getsockname(fd: number, addr: Pointer, len: Pointer): number;
  recv(fd: number, buf: Pointer, len: number, flags: number): number;
  __errno_location(): Pointer | null;
}

let libc: Libc | null | undefined;

function loadLibc(): Libc | null {
  if (libc !== undefined) return libc;
  libc = null;
  if (process.platform !== "linux") return null;
  const defs = {
    setsockopt: { args: [FFIType.i32, FFIType.i32, FFIType.i32, FFIType.ptr, FFIType.u32], returns: FFIType.i32 },
    getsockopt: { args: [FFIType.i32, FFIType.i32, FFIType.i32, FFIType.ptr, FFIType.ptr], returns: FFIType.i32 },
    getsockname: { args: [FFIType.i32, FFIType.ptr, FFIType.ptr], returns: FFIType.i32 },
    recv: { args: [FFIType.i32, FFIType.ptr, FFIType.u64, FFIType.i32], returns: FFIType.i64_fast },
    __errno_location: { args: [], returns: FFIType.ptr }, // glibc and musl
  } as const;
  // glibc, then musl (the Alpine image) by its loader's name.
  for (const name of ["libc.so.6", `libc.musl-${process.arch === "arm64" ? "aarch64" : "x86_64"}.so.1`, "libc.so"]) {
    try {
      libc = dlopen(name, defs).symbols as unknown as Libc;
      return libc;
    } catch {
      // try the next name
    }
  }
  return null;
}

/** The fds of this process's listening TCP sockets bound to `port`. */
function listeningFds(c: Libc, port: number): number[] {
  const out: number[] = [];
  const val = new Int32Array(1);
  const len = new Uint32Array(1);
  const sa = new Uint8Array(128);
  let names: string[];
  try {
    names = readdirSync("/proc/self/fd");
  } catch {
    return out;
  }
  for (const name of names) {
    const fd = Number(name);
    len[0] = 4;
    if (c.getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, ptr(val), ptr(len)) !== 0 || val[0] !== 1) continue;
    len[0] = sa.length;
    if (c.getsockname(fd, ptr(sa), ptr(len)) !== 0) continue;
    const family = sa[0]! | (sa[1]! << 8);
    if (family !== AF_INET && family !== AF_INET6) continue;
    if (((sa[2]! << 8) | sa[3]!) === port) out.push(fd);
  }
  return out;
}

let warned = false;

/**
 * Set TCP_NOTSENT_LOWAT = `bytes` on every listening TCP socket of this process on `port`
 * (0 bytes = leave the kernel's default). Returns how many sockets were set.
 */
export function setNotSentLowWatermark(port: number, bytes: number): number {
  if (bytes <= 0) return 0;
  let c: Libc | null;
  try {
    c = loadLibc();
  } catch {
    c = null;
  }
  const fds = c === null ? [] : listeningFds(c, port);
  let n = 0;
  const val = new Int32Array([Math.min(bytes, 0x7fffffff)]);
  for (const fd of fds) if (c!.setsockopt(fd, IPPROTO_TCP, TCP_NOTSENT_LOWAT, ptr(val), 4) === 0) n++;
  if (n === 0 && !warned) {
    warned = true;
    log("warn", "proxy.server.sendLowWatermarkBytes: cannot set TCP_NOTSENT_LOWAT on the public listener; slow readers may hold large kernel send buffers", {
      port,
      reason: c === null ? "no libc via bun:ffi on this platform" : "listening socket not found",
    });
  }
  return n;
}

const MSG_DONTWAIT = 0x40;
const EINTR = 4;
const EAGAIN = 11; // = EWOULDBLOCK on Linux
/** recvNow: nothing to read now (or no libc here). */
export const RECV_NONE = -1;
/** recvNow: the socket failed (a reset, …); the error is consumed, the caller must treat it as one. */
export const RECV_ERROR = -2;
/**
 * Read at most `buf.length` bytes that the kernel already holds for socket `fd`, without
 * blocking: the count (> 0); 0 at the end of the stream (it stays pending for Bun to see too);
 * RECV_NONE when nothing is there yet or there is no libc here, and the caller lets Bun read
 * the socket as usual; RECV_ERROR when the socket failed: recv() consumed the error, so Bun
 * would see a plain end next, and the caller must fail the exchange itself.
 */
export function recvNow(fd: number, buf: Uint8Array): number {
  const c = loadLibc(); // cached after the first call
  if (c === null || fd < 0) return RECV_NONE;
  const n = Number(c.recv(fd, ptr(buf), buf.length, MSG_DONTWAIT));
  if (n >= 0) return n;
  const at = c.__errno_location();
  const errno = at === null ? EAGAIN : read.i32(at, 0);
  return errno === EAGAIN || errno === EINTR ? RECV_NONE : RECV_ERROR;
}
