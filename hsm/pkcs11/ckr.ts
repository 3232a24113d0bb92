import pkcs11js from "pkcs11js";

// Kept apart from errors.ts so that a signing thread (pool-worker.ts) loads no more than pkcs11js.
const CKR_NAMES = new Map<number, string>(
  Object.entries(pkcs11js)
    .filter(([name, value]) => name.startsWith("CKR_") && typeof value === "number")
    .map(([name, value]) => [value as number, name]),
);

/** The CKR_* name and number of a pkcs11js error, if it is one. */
export function ckr(e: unknown): { name: string; code: number } | undefined {
  if (!(e instanceof Error)) return undefined;
  const code = (e as { code?: unknown }).code;
  if (typeof code === "number" && CKR_NAMES.has(code)) return { name: CKR_NAMES.get(code)!, code };
  const m = /(CKR_[A-Z_]+)/.exec(e.message);
  return m ? { name: m[1]!, code: typeof code === "number" ? code : -1 } : undefined;
}
