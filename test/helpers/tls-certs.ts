// Test PKI made with the openssl CLI in a temporary folder: a CA, server certificates for given
// names (signed by the CA), client certificates (one from the CA, one from another CA).
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

export interface Pki {
  dir: string;
  caCert: string;
  /** A client certificate/key signed by the CA. */
  clientCert: string;
  clientKey: string;
  /** A client certificate/key from an unrelated CA. */
  rogueCert: string;
  rogueKey: string;
  /** Make a server certificate for `names` (DNS or IP); returns [certPath, keyPath]. */
  server(name: string, names: string[]): [string, string];
  cleanup(): void;
}

function openssl(args: string[], cwd: string): void {
  const r = Bun.spawnSync(["openssl", ...args], { cwd, stdout: "pipe", stderr: "pipe" });
  if (r.exitCode !== 0) throw new Error(`openssl ${args.join(" ")}: ${r.stderr.toString()}`);
}

const EC = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"];

export function makePki(): Pki {
  const dir = mkdtempSync(join(tmpdir(), "hecate-pki-"));
  openssl(["req", "-x509", ...EC, "-keyout", "ca.key", "-out", "ca.crt", "-days", "2", "-subj", "/CN=Hecate Test CA"], dir);
  openssl(["req", "-x509", ...EC, "-keyout", "rogue-ca.key", "-out", "rogue-ca.crt", "-days", "2", "-subj", "/CN=Rogue CA"], dir);
  const sign = (base: string, subj: string, ext: string, ca: string) => {
    openssl(["req", ...EC, "-keyout", `${base}.key`, "-out", `${base}.csr`, "-subj", subj], dir);
    writeFileSync(join(dir, `${base}.ext`), ext + "\n");
    openssl(["x509", "-req", "-in", `${base}.csr`, "-CA", `${ca}.crt`, "-CAkey", `${ca}.key`, "-CAcreateserial", "-out", `${base}.crt`, "-days", "2", "-extfile", `${base}.ext`], dir);
  };
  sign("client", "/CN=client", "extendedKeyUsage=clientAuth", "ca");
  sign("rogue", "/CN=rogue", "extendedKeyUsage=clientAuth", "rogue-ca");
  return {
    dir,
    caCert: join(dir, "ca.crt"),
    clientCert: join(dir, "client.crt"),
    clientKey: join(dir, "client.key"),
    rogueCert: join(dir, "rogue.crt"),
    rogueKey: join(dir, "rogue.key"),
    server(name, names) {
      const san = names.map((n) => (/^[\d.]+$|:/.test(n) ? `IP:${n}` : `DNS:${n}`)).join(",");
      sign(name, `/CN=${names[0]}`, `subjectAltName=${san}\nextendedKeyUsage=serverAuth`, "ca");
      return [join(dir, `${name}.crt`), join(dir, `${name}.key`)];
    },
    cleanup() {
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Run curl; returns exit code, stdout and stderr. */
export async function curl(args: string[]): Promise<{ code: number; out: string; err: string }> {
  const p = Bun.spawn(["curl", "-s", "--max-time", "10", ...args], { stdout: "pipe", stderr: "pipe" });
  const [out, err, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
  return { code, out, err };
}
