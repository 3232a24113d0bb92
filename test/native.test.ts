import { describe, expect, it } from "vitest";
import Database from "better-sqlite3";
import pkcs11js from "pkcs11js";

// npm may skip dependency install scripts (allowScripts); a native module that silently did
// not build must fail here, loudly, rather than deep inside another test.
describe("native modules", () => {
  it("better-sqlite3 loads and runs SQL", () => {
    const db = new Database(":memory:");
    expect(db.prepare("SELECT sqlite_version() AS v").get()).toMatchObject({ v: expect.any(String) });
    db.close();
  });

  it("pkcs11js loads with its CK* constants (default import, see STACK.md)", () => {
    expect(typeof pkcs11js.PKCS11).toBe("function");
    expect(pkcs11js.CKF_OS_LOCKING_OK).toBe(2);
    expect(pkcs11js.CKM_ECDSA).toBe(0x1041);
  });
});
