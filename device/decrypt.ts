import { decryptWithKey, recipientIdentity, softRecipientKey, tokenRecipientKey, type DecryptResult, type RecipientIdentity } from "../cms/index.js";
import { Hsm, formatPkcs11Uri, parsePkcs11Uri } from "../hsm/index.js";
import { assertSerialSyntax, parseCertificate } from "../pki/index.js";
import { DeviceError } from "./errors.js";
import type { Pkcs11KeystoreOptions } from "./keystore.js";
import { softUnitKey, unitsDbPath, withUnitFlash } from "./store.js";

export interface UnitDecryptOptions {
  /** The simulator's units directory (`HOME/units`). */
  unitsDir: string;
  serial: string;
  input: Uint8Array;
  requireEncrypted?: boolean;
  requireAuthenticated?: boolean;
  /** For a unit whose key is in a PKCS#11 token: the module and the token (with its pin-source). */
  token?: Omit<Pkcs11KeystoreOptions, "tokenUri"> & { tokenUri?: string };
}

export interface UnitDecryptResult {
  serial: string;
  keystore: "soft" | "pkcs11";
  result: DecryptResult;
}

/**
 * `idmint unit decrypt`: the simulated unit `serial` opens a configuration with its own key,
 * as the real unit would (RFC 8886 §4.3). Its certificate (if installed) says which
 * recipient it is; a key in a token is used inside the token.
 */
export function decryptForUnit(o: UnitDecryptOptions): UnitDecryptResult {
  assertSerialSyntax(o.serial);
  // Everything the unit holds is read first, so the flash is closed before a token opens.
  const { unit, softKey } = withUnitFlash(o.unitsDir, (flash) => {
    const unit = flash?.read(o.serial);
    if (!unit) throw new DeviceError("UNIT_KEY", `there is no unit ${o.serial} in ${o.unitsDir}: check the serial and --home (units keep their keys in HOME/units/units.db)`);
    return { unit, softKey: unit.key?.keystore === "soft" ? softUnitKey(flash!, o.serial) : undefined };
  });
  if (unit.state === "new" || !unit.key || !unit.spki) throw new DeviceError("UNIT_KEY", `unit ${o.serial} has no key yet: provision it first (idmint station run)`);
  const spki = new Uint8Array(unit.spki);
  let identity: RecipientIdentity | undefined;
  if (unit.state === "provisioned") {
    const broken = (why: string, cause?: unknown) => new DeviceError("UNIT_KEY", `unit ${o.serial}'s certificate ${why}: delete its row from ${unitsDbPath(o.unitsDir)} and provision it again`, { cause });
    try {
      identity = recipientIdentity(parseCertificate(unit.certificate!, `unit ${o.serial}'s certificate`));
    } catch (e) {
      throw broken("is unreadable", e);
    }
    if (!Buffer.from(identity.spki).equals(unit.spki)) throw broken("is not for its key");
  }
  const unitName = `unit ${o.serial}`;
  const options = { identity, requireEncrypted: o.requireEncrypted, requireAuthenticated: o.requireAuthenticated, unitName };
  const ref = unit.key;
  if (ref.keystore === "soft") return { serial: o.serial, keystore: "soft", result: decryptWithKey(o.input, softRecipientKey(softKey!), options) };
  // The token is opened only when there is something to decrypt.
  let hsm: Hsm | undefined;
  try {
    const result = decryptWithKey(
      o.input,
      () => {
        if (!o.token?.tokenUri) {
          throw new DeviceError("UNIT_TOKEN_NEEDED", `unit ${o.serial}'s key is in a PKCS#11 token (${ref.object}): give the units' token (--pkcs11-token, or simulator.unitTokenUri of the home)`);
        }
        const token = parsePkcs11Uri(o.token.tokenUri);
        hsm = Hsm.open({ module: o.token.module, softhsmConf: o.token.softhsmConf, env: o.token.env });
        const keyUri = formatPkcs11Uri({ token: token.token, serial: token.serial, object: ref.object, type: "private", pinSource: token.pinSource });
        return tokenRecipientKey(hsm, keyUri, spki, unitName);
      },
      options,
    );
    return { serial: o.serial, keystore: "pkcs11", result };
  } finally {
    (hsm as Hsm | undefined)?.close();
  }
}
