import { Hsm, type HsmOptions } from "./pkcs11/hsm.js";

/** Opens the HSM, runs `fn`, and always closes it again, whatever `fn` did. */
export async function withHsm<T>(options: HsmOptions, fn: (hsm: Hsm) => Promise<T> | T): Promise<T> {
  const hsm = Hsm.open(options);
  try {
    return await fn(hsm);
  } finally {
    hsm.close();
  }
}
