import { describe, expect, it } from "vitest";
import { formatPkcs11Uri, parsePkcs11Uri, readPin } from "../../hsm/index.js";

describe("PKCS#11 URIs (RFC 7512)", () => {
  it("parses token, object, id, type and pin-source", () => {
    const u = parsePkcs11Uri("pkcs11:token=factory-ca;object=factory-ca-key;id=%01%02;type=private?pin-source=file:/run/pin");
    expect(u).toMatchObject({ token: "factory-ca", object: "factory-ca-key", type: "private", pinSource: "file:/run/pin" });
    expect([...u.id!]).toEqual([1, 2]);
  });

  it("round-trips through format, percent-encoding reserved characters", () => {
    const u = { token: "my token;x", object: "key/1", id: new Uint8Array([0xff, 0]), type: "private" as const, pinSource: "file:/a b" };
    expect(parsePkcs11Uri(formatPkcs11Uri(u))).toEqual(u);
  });

  it("refuses pin-value, unknown attributes, a missing token and a non-URI", () => {
    expect(() => parsePkcs11Uri("pkcs11:token=a;object=b?pin-value=1234")).toThrow(/pin-source=file/);
    expect(() => parsePkcs11Uri("pkcs11:token=a;colour=red")).toThrow(/unknown or empty attribute/);
    expect(() => parsePkcs11Uri("pkcs11:object=b")).toThrow(/names no token/);
    expect(() => parsePkcs11Uri("file:/etc/passwd")).toThrow(/not a PKCS#11 URI/);
    expect(() => parsePkcs11Uri("pkcs11:token=%zz")).toThrow(/percent-encoding/);
  });

  it("reads a PIN from env and refuses empty or missing sources", () => {
    expect(readPin("env:TEST_PIN", "t", { TEST_PIN: "1234" })).toBe("1234");
    expect(() => readPin("env:NOPE", "t", {})).toThrow(/NOPE/);
    expect(() => readPin(undefined, "t")).toThrow(/no pin-source/);
    expect(() => readPin("file:/nonexistent/pin", "t")).toThrow(/cannot read the PIN file/);
  });
});
