// Write the self-signed pairs that compileTls generated in memory, just before a listener binds
// (start, or a reload that re-binds). Missing folders are created; the key gets mode 0600. Each
// file is created exclusively: when another worker wrote the pair first, its files are used.
import { mkdirSync, writeFileSync } from "node:fs";
import { dirname } from "node:path";
import type { CompiledTls } from "./compile-tls.ts";
import { log } from "../observability/log.ts";

export class TlsWriteError extends Error {}

/**
 * Write `tls.pendingWrites` (emptied on success). When a pair already exists on disk (another
 * worker, a race with the operator) the entry is left as it is and the files on disk win at the
 * next reload. Throws TlsWriteError with the key path when a file cannot be written.
 */
export function writeSelfSigned(tls: CompiledTls, certFiles: readonly string[]): void {
  while (tls.pendingWrites.length > 0) {
    const w = tls.pendingWrites[0]!;
    const i = tls.pairs.findIndex((p) => p.certPath === w.certPath);
    const at = (k: "certFiles" | "keyFiles") => `tls.${k}[${i >= 0 ? i : certFiles.indexOf(w.certPath)}]`;
    for (const [path, pem, mode, key] of [
      [w.keyPath, w.keyPem, 0o600, "keyFiles"],
      [w.certPath, w.certPem, 0o644, "certFiles"],
    ] as const) {
      try {
        mkdirSync(dirname(path), { recursive: true, mode: 0o755 });
        writeFileSync(path, pem, { mode, flag: "wx" });
      } catch (e) {
        const code = (e as { code?: string }).code;
        if (code === "EEXIST") continue;
        throw new TlsWriteError(`${at(key)}: cannot write the self-signed ${key === "keyFiles" ? "key" : "certificate"} ${path}: ${code === "EACCES" ? "permission denied" : (e as Error).message}`);
      }
    }
    tls.pendingWrites.shift();
    log("warn", "tls: no certificate found, generated a self-signed one (clients will not trust it)", {
      cert: w.certPath,
      key: w.keyPath,
      names: w.names,
      validDays: 365,
    });
  }
}
