import { PkiError } from "./errors.js";
import { x509 } from "./x509.js";

export function parseCertificate(pemOrDer: string | Uint8Array, what: string): x509.X509Certificate {
  try {
    if (typeof pemOrDer === "string") return new x509.X509Certificate(pemOrDer);
    const text = Buffer.from(pemOrDer).toString("latin1");
    return new x509.X509Certificate(text.includes("-----BEGIN") ? text : new Uint8Array(pemOrDer));
  } catch (e) {
    throw new PkiError("CERT_INVALID", `${what} is not an X.509 certificate in PEM or DER: give the right file`, { cause: e });
  }
}

function isCa(cert: x509.X509Certificate): boolean {
  return cert.getExtension(x509.BasicConstraintsExtension)?.ca === true;
}

/**
 * RFC 5280 §6.1, the parts idmint relies on: every link's signature verifies with its
 * issuer's key, every issuer is a CA, every certificate is valid at `at`, and the path ends
 * at the pinned root (compared byte for byte, never trusted because of its name).
 */
export async function checkChain(
  leaf: x509.X509Certificate,
  intermediates: readonly x509.X509Certificate[],
  root: x509.X509Certificate,
  at: Date = new Date(),
): Promise<x509.X509Certificate[]> {
  const fail = (why: string) => new PkiError("CHAIN_INVALID", `${leaf.subject}: ${why}`);
  const rootDer = Buffer.from(root.rawData);
  const path = [leaf];
  let current = leaf;
  for (let depth = 0; depth <= intermediates.length; depth++) {
    if (current.notBefore > at || current.notAfter < at) throw fail(`${current.subject} is not valid at ${at.toISOString()}`);
    const candidates = [root, ...intermediates].filter((c) => c.subject === current.issuer);
    let issuer: x509.X509Certificate | undefined;
    for (const c of candidates) {
      // A malformed signature value makes @peculiar/x509 throw rather than answer false: it does not verify either.
      if (await current.verify({ publicKey: c, signatureOnly: true }).catch(() => false)) {
        issuer = c;
        break;
      }
    }
    if (!issuer) throw fail(`no signature by the pinned root or a given CA on ${current.subject}: it does not chain to the vendor root`);
    if (!isCa(issuer)) throw fail(`${issuer.subject} is not a CA`);
    if (Buffer.from(issuer.rawData).equals(rootDer)) {
      if (root.notBefore > at || root.notAfter < at) throw fail(`the root is not valid at ${at.toISOString()}`);
      path.push(root);
      return path;
    }
    path.push(issuer);
    current = issuer;
  }
  throw fail("the chain does not reach the pinned root");
}
