// Per-origin pools of keep-alive HTTP/1.1 connections: an idle stack (LIFO, so the warmest
// socket is reused and the cold ones age out), a count of open connections bounded per origin,
// and a FIFO of requests waiting for a connection when the bound is reached. Idle expiry is one
// unref'd interval per pool sweeping the bottom of each stack (the oldest idle connections),
// not a timer per connection.

/** What the pool needs from a connection. */
export interface Poolable {
  /** When it was last put back (ms, Date.now()). */
  idleSince: number;
  /** Whether it sits in its origin's idle stack. */
  inIdle: boolean;
  /** Close it; its close event then calls `OriginPool.closed()`. */
  destroy(): void;
  /** Still usable (not closed, not closing). */
  alive(): boolean;
}

/** A request waiting for a connection; `cancelled` ones are skipped. */
export interface Waiting {
  cancelled: boolean;
}

export interface PoolOptions {
  /** Idle connections kept per origin; extra ones are closed when released. Default 512. */
  maxIdlePerOrigin?: number;
  /** Connections open (busy + idle + connecting) per origin; more requests queue. Default 1024. */
  maxConnsPerOrigin?: number;
  /** Idle connections older than this are closed. Default 60 000 ms. */
  idleTimeoutMs?: number;
}

export class OriginPool<C extends Poolable, W extends Waiting> {
  /** Idle connections, most recently released last. */
  readonly idle: C[] = [];
  /** Open or opening connections of this origin (idle ones included). */
  open = 0;
  private readonly q: (W | undefined)[] = [];
  private qHead = 0;

  constructor(
    readonly key: string,
    readonly hostname: string,
    readonly port: number,
  ) {}

  /** The most recently released live idle connection, or null. */
  take(): C | null {
    const idle = this.idle;
    while (idle.length > 0) {
      const c = idle.pop()!;
      c.inIdle = false;
      if (c.alive()) return c;
      // closed but its close event has not run yet: it will find itself out of the stack
    }
    return null;
  }

  /** Remove a connection from the idle stack (it closed). */
  remove(c: C): void {
    if (!c.inIdle) return;
    c.inIdle = false;
    const idle = this.idle;
    const i = idle.lastIndexOf(c);
    if (i >= 0) idle.splice(i, 1);
  }

  get waiting(): number {
    return this.q.length - this.qHead;
  }

  enqueue(w: W): void {
    this.q.push(w);
  }

  /** The first waiter that was not cancelled, or null. */
  dequeue(): W | null {
    const q = this.q;
    while (this.qHead < q.length) {
      const w = q[this.qHead]!;
      q[this.qHead++] = undefined;
      if (this.qHead === q.length) {
        q.length = 0;
        this.qHead = 0;
      } else if (this.qHead >= 1024 && this.qHead * 2 >= q.length) {
        q.splice(0, this.qHead);
        this.qHead = 0;
      }
      if (!w.cancelled) return w;
    }
    return null;
  }
}

export class ConnPool<C extends Poolable, W extends Waiting> {
  readonly maxIdlePerOrigin: number;
  readonly maxConnsPerOrigin: number;
  readonly idleTimeoutMs: number;
  private readonly origins = new Map<string, OriginPool<C, W>>();
  private sweeper: Timer | null = null;

  constructor(opts: PoolOptions = {}) {
    this.maxIdlePerOrigin = opts.maxIdlePerOrigin ?? 512;
    this.maxConnsPerOrigin = opts.maxConnsPerOrigin ?? 1024;
    this.idleTimeoutMs = opts.idleTimeoutMs ?? 60_000;
  }

  /** The pool of one origin (`key` = `scheme://host:port`), created on first use. */
  origin(key: string, hostname: string, port: number): OriginPool<C, W> {
    let op = this.origins.get(key);
    if (op === undefined) {
      op = new OriginPool<C, W>(key, hostname, port);
      this.origins.set(key, op);
    }
    return op;
  }

  /** Keep an idle connection; false = the origin has enough idle ones, close it. */
  put(op: OriginPool<C, W>, c: C): boolean {
    if (op.idle.length >= this.maxIdlePerOrigin) return false;
    c.idleSince = Date.now();
    c.inIdle = true;
    op.idle.push(c);
    if (this.sweeper === null) {
      const every = Math.max(250, Math.min(15_000, this.idleTimeoutMs / 4));
      this.sweeper = setInterval(() => this.sweep(Date.now()), every);
      this.sweeper.unref();
    }
    return true;
  }

  /** Close idle connections idle for longer than the idle timeout. */
  sweep(now: number): void {
    const cutoff = now - this.idleTimeoutMs;
    let any = false;
    for (const op of this.origins.values()) {
      const idle = op.idle;
      let n = 0;
      while (n < idle.length && idle[n]!.idleSince <= cutoff) n++;
      if (n > 0) {
        const old = idle.splice(0, n);
        for (const c of old) {
          c.inIdle = false;
          c.destroy();
        }
      }
      if (idle.length > 0) any = true;
      else if (op.open === 0 && op.waiting === 0) this.origins.delete(op.key);
    }
    if (!any && this.sweeper !== null) {
      clearInterval(this.sweeper);
      this.sweeper = null;
    }
  }

  /** Close every idle connection and stop the sweeper. */
  closeIdle(): void {
    for (const op of this.origins.values()) {
      const idle = op.idle.splice(0);
      for (const c of idle) {
        c.inIdle = false;
        c.destroy();
      }
    }
    if (this.sweeper !== null) {
      clearInterval(this.sweeper);
      this.sweeper = null;
    }
  }

  /** Per-origin counts, for tests and the admin API. */
  stats(): Record<string, { open: number; idle: number; waiting: number }> {
    const out: Record<string, { open: number; idle: number; waiting: number }> = {};
    for (const op of this.origins.values()) out[op.key] = { open: op.open, idle: op.idle.length, waiting: op.waiting };
    return out;
  }
}
