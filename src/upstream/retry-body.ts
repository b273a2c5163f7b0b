// A streamed request body that a retry can send again (SPEC §3.7).
//
// The client's body is read once, as the upstream consumes it; every attempt gets a fresh
// stream (`stream()`) that first replays what was read so far and then continues from the
// client. The bytes read are kept while their total fits in `limit` (retryBufferBytes): then
// a retry replays them (a small chunked body, or one the upstream answered before reading
// it all). Once more than `limit` bytes have been read the copy is dropped (each chunk is
// released once sent) and the body can no longer be re-sent; a body nothing was read from
// (a connect error: the attempt never got a connection) can always be sent again. Nothing is
// buffered beyond `limit` (plus the chunk in hand), and nothing delays the first attempt: the
// copy is made while forwarding (Envoy's retry buffer).
//
// Streams use highWaterMark 0 so that a stream is only read when the transport asks for data
// (measured: Bun's fetch does not pull a body stream when the connection is refused).

const RELEASED = new Uint8Array(0);

export class RetryBody {
  private readonly reader: { read(): Promise<{ done: true; value?: Uint8Array } | { done: false; value: Uint8Array }>; cancel(reason?: unknown): Promise<void> };
  private readonly limit: number;
  /**
   * What was read from the client, in order. While the total fits in `limit` it is all kept;
   * after that (`overflowed`) each chunk is released as soon as the current stream took it.
   */
  private chunks: Uint8Array[] = [];
  private overflowed = false;
  /** Position of the current stream in `chunks`. */
  private pos = 0;
  private readBytes = 0;
  private ended = false;
  private pending: Promise<void> | null = null;
  /** Id of the newest stream; older ones (attempts given up) may no longer read. */
  private current = 0;

  constructor(source: ReadableStream<Uint8Array>, limit: number) {
    this.reader = source.getReader();
    this.limit = limit;
  }

  /** Can a new attempt send the whole body? */
  get replayable(): boolean {
    return this.readBytes === 0 || !this.overflowed;
  }

  /** The body for one attempt. Supersedes (errors) the stream of any previous attempt. */
  stream(): ReadableStream<Uint8Array> {
    const id = ++this.current;
    this.pos = 0;
    return new ReadableStream<Uint8Array>(
      {
        pull: async (c) => {
          for (;;) {
            if (id !== this.current) return c.error(new Error("request body superseded by a retry"));
            const chunks = this.chunks;
            if (this.pos < chunks.length) {
              const v = chunks[this.pos]!;
              if (!this.overflowed) this.pos++;
              else if (this.pos === chunks.length - 1) {
                chunks.length = 0;
                this.pos = 0;
              } else chunks[this.pos++] = RELEASED;
              return c.enqueue(v);
            }
            if (this.ended) return c.close();
            await (this.pending ??= this.fill());
          }
        },
        // An attempt that ends (aborted, connect error) must not end the client's body: a
        // retry may still need it.
        cancel: () => {},
      },
      { highWaterMark: 0 },
    );
  }

  private async fill(): Promise<void> {
    try {
      const { done, value } = await this.reader.read();
      if (done) {
        this.ended = true;
        return;
      }
      this.readBytes += value.byteLength;
      this.chunks.push(value);
      if (!this.overflowed && this.readBytes > this.limit) {
        // too big to replay: keep only what the current stream has not taken yet
        this.overflowed = true;
        for (let k = 0; k < this.pos; k++) this.chunks[k] = RELEASED;
      }
    } finally {
      this.pending = null;
    }
  }

  /** The exchange is over: stop reading the client's body. */
  cancel(reason?: unknown): void {
    this.current = -1;
    this.reader.cancel(reason).catch(() => {});
  }
}
