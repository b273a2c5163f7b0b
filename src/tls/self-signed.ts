// Self-signed certificate for the first run (SPEC §2.5 `tls.selfSigned`): ECDSA P-256, valid
// 365 days, names as SubjectAltNames. Built with @peculiar/x509 on WebCrypto, so no openssl
// binary is needed on the machine.
import "./reflect-shim.ts";

export interface SelfSigned {
  certPem: string;
  keyPem: string;
}

const IPV4 = /^\d{1,3}(\.\d{1,3}){3}$/;

/** Split names into DNS names and IP addresses ("[::1]" and "::1" are both IPs). */
export function sanEntries(names: readonly string[]): { type: "dns" | "ip"; value: string }[] {
  const out: { type: "dns" | "ip"; value: string }[] = [];
  const seen = new Set<string>();
  for (let n of names) {
    n = n.toLowerCase();
    if (n.startsWith("[") && n.endsWith("]")) n = n.slice(1, -1);
    if (n.endsWith(".") && !IPV4.test(n)) n = n.slice(0, -1);
    if (n === "" || seen.has(n)) continue;
    seen.add(n);
    out.push({ type: IPV4.test(n) || n.includes(":") ? "ip" : "dns", value: n });
  }
  return out;
}

export async function generateSelfSigned(names: readonly string[], days = 365): Promise<SelfSigned> {
  const x509 = await import("@peculiar/x509");
  x509.cryptoProvider.set(crypto as never);
  const alg = { name: "ECDSA", namedCurve: "P-256", hash: "SHA-256" };
  const keys = (await crypto.subtle.generateKey(alg, true, ["sign", "verify"])) as CryptoKeyPair;
  const sans = sanEntries(names);
  const cn = sans.find((s) => s.type === "dns" && !s.value.startsWith("*."))?.value ?? "localhost";
  const now = Date.now();
  const serial = new Uint8Array(16);
  crypto.getRandomValues(serial);
  serial[0] = serial[0]! & 0x7f; // positive INTEGER
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: Buffer.from(serial).toString("hex"),
    name: `CN=${cn}, O=Hecate self-signed`,
    notBefore: new Date(now - 60_000),
    notAfter: new Date(now + days * 86_400_000),
    signingAlgorithm: alg,
    keys,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth]),
      new x509.SubjectAlternativeNameExtension(sans),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  const pkcs8 = await crypto.subtle.exportKey("pkcs8", keys.privateKey);
  return { certPem: cert.toString("pem") + "\n", keyPem: x509.PemConverter.encode(pkcs8, "PRIVATE KEY") + "\n" };
}
