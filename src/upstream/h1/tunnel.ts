// The upstream side of an HTTP/1.1 connection after `101 Switching Protocols` (WebSocket or any
// other upgrade): the socket leaves the pool and carries raw bytes both ways. Reading stays
// paused until the new owner sets its handlers, so nothing is lost in between.
import type { Socket } from "bun";

export interface TunnelHandlers {
  /** Bytes from the upstream (the new protocol). */
  data?(chunk: Uint8Array): void;
  /** The socket can take more after a short write. */
  drain?(): void;
  /** The connection closed (either side). */
  close?(error?: Error): void;
}

/** What the tunnel uses of its connection (the transport's Conn). */
export interface TunnelConn {
  socket: Socket<any> | null;
  paused: boolean;
  pending: Uint8Array[] | null;
  /** Write, queueing what the socket does not take (flushed on drain); -1 once closed. */
  write(buf: Uint8Array, off: number, len: number, transient: boolean): number;
}

/**
 * The upstream side of a connection after `101 Switching Protocols`: raw bytes both ways.
 * Reading is paused until `setHandlers()`; `head` holds what arrived with the 101.
 */
export class H1Tunnel {
  private h: TunnelHandlers | null = null;
  private buffered: Uint8Array[] | null = null;
  private closedWith: { err: Error | undefined } | null = null;

  constructor(
    private readonly conn: TunnelConn,
    /** Bytes the upstream sent right after the 101 head (already the new protocol). */
    readonly head: Uint8Array,
  ) {}

  /** The raw Bun socket (write / end / terminate / pause / resume). */
  get socket(): Socket<unknown> {
    return this.conn.socket as Socket<unknown>;
  }

  get closed(): boolean {
    return this.closedWith !== null;
  }

  /** Take over the events; data that arrived before is delivered now, then reading resumes. */
  setHandlers(h: TunnelHandlers): void {
    this.h = h;
    const b = this.buffered;
    this.buffered = null;
    if (b !== null && h.data) for (const chunk of b) h.data(chunk);
    if (this.closedWith !== null) {
      h.close?.(this.closedWith.err);
      return;
    }
    this.resume();
  }

  /**
   * Write bytes (a string as UTF-8). What the socket does not take now is queued and flushed on
   * drain, after which the `drain` handler runs: stop writing while `bufferedAmount > 0`.
   * Returns the bytes written at once, -1 once closed.
   */
  write(data: string | Uint8Array): number {
    if (this.closedWith !== null) return -1;
    const b = typeof data === "string" ? Buffer.from(data) : data;
    return this.conn.write(b, 0, b.byteLength, false);
  }

  /** Bytes queued behind a short write. */
  get bufferedAmount(): number {
    const p = this.conn.pending;
    let n = 0;
    if (p !== null) for (const b of p) n += b.byteLength;
    return n;
  }

  pause(): void {
    const c = this.conn;
    if (!c.paused && this.closedWith === null) {
      c.paused = true;
      c.socket!.pause();
    }
  }

  resume(): void {
    const c = this.conn;
    if (c.paused && this.closedWith === null) {
      c.paused = false;
      c.socket!.resume();
    }
  }

  /** Half-close (FIN). */
  end(): void {
    this.conn.socket?.end();
  }

  /** Reset the connection. */
  destroy(): void {
    this.conn.socket?.terminate();
  }

  onData(chunk: Uint8Array): void {
    const h = this.h;
    if (h !== null && h.data) h.data(chunk);
    else (this.buffered ??= []).push(chunk);
  }

  onDrain(): void {
    this.h?.drain?.();
  }

  onClose(err?: Error): void {
    if (this.closedWith !== null) return;
    this.closedWith = { err };
    this.h?.close?.(err);
  }
}
