import { assertSerialSyntax } from "../pki/index.js";
import { DeviceError } from "./errors.js";
import { softUnitKey, withUnitFlash } from "./store.js";

/** What `idmint unit export` takes out of a simulated unit. */
export type UnitPart = "key" | "cert" | "chain";

/**
 * A simulated unit's private key (PKCS#8 PEM; soft keystore only), certificate or chain (PEM),
 * for tools that want files, such as `openssl cms -decrypt -inkey`. A key in a PKCS#11 token
 * never leaves it.
 */
export function exportUnitPart(unitsDir: string, serial: string, part: UnitPart): string {
  assertSerialSyntax(serial);
  return withUnitFlash(unitsDir, (flash) => {
    const unit = flash?.read(serial);
    if (!unit) throw new DeviceError("UNIT_UNKNOWN", `there is no unit ${serial} in ${unitsDir}: check the serial and --home (simulated units live in HOME/units/units.db)`);
    if (!unit.key) throw new DeviceError("UNIT_NOT_READY", `unit ${serial} has no key yet: provision it first (idmint station run)`);
    if (part === "key") {
      if (unit.key.keystore === "pkcs11") {
        throw new DeviceError(
          "KEY_IN_TOKEN",
          `unit ${serial}'s key is object ${unit.key.object} in a PKCS#11 token and never leaves it: decrypt with \`idmint unit decrypt --serial ${serial}\`, or use the key in the token through PKCS#11`,
        );
      }
      return softUnitKey(flash!, serial).export({ type: "pkcs8", format: "pem" }) as string;
    }
    if (unit.state !== "provisioned") throw new DeviceError("UNIT_NOT_READY", `unit ${serial} has no certificate yet: provision it first (idmint station run)`);
    return part === "cert" ? unit.certificate! : unit.chain!;
  });
}
