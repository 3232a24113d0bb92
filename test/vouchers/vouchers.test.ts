import { afterAll, beforeAll, describe, expect, it } from "vitest";
import Database from "better-sqlite3";
import { readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { idmintInProcess, lineHome, oneLineError, openssl, readJson, refusedWithoutOutput, scratch, type Run } from "../helpers.js";

/**
 * Ownership vouchers (RFC 8366) and the unit's side of SZTP (RFC 8572) on one real home:
 * `ca init` (with its MASA), three units through `station run --sim`, owners and their
 * conveyed information made by `openssl`, every voucher checked by `openssl cms -verify`.
 */
const s = scratch("vouchers");
let home: string;
const f = (name: string) => join(s.dir, name);
const cli = (...args: string[]): Promise<Run> => idmintInProcess(["--home", home, ...args]);
const ok = (r: Run, what: string) => {
  if (r.code !== 0) throw new Error(`${what}: exit ${r.code}: ${r.stderr}`);
  return r;
};
const must = (r: { code: number; stderr: string }, what: string) => {
  if (r.code !== 0) throw new Error(`${what}: ${r.stderr}`);
};
const VOUCHER_TYPE = "1.2.840.113549.1.9.16.1.40";
const INFO_TYPE = "1.2.840.113549.1.9.16.1.43";
const INFO = JSON.stringify({ "ietf-sztp-conveyed-info:onboarding-information": { "boot-image": { "os-name": "RouterOS", "os-version": "7.1" } } });

const derOf = (pem: string) => Buffer.from(readFileSync(pem, "utf8").replace(/-----[^-]+-----|\s/g, ""), "base64");

/** A self-signed EC certificate and key made by openssl, e.g. an owner's. */
function opensslCert(name: string, subject: string, extra: string[] = []): { cert: string; key: string } {
  const cert = f(`${name}.pem`);
  const key = f(`${name}.key`);
  must(openssl(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", key, "-subj", subject, "-days", "30", "-out", cert, ...extra]), `openssl req ${name}`);
  return { cert, key };
}

function cmsSign(input: string, signer: { cert: string; key: string }, type: string, out: string, extra: string[] = []): string {
  must(openssl(["cms", "-sign", "-in", input, "-signer", signer.cert, "-inkey", signer.key, "-binary", "-nodetach", "-outform", "DER", "-econtent_type", type, "-out", out, ...extra]), "openssl cms -sign");
  return out;
}

/** Another vendor's root and MASA, all openssl, and its voucher for SN000001 pinning the owner (`openssl cms -sign`). */
function foreignVoucher(): { root: string; voucher: string } {
  const ca = opensslCert("other-vendor", "/O=Other Vendor/CN=Other Vendor Root", ["-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign"]);
  const masa = { cert: f("other-masa.pem"), key: f("other-masa.key") };
  must(openssl(["req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", masa.key, "-subj", "/O=Other Vendor/CN=MASA", "-out", f("other-masa.csr")]), "masa csr");
  must(openssl(["x509", "-req", "-in", f("other-masa.csr"), "-CA", ca.cert, "-CAkey", ca.key, "-CAcreateserial", "-days", "30", "-out", masa.cert]), "masa cert");
  const pinned = derOf(owner.cert).toString("base64");
  writeFileSync(f("foreign.json"), JSON.stringify({ "ietf-voucher:voucher": { "created-on": "2026-01-01T00:00:00Z", assertion: "logged", "serial-number": "SN000001", "pinned-domain-cert": pinned } }));
  cmsSign(f("foreign.json"), masa, VOUCHER_TYPE, f("foreign.vcj"));
  return { root: ca.cert, voucher: f("foreign.vcj") };
}

let owner: { cert: string; key: string };
let foreign: { root: string; voucher: string };
let stranger: { cert: string; key: string };
let root: string;

beforeAll(async () => {
  const line = lineHome(s.dir, "vendor", 4);
  home = line.home;
  must(line.cli("station", "run", "--sim", "3"), "station run");
  root = join(home, "pki", "root.pem");
  owner = opensslCert("owner", "/O=Owner Inc/CN=owner");
  stranger = opensslCert("stranger", "/O=Stranger/CN=stranger");
  writeFileSync(f("info.json"), INFO);
  cmsSign(f("info.json"), owner, INFO_TYPE, f("info.cms"));
  foreign = foreignVoucher();
}, 120_000);
afterAll(() => s.cleanup());

describe("the MASA role", () => {
  it("ca init makes the voucher-signing key and a certificate from the vendor root, with no EKU", () => {
    const config = readJson<{ keys: Record<string, string> }>(join(home, "idmint.json"));
    expect(config.keys.masa).toMatch(/^pkcs11:token=allocation-signer;object=masa-key;type=private\?pin-source=file:/);
    const masa = join(home, "pki", "masa.pem");
    expect(openssl(["verify", "-CAfile", root, masa]).code).toBe(0);
    const text = openssl(["x509", "-in", masa, "-noout", "-text"]).stdout;
    expect(text).toMatch(/Digital Signature/);
    expect(text).not.toMatch(/Extended Key Usage/);
  });

  it("ca masa adds it to a home made before vouchers, and refuses a second one", async () => {
    const legacy = f("legacy");
    for (const step of [["hsm", "init"], ["ca", "init"]]) ok(await idmintInProcess(["--home", legacy, ...step]), step.join(" "));
    const configPath = join(legacy, "idmint.json");
    const config = readJson<{ keys: Record<string, string> }>(configPath);
    delete config.keys.masa;
    writeFileSync(configPath, JSON.stringify(config));
    rmSync(join(legacy, "pki", "masa.pem"));
    const noMasa = await idmintInProcess(["--home", legacy, "vouchers", "issue", "--serial", "SN000001", "--owner-cert", owner.cert, "--out", f("legacy.vcj")]);
    expect(noMasa.code).toBe(5);
    expect(oneLineError(noMasa)).toMatch(/no voucher-signing key .*idmint ca masa/);
    const key = config.keys.root!.replace("object=vendor-root-key", "object=late-masa-key");
    const r = ok(await idmintInProcess(["--home", legacy, "ca", "masa", "--key", key, "--json"]), "ca masa");
    expect(JSON.parse(r.stdout).key).toMatch(/object=late-masa-key/);
    expect(readJson<{ keys: Record<string, string> }>(configPath).keys.masa).toBe(key);
    expect(openssl(["verify", "-CAfile", join(legacy, "pki", "root.pem"), join(legacy, "pki", "masa.pem")]).code).toBe(0);
    const again = await idmintInProcess(["--home", legacy, "ca", "masa"]);
    expect(again.code).toBe(5);
    expect(oneLineError(again)).toMatch(/already has a MASA/);
  });
});

describe("idmint vouchers issue / verify", () => {
  it("signs a voucher that openssl cms -verify accepts against the vendor root, and records it in the ledger", async () => {
    const out = f("SN000001.vcj");
    const r = ok(await cli("vouchers", "issue", "--serial", "SN000001", "--owner-cert", owner.cert, "--out", out, "--json"), "issue");
    const fingerprint = JSON.parse(r.stdout).vouchers[0].fingerprint;
    const v = openssl(["cms", "-verify", "-inform", "DER", "-in", out, "-CAfile", root]);
    expect(v.code, v.stderr).toBe(0);
    const voucher = JSON.parse(v.stdout)["ietf-voucher:voucher"];
    expect(voucher["serial-number"]).toBe("SN000001");
    expect(voucher.assertion).toBe("verified");
    expect(Buffer.from(voucher["pinned-domain-cert"], "base64")).toEqual(derOf(owner.cert));
    expect(openssl(["cms", "-cmsout", "-print", "-inform", "DER", "-in", out]).stdout).toMatch(new RegExp(`eContentType: .*\\(${VOUCHER_TYPE.replaceAll(".", "\\.")}\\)`));
    const db = new Database(join(home, "station.db"), { readonly: true });
    try {
      const bodies = db.prepare("SELECT body FROM ledger_entries WHERE type = 'voucher.issued' AND serial = ?").pluck().all("SN000001") as Buffer[];
      expect(bodies.some((b) => b.toString().includes(fingerprint))).toBe(true);
    } finally {
      db.close();
    }
    expect(ok(await cli("ledger", "verify"), "ledger verify").code).toBe(0);
    const verified = ok(await cli("vouchers", "verify", out, "--root", root, "--serial", "SN000001", "--json"), "verify");
    expect(JSON.parse(verified.stdout).voucher.serialNumber).toBe("SN000001");
  });

  it("issues one voucher per provisioned unit of an order, each verified by openssl", async () => {
    const dir = f("po1");
    const r = ok(await cli("vouchers", "issue", "--order", "PO-1", "--owner-cert", owner.cert, "--expires-on", new Date(Date.now() + 86_400_000).toISOString(), "--out", dir, "--json"), "issue --order");
    expect(JSON.parse(r.stdout).issued).toBe(3);
    expect(readdirSync(dir).sort()).toEqual(["SN000001.vcj", "SN000002.vcj", "SN000003.vcj"]);
    for (const name of readdirSync(dir)) expect(openssl(["cms", "-verify", "-inform", "DER", "-in", join(dir, name), "-CAfile", root, "-out", "/dev/null"]).code).toBe(0);
  });

  it("--pem writes the voucher as PEM, which openssl and vouchers verify read", async () => {
    const out = f("SN000003.pem.vcj");
    ok(await cli("vouchers", "issue", "--serial", "SN000003", "--owner-cert", owner.cert, "--pem", "--out", out), "issue --pem");
    expect(readFileSync(out, "utf8")).toMatch(/^-----BEGIN CMS-----\n/);
    expect(openssl(["cms", "-verify", "-inform", "PEM", "-in", out, "-CAfile", root, "-out", "/dev/null"]).code).toBe(0);
    expect(ok(await cli("vouchers", "verify", out, "--root", root, "--serial", "SN000003"), "verify PEM").stdout).toMatch(/voucher for SN000003 verified/);
  });

  it("reads a voucher signed by openssl cms -sign, and refuses it against another root", async () => {
    const r = ok(await cli("vouchers", "verify", foreign.voucher, "--root", foreign.root, "--serial", "SN000001", "--json"), "verify openssl voucher");
    expect(JSON.parse(r.stdout).voucher).toMatchObject({ assertion: "logged", serialNumber: "SN000001" });
    const refused = await cli("vouchers", "verify", foreign.voucher, "--root", root);
    expect(refused.code).toBe(6);
    expect(oneLineError(refused)).toMatch(/does not chain to the vendor root/);
  });

  it("answers a voucher request's nonce instead of an expiry, never both", async () => {
    const out = f("nonce.vcj");
    ok(await cli("vouchers", "issue", "--serial", "SN000002", "--owner-cert", owner.cert, "--nonce", "cmFuZG9tIG5vbmNl", "--assertion", "logged", "--out", out), "issue --nonce");
    const voucher = JSON.parse(openssl(["cms", "-verify", "-inform", "DER", "-in", out, "-CAfile", root]).stdout)["ietf-voucher:voucher"];
    expect(voucher).toMatchObject({ nonce: "cmFuZG9tIG5vbmNl", assertion: "logged", "serial-number": "SN000002" });
    expect(voucher["expires-on"]).toBeUndefined();
    const both = f("both.vcj");
    expect(refusedWithoutOutput(await cli("vouchers", "issue", "--serial", "SN000002", "--owner-cert", owner.cert, "--nonce", "cmFuZG9t", "--expires-on", "2099-01-01T00:00:00Z", "--out", both), 2, both)).toMatch(/do not go together/);
  });

  it("refuses a unit it did not provision, an expiry in the past, and --serial with --order, writing nothing", async () => {
    const out = f("refused.vcj");
    expect(refusedWithoutOutput(await cli("vouchers", "issue", "--serial", "SN000004", "--owner-cert", owner.cert, "--out", out), 3, out)).toMatch(/SN000004 was not provisioned/);
    expect(refusedWithoutOutput(await cli("vouchers", "issue", "--serial", "SN000001", "--owner-cert", owner.cert, "--expires-on", "2020-01-01T00:00:00Z", "--out", out), 2, out)).toMatch(/not in the future/);
    expect(refusedWithoutOutput(await cli("vouchers", "issue", "--serial", "SN000001", "--order", "PO-1", "--owner-cert", owner.cert, "--out", out), 2, out)).toMatch(/not both/);
    expect(refusedWithoutOutput(await cli("vouchers", "issue", "--order", "PO-9", "--owner-cert", owner.cert, "--out", out), 3, out)).toMatch(/no provisioned unit/);
  });
});

describe("idmint unit bootstrap", () => {
  const bootstrap = (serial: string, voucher: string, info: string, extra: string[] = [], env?: NodeJS.ProcessEnv) =>
    idmintInProcess(["--home", home, "unit", "bootstrap", "--serial", serial, "--voucher", voucher, "--owner-cert", owner.cert, "--info", info, ...extra], { env });
  let voucher: string;

  beforeAll(async () => {
    voucher = f("boot-SN000001.vcj");
    ok(await cli("vouchers", "issue", "--serial", "SN000001", "--owner-cert", owner.cert, "--expires-on", new Date(Date.now() + 86_400_000).toISOString(), "--out", voucher), "issue");
  });

  it("accepts the owner's signed conveyed information and writes its content", async () => {
    const out = f("onboarding.json");
    const r = ok(await bootstrap("SN000001", voucher, f("info.cms"), ["--require-signed", "--out", out, "--json"]), "bootstrap signed");
    expect(JSON.parse(r.stdout).conveyedInformation).toMatchObject({ signed: true, encrypted: false, format: "json" });
    expect(readFileSync(out, "utf8")).toBe(INFO);
  });

  it("accepts signed conveyed information encrypted to the unit's IDevID with openssl cms -encrypt", async () => {
    must(openssl(["cms", "-encrypt", "-in", f("info.cms"), "-binary", "-outform", "DER", "-aes256", "-out", f("info.enc"), join(home, "certs", "SN000001.pem")]), "openssl cms -encrypt");
    const out = f("onboarding-enc.json");
    const r = ok(await bootstrap("SN000001", voucher, f("info.enc"), ["--require-signed", "--out", out, "--json"]), "bootstrap encrypted");
    expect(JSON.parse(r.stdout).conveyedInformation).toMatchObject({ signed: true, encrypted: true });
    expect(readFileSync(out, "utf8")).toBe(INFO);
  });

  it("accepts unsigned information unless --require-signed", async () => {
    expect(JSON.parse(ok(await bootstrap("SN000001", voucher, f("info.json"), ["--json"]), "unsigned").stdout).conveyedInformation.signed).toBe(false);
  });

  describe("refuses, each with one line and exit 6", () => {
    const refused = async (r: Promise<Run>, reason: RegExp) => {
      const run = await r;
      expect(run.code, run.stderr).toBe(6);
      expect(oneLineError(run)).toMatch(reason);
    };

    it("a voucher for another serial", async () => {
      await refused(bootstrap("SN000002", voucher, f("info.cms")), /is for serial SN000001, not SN000002/);
    });

    it("an expired voucher", async () => {
      await refused(bootstrap("SN000001", voucher, f("info.cms"), [], { IDMINT_NOW: new Date(Date.now() + 2 * 86_400_000).toISOString() }), /expired on/);
    });

    it("a voucher signed by a key outside the vendor root", async () => {
      await refused(bootstrap("SN000001", foreign.voucher, f("info.cms")), /does not chain to the vendor root/);
    });

    it("a tampered voucher", async () => {
      const der = readFileSync(voucher);
      const at = der.indexOf("SN000001");
      der[at + 7] = "9".charCodeAt(0);
      writeFileSync(f("tampered.vcj"), der);
      await refused(bootstrap("SN000001", f("tampered.vcj"), f("info.cms")), /signature does not verify \(the content was changed\)/);
    });

    it("an owner certificate the voucher does not pin", async () => {
      const r = idmintInProcess(["--home", home, "unit", "bootstrap", "--serial", "SN000001", "--voucher", voucher, "--owner-cert", stranger.cert, "--info", f("info.cms")]);
      await refused(r, /is not the voucher's pinned-domain-cert/);
    });

    it("conveyed information signed by another key", async () => {
      cmsSign(f("info.json"), stranger, INFO_TYPE, f("info-stranger.cms"));
      await refused(bootstrap("SN000001", voucher, f("info-stranger.cms")), /signed by .*stranger.*, not by the owner certificate/);
    });

    it("unsigned information with --require-signed", async () => {
      const out = f("never.json");
      expect(refusedWithoutOutput(await bootstrap("SN000001", voucher, f("info.json"), ["--require-signed", "--out", out]), 6, out)).toMatch(/not signed by the owner/);
    });
  });
});

/**
 * sztpd's running datastore as its documentation and templates show it (wn-sztpd-1 devices
 * and device types, an ietf-truststore bag whose cert-data is a certificates-only CMS): the
 * shape an export must have, key for key.
 */
const SZTPD_RUNNING_TEMPLATE = {
  "wn-sztpd-1:devices": { device: [{ "serial-number": "my-serial-number", "device-type": "my-device-type", "activation-code": "my-secret" }] },
  "wn-sztpd-1:device-types": {
    "device-type": [
      {
        name: "my-device-type",
        "identity-certificates": {
          verification: { "local-truststore-reference": { "certificate-bag": "my-device-identity-ca-certs", certificate: "my-device-identity-ca-cert" } },
          "serial-number-extraction": "wn-x509-c2n:serial-number",
        },
      },
    ],
  },
  "ietf-truststore:truststore": {
    "certificate-bags": { "certificate-bag": [{ name: "my-device-identity-ca-certs", description: "...", certificate: [{ name: "my-device-identity-ca-cert", "cert-data": "BASE64VALUE=" }] }] },
  },
};

/** The JSON shape: objects by their keys, arrays by their items' shapes, leaves by type. */
function shape(value: unknown): unknown {
  if (Array.isArray(value)) return [...new Set(value.map((v) => JSON.stringify(shape(v))))].map((s) => JSON.parse(s));
  if (value !== null && typeof value === "object") return Object.fromEntries(Object.entries(value).sort(([a], [b]) => a.localeCompare(b)).map(([k, v]) => [k, shape(v)]));
  return typeof value;
}

describe("idmint export sztpd", () => {
  it("writes the order's units and the vendor CA chain in sztpd's running-datastore shape", async () => {
    writeFileSync(f("sztpd-template.json"), JSON.stringify(SZTPD_RUNNING_TEMPLATE));
    const out = f("po1-sztpd.json");
    const r = ok(await cli("export", "sztpd", "--order", "PO-1", "--out", out, "--json"), "export sztpd");
    expect(JSON.parse(r.stdout)).toMatchObject({ devices: 3, deviceTypes: ["RT-1"] });
    const doc = readJson<typeof SZTPD_RUNNING_TEMPLATE>(out);
    expect(shape(doc)).toEqual(shape(readJson(f("sztpd-template.json"))));
    expect(doc["wn-sztpd-1:devices"].device.map((d) => d["serial-number"])).toEqual(["SN000001", "SN000002", "SN000003"]);
    const ref = doc["wn-sztpd-1:device-types"]["device-type"][0]!["identity-certificates"].verification["local-truststore-reference"];
    const bag = doc["ietf-truststore:truststore"]["certificate-bags"]["certificate-bag"].find((b) => b.name === ref["certificate-bag"])!;
    writeFileSync(f("bag.der"), Buffer.from(bag.certificate.find((c) => c.name === ref.certificate)!["cert-data"], "base64"));
    const certs = openssl(["pkcs7", "-inform", "DER", "-in", f("bag.der"), "-print_certs"]);
    expect(certs.stdout).toMatch(/subject=.*Factory CA[\s\S]*subject=.*Root CA/);
    writeFileSync(f("bag-certs.pem"), certs.stdout);
    expect(openssl(["verify", "-CAfile", f("bag-certs.pem"), join(home, "certs", "SN000002.pem")]).code).toBe(0);
  });

  it("refuses an order with no provisioned unit", async () => {
    const out = f("none.json");
    expect(refusedWithoutOutput(await cli("export", "sztpd", "--order", "PO-404", "--out", out), 3, out)).toMatch(/no provisioned unit/);
  });
});

describe("--help", () => {
  it("every new command has an example", async () => {
    for (const cmd of [["vouchers", "issue"], ["vouchers", "verify"], ["export", "sztpd"], ["unit", "bootstrap"], ["ca", "masa"]]) {
      const r = await idmintInProcess([...cmd, "--help"]);
      expect(r.code, cmd.join(" ")).toBe(0);
      expect(r.stdout, cmd.join(" ")).toMatch(/Examples:/);
    }
  });
});
