import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import type { IssuedVoucher } from "./issue.js";

/**
 * An order's vouchers as files, DIR/SERIAL.vcj, written by libuv's threads while the next
 * batch is signed. Each file is created exclusively, in a directory the command made for
 * them and removes whole if anything fails, so no temporary-and-rename is needed to keep a
 * half-written voucher from being taken for a whole one.
 */
export function writeVoucherFiles(dir: string, vouchers: readonly IssuedVoucher[], encode: (der: Uint8Array) => string | Uint8Array): Promise<void> {
  return Promise.all(vouchers.map((v) => writeFile(join(dir, `${v.serial}.vcj`), encode(v.der), { flag: "wx" }))).then(() => undefined);
}
