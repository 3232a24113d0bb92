import { existsSync } from "node:fs";
import { readInputFile, type Home, type IdmintConfig } from "../core/index.js";
import { formatPkcs11Uri, parsePkcs11Uri } from "../hsm/index.js";
import { parseCertificate, x509 } from "../pki/index.js";
import { VouchersError } from "./errors.js";

/**
 * Where a home's MASA key goes unless told otherwise: beside the allocation signer's key, in
 * its token. Both sign what the vendor's office hands out per order (allocation lists,
 * vouchers), and an existing embedded home has no token of its own for a new role.
 */
export function defaultMasaKeyUri(config: IdmintConfig): string {
  const alloc = parsePkcs11Uri(config.keys.allocationSigner);
  return formatPkcs11Uri({ token: alloc.token, serial: alloc.serial, object: "masa-key", type: "private", pinSource: alloc.pinSource });
}

/** The home's MASA: its key's URI and its certificate; a home without one is told how to add it. */
export function masaOf(home: Home, config: IdmintConfig): { keyUri: string; certificate: x509.X509Certificate } {
  const file = home.pkiFile("masa");
  if (config.keys.masa === undefined || !existsSync(file)) {
    throw new VouchersError("NO_MASA", `${home.root} has no voucher-signing key (keys.masa, ${file}): add one with \`idmint ca masa --home ${home.root}\``);
  }
  return { keyUri: config.keys.masa, certificate: parseCertificate(readInputFile(file, "the MASA certificate"), file) };
}
