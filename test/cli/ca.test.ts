import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createHash } from "node:crypto";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import Database from "better-sqlite3";
import { x509 } from "../../pki/index.js";
import { PKCS11_SPY, idmint, idmintInProcess, oneLineError, openssl, readJson, run, scratch, type Run } from "../helpers.js";

const s = scratch("ca");
const home = join(s.dir, "home");
const pki = join(home, "pki");
const cli = (...args: string[]): Promise<Run> => idmintInProcess(["--home", home, ...args]);
const sha = (p: string) => createHash("sha256").update(readFileSync(p)).digest("hex");

function csr(name: string, newkey: string[], subject: string): string {
  const out = join(s.dir, `${name}.csr`);
  const r = openssl(["req", "-new", ...newkey, "-nodes", "-keyout", join(s.dir, `${name}.key`), "-subj", subject, "-out", out]);
  if (r.code !== 0) throw new Error(r.stderr);
  return out;
}

/** Runs `fn` with idmint.json edited by `edit`, then puts the original back. */
async function withConfig<T>(edit: (c: Record<string, any>) => void, fn: () => Promise<T> | T): Promise<T> {
  const path = join(home, "idmint.json");
  const original = readFileSync(path, "utf8");
  const c = JSON.parse(original);
  edit(c);
  writeFileSync(path, JSON.stringify(c));
  try {
    return await fn();
  } finally {
    writeFileSync(path, original);
  }
}

/** The ledger's entries about `serial`, oldest first: type and fields. */
function ledgerOf(serial: string): Array<{ type: string } & Record<string, unknown>> {
  const db = new Database(join(home, "station.db"), { readonly: true });
  try {
    const bodies = db.prepare("SELECT body FROM ledger_entries WHERE serial = ? ORDER BY idx").pluck().all(serial) as Buffer[];
    return bodies.map((b) => {
      const text = b.toString("utf8");
      return { type: text.split(" ")[2]!, ...JSON.parse(text.slice(text.indexOf("\n") + 1)) };
    });
  } finally {
    db.close();
  }
}

function ledgerSize(): number {
  const db = new Database(join(home, "station.db"), { readonly: true });
  try {
    return db.prepare("SELECT COUNT(*) FROM ledger_entries").pluck().get() as number;
  } finally {
    db.close();
  }
}

beforeAll(async () => {
  for (const args of [["hsm", "init"], ["ca", "init"]]) {
    const r = await cli(...args);
    if (r.code !== 0) throw new Error(`${args.join(" ")}: ${r.stderr}`);
  }
  // SN000101..SN000120 are this station's; SN000001 is in no allocation.
  const list = join(s.dir, "allocation.json");
  for (const args of [
    ["serials", "allocate", "--order", "PO-ca", "--station", "station-1", "--model", "RT-1", "--count", "20", "--prefix", "SN", "--start", "101", "--out", list],
    ["serials", "import", list],
  ]) {
    const r = await cli(...args);
    if (r.code !== 0) throw new Error(`${args.join(" ")}: ${r.stderr}`);
  }
});
afterAll(() => s.cleanup());

describe("idmint ca init", () => {
  it("writes the four certificates and they chain to the root", () => {
    for (const f of ["root", "factory-ca", "allocation-signer", "station"]) expect(existsSync(join(pki, `${f}.pem`))).toBe(true);
    const r = openssl(["verify", "-CAfile", "root.pem", "factory-ca.pem", "allocation-signer.pem", "station.pem"], { cwd: pki });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toBe("factory-ca.pem: OK\nallocation-signer.pem: OK\nstation.pem: OK\n");
    const text = openssl(["x509", "-in", "factory-ca.pem", "-noout", "-text"], { cwd: pki }).stdout;
    expect(text).toMatch(/CA:TRUE, pathlen:0/);
    expect(openssl(["x509", "-in", "root.pem", "-noout", "-text"], { cwd: pki }).stdout).toMatch(/CA:TRUE, pathlen:1/);
    expect(openssl(["x509", "-in", "station.pem", "-noout", "-subject"], { cwd: pki }).stdout).toMatch(/CN = station-1/);
  });

  it("refuses a second ceremony and changes nothing", async () => {
    const before = ["root", "factory-ca", "allocation-signer", "station"].map((f) => sha(join(pki, `${f}.pem`)));
    const r = await cli("ca", "init");
    expect(r.code).toBe(5);
    expect(oneLineError(r)).toMatch(/already exists.*new --home/);
    expect(["root", "factory-ca", "allocation-signer", "station"].map((f) => sha(join(pki, `${f}.pem`)))).toEqual(before);
  });

  it("refuses a second hsm init", async () => {
    const r = await cli("hsm", "init");
    expect(r.code).toBe(5);
    expect(oneLineError(r)).toMatch(/already initialised/);
  });

  it("keeps the CA keys sensitive and non-extractable (hsm list and pkcs11-tool agree)", async () => {
    const r = await cli("hsm", "list", "--json");
    expect(r.code, r.stderr).toBe(0);
    const listed = JSON.parse(r.stdout) as { keys: Array<{ role: string; label: string; sensitive: boolean; extractable: boolean; algorithm: string }> };
    expect(listed.keys.map((k) => k.role).sort()).toEqual(["allocationSigner", "factoryCa", "masa", "root", "station"]);
    for (const k of listed.keys) expect(k).toMatchObject({ sensitive: true, extractable: false });
    const config = readJson<{ hsm: { module: string; softhsmConf: string } }>(join(home, "idmint.json"));
    for (const token of ["vendor-root", "factory-ca"]) {
      const pin = readFileSync(join(home, "hsm", "pins", `${token}.pin`), "utf8").trim();
      const t = run("pkcs11-tool", ["--module", config.hsm.module, "--token-label", token, "--login", "--pin", "env:IDMINT_TEST_PIN", "-O", "--type", "privkey"], {
        env: { ...process.env, SOFTHSM2_CONF: config.hsm.softhsmConf, IDMINT_TEST_PIN: pin },
      });
      expect(t.code, t.stderr).toBe(0);
      expect(t.stdout).toMatch(/Access:\s+sensitive, always sensitive, never extractable, local/);
    }
  });
});

describe("idmint ca issue", () => {
  function sanDump(certPath: string): string {
    const dump = openssl(["asn1parse", "-in", certPath]).stdout.split("\n");
    const i = dump.findIndex((l) => l.includes("X509v3 Subject Alternative Name"));
    const offset = /^\s*(\d+):/.exec(dump[i + 1]!)![1]!;
    return openssl(["asn1parse", "-in", certPath, "-strparse", offset]).stdout;
  }

  for (const [label, serial, newkey, usage] of [
    ["P-256", "SN000101", ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"], "Digital Signature, Key Agreement"],
    ["RSA-2048", "SN000102", ["-newkey", "rsa:2048"], "Digital Signature, Key Encipherment"],
  ] as const) {
    it(`issues an 802.1AR IDevID for an openssl ${label} CSR that openssl verifies`, async () => {
      const req = csr(label, [...newkey], `/serialNumber=${serial}/CN=unit ${label}`);
      const out = join(s.dir, `${label}.pem`);
      const r = await cli("ca", "issue", "--csr", req, "--serial", serial, "--out", out, "--json");
      expect(r.code, r.stderr).toBe(0);
      expect(JSON.parse(r.stdout)).toMatchObject({ serial, out });

      const v = openssl(["verify", "-CAfile", join(pki, "root.pem"), "-untrusted", join(pki, "factory-ca.pem"), out]);
      expect(v.code, v.stderr).toBe(0);
      const asn = openssl(["asn1parse", "-in", out]).stdout;
      expect(asn).toMatch(/GENERALIZEDTIME\s+:99991231235959Z/);
      expect(asn).toMatch(/OBJECT\s+:serialNumber\n.*PRINTABLESTRING\s+:SN/);
      const text = openssl(["x509", "-in", out, "-noout", "-text", "-nameopt", "RFC2253"]).stdout;
      expect(text).toContain(`serialNumber=${serial}`);
      expect(text).toMatch(new RegExp(`Key Usage: critical\\s+${usage}`));
      expect(text).toMatch(/Basic Constraints:\s+CA:FALSE/);
      expect(text).toMatch(/Authority Key Identifier/);
      expect(text).not.toMatch(/CRL Distribution|OCSP/);
      const san = sanDump(out);
      expect(san).toMatch(/OBJECT\s+:1\.3\.6\.1\.5\.5\.7\.8\.4/);
      expect(san).toMatch(/OBJECT\s+:1\.3\.6\.1\.4\.1\.32473\.1\.1/);
      expect(san).toContain(`OCTET STRING      :${serial}`);
    });
  }

  describe("refuses bad input with one line, a non-zero exit and nothing written", () => {
    const good = () => csr("good", ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"], "/serialNumber=SN000001/CN=unit");
    const attempt = async (name: string, args: string[], expectedCode: number, message: RegExp) => {
      const out = join(s.dir, `${name}.out.pem`);
      const r = await cli("ca", "issue", ...args, "--out", out);
      expect(r.code, r.stderr).toBe(expectedCode);
      expect(oneLineError(r)).toMatch(message);
      expect(r.stdout).toBe("");
      expect(existsSync(out)).toBe(false);
    };

    it("a CSR with a bad signature", async () => {
      const der = join(s.dir, "bad-sig.der");
      expect(openssl(["req", "-in", good(), "-outform", "DER", "-out", der]).code).toBe(0);
      const bytes = readFileSync(der);
      bytes[bytes.length - 3] = bytes[bytes.length - 3]! ^ 0x01;
      writeFileSync(der, bytes);
      await attempt("bad-sig", ["--csr", der, "--serial", "SN000001"], 6, /self-signature does not verify/);
    });

    it("a CSR whose serial differs from --serial", async () => {
      await attempt("mismatch", ["--csr", good(), "--serial", "SN000002"], 3, /serialNumber SN000001, not SN000002/);
    });

    it("a CSR with an RSA-1024 key", async () => {
      await attempt("rsa1024", ["--csr", csr("rsa1024", ["-newkey", "rsa:1024"], "/serialNumber=SN000001"), "--serial", "SN000001"], 3, /RSA-1024, which is refused/);
    });

    it("a CSR with a P-192 key", async () => {
      const req = csr("p192", ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-192"], "/serialNumber=SN000001");
      await attempt("p192", ["--csr", req, "--serial", "SN000001"], 3, /curve prime192v1, which is refused/);
    });

    it("a file that is not a CSR, and a CSR file that does not exist", async () => {
      const junk = join(s.dir, "junk.csr");
      writeFileSync(junk, "hello");
      await attempt("junk", ["--csr", junk, "--serial", "SN000001"], 3, /not a PKCS#10 request/);
      await attempt("nofile", ["--csr", join(s.dir, "absent.csr"), "--serial", "SN000001"], 3, /does not exist/);
    });

    it("a serial with characters outside the allowed set", async () => {
      await attempt("badserial", ["--csr", good(), "--serial", "SN 1/../x"], 3, /serial "SN 1\/..\/x" is not valid/);
    });

    // The real binary: pkcs11-spy reads PKCS11SPY from the process environment, not from Io.env.
    // It is also this file's check of the binary's contract: the exit code, one line, no stack trace.
    it("a wrong PIN: one login attempt, no retry", async () => {
      const pinPath = join(home, "hsm", "pins", "factory-ca.pin");
      const pin = readFileSync(pinPath, "utf8");
      const log = join(s.dir, "spy.log");
      const spy = PKCS11_SPY;
      const realModule = readJson<{ hsm: { module: string } }>(join(home, "idmint.json")).hsm.module;
      writeFileSync(pinPath, "0000\n");
      try {
        const req = good();
        await withConfig(
          (c) => {
            // OpenSC's pkcs11-spy sits between idmint and SoftHSM and logs every call.
            if (spy) c.hsm.module = spy;
          },
          () => {
            const out = join(s.dir, "wrongpin.pem");
            const r = idmint(["--home", home, "ca", "issue", "--csr", req, "--serial", "SN000001", "--out", out], {
              env: { PKCS11SPY: realModule, PKCS11SPY_OUTPUT: log },
            });
            expect(r.code).toBe(4);
            expect(oneLineError(r)).toMatch(/wrong PIN for token factory-ca.*will not retry/);
            expect(existsSync(out)).toBe(false);
          },
        );
      } finally {
        writeFileSync(pinPath, pin);
      }
      if (spy) {
        const calls = readFileSync(log, "utf8").match(/^\d+: C_Login$/gm) ?? [];
        expect(calls).toHaveLength(1);
      }
    });

    it("a missing token", async () => {
      await withConfig(
        (c) => (c.keys.factoryCa = c.keys.factoryCa.replace("token=factory-ca", "token=unplugged")),
        () => attempt("notoken", ["--csr", good(), "--serial", "SN000001"], 4, /no token unplugged/),
      );
    });

    it("a missing PKCS#11 module", async () => {
      await withConfig(
        (c) => (c.hsm.module = "/nonexistent/libpkcs11.so"),
        () => attempt("nomodule", ["--csr", good(), "--serial", "SN000001"], 4, /module \/nonexistent\/libpkcs11.so does not exist/),
      );
    });

    it("an --out that already exists", async () => {
      const out = join(s.dir, "exists.pem");
      writeFileSync(out, "keep me");
      const r = await cli("ca", "issue", "--csr", good(), "--serial", "SN000001", "--out", out);
      expect(r.code).toBe(3);
      expect(oneLineError(r)).toMatch(/already exists/);
      expect(readFileSync(out, "utf8")).toBe("keep me");
    });

    it("a home that was never initialised, and a missing option", async () => {
      const r = await idmintInProcess(["--home", join(s.dir, "nowhere"), "ca", "issue", "--csr", good(), "--serial", "SN000001", "--out", join(s.dir, "x.pem")]);
      expect(r.code).toBe(5);
      expect(oneLineError(r)).toMatch(/idmint hsm init/);
      const u = await cli("ca", "issue", "--csr", good(), "--out", join(s.dir, "y.pem"));
      expect(u.code).toBe(2);
      expect(oneLineError(u)).toMatch(/Missing required argument: serial/);
    });
  });
});

describe("idmint ca issue goes through the line's issue path", () => {
  const p256 = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"];
  /** A CSR for `serial` with `key` (a key file of an earlier CSR) or a new P-256 key. */
  const request = (name: string, serial: string, key?: string) =>
    key === undefined ? csr(name, p256, `/serialNumber=${serial}`) : csrWithKey(name, key, serial);
  function csrWithKey(name: string, key: string, serial: string): string {
    const out = join(s.dir, `${name}.csr`);
    const r = openssl(["req", "-new", "-key", join(s.dir, `${key}.key`), "-subj", `/serialNumber=${serial}`, "-out", out]);
    if (r.code !== 0) throw new Error(r.stderr);
    return out;
  }
  const issue = (req: string, serial: string, out: string, ...extra: string[]) => cli("ca", "issue", "--csr", req, "--serial", serial, "--out", out, ...extra);
  const outbox = (): string[] => {
    const db = new Database(join(home, "station.db"), { readonly: true });
    try {
      return db.prepare("SELECT serial FROM outbox ORDER BY serial").pluck().all() as string[];
    } finally {
      db.close();
    }
  };

  it("an --out it cannot write is refused before anything is signed: exit 3, one line, nothing in the ledger, no file", async () => {
    const aFile = join(s.dir, "a-regular-file");
    writeFileSync(aFile, "not a directory");
    const req = request("unwritable", "SN000103");
    const before = ledgerSize();
    for (const out of [join(aFile, "SN000103.pem"), join(aFile, "deeper", "SN000103.pem"), "/proc/idmint-SN000103.pem"]) {
      const r = await issue(req, "SN000103", out);
      expect(r.code, r.stderr).toBe(3);
      expect(oneLineError(r)).toMatch(out.startsWith("/proc") ? /--out \/proc\/\S+ cannot be written \(ENOENT\): give a new path in a writable directory/ : /--out \S+ cannot be written \(part of its path is a file, not a directory\)/);
      expect(existsSync(out)).toBe(false);
    }
    // The binary's own contract for the same mistake: no exit 70.
    const bin = idmint(["--home", home, "ca", "issue", "--csr", req, "--serial", "SN000103", "--out", "/proc/idmint-SN000103.pem"]);
    expect(bin.code).toBe(3);
    expect(oneLineError(bin)).toMatch(/cannot be written/);
    expect(ledgerSize()).toBe(before);
    expect(ledgerOf("SN000103")).toEqual([]);
  });

  it("a refused issue leaves nothing behind, not even the directories made for --out", async () => {
    const dir = join(s.dir, "made-for-nothing");
    const before = ledgerSize();
    const r = await issue(request("unallocated", "SN000001"), "SN000001", join(dir, "sub", "SN000001.pem"));
    expect(r.code).toBe(6);
    expect(oneLineError(r)).toMatch(/serial SN000001 is in no imported allocation/);
    expect(existsSync(dir)).toBe(false);
    expect(ledgerSize()).toBe(before);
    expect(ledgerOf("SN000001")).toEqual([]);
  });

  it("an issued unit is provisioned, delivered as its --out file and queued for the directory, like the line's", async () => {
    const out = join(s.dir, "new-dir", "SN000104.pem");
    const r = await issue(request("sn104", "SN000104"), "SN000104", out, "--json");
    expect(r.code, r.stderr).toBe(0);
    const fingerprint = createHash("sha256").update(new Uint8Array(new x509.X509Certificate(readFileSync(out, "utf8")).rawData)).digest("hex");
    expect(JSON.parse(r.stdout)).toEqual({ serial: "SN000104", certificateSerial: expect.stringMatching(/^[0-9a-f]{32}$/i), fingerprint, out, keyType: "EC-P256" });
    expect(ledgerOf("SN000104").map((e) => e.type)).toEqual(["serial.reserved", "signing.intent", "certificate.issued", "unit.delivered"]);
    expect(ledgerOf("SN000104")[3]).toMatchObject({ certificateFingerprint: fingerprint });
    expect(outbox()).toContain("SN000104");
    const status = JSON.parse((await cli("serials", "status", "--json")).stdout);
    expect(status.allocations[0]).toMatchObject({ allocated: 20, provisioned: 3, reserved: 0 });
  });

  it("the same serial twice: the second is refused, one certificate only", async () => {
    const first = join(s.dir, "SN000105-a.pem");
    const second = join(s.dir, "SN000105-b.pem");
    expect((await issue(request("sn105a", "SN000105"), "SN000105", first)).code).toBe(0);
    const r = await issue(request("sn105b", "SN000105"), "SN000105", second);
    expect(r.code).toBe(6);
    expect(oneLineError(r)).toMatch(/serial SN000105 is already provisioned/);
    expect(existsSync(second)).toBe(false);
    expect(ledgerOf("SN000105").filter((e) => e.type === "certificate.issued")).toHaveLength(1);
  });

  it("one key under two serials: the second serial is refused and nothing is recorded for it", async () => {
    expect((await issue(request("sn106", "SN000106"), "SN000106", join(s.dir, "SN000106.pem"))).code).toBe(0);
    const out = join(s.dir, "SN000107.pem");
    const r = await issue(request("sn107", "SN000107", "sn106"), "SN000107", out);
    expect(r.code).toBe(6);
    expect(oneLineError(r)).toMatch(/unit SN000107 presented the public key unit SN000106 already presented/);
    expect(existsSync(out)).toBe(false);
    expect(ledgerOf("SN000107")).toEqual([]);
    // The serial itself is still free for its own unit.
    expect((await issue(request("sn107-own", "SN000107"), "SN000107", out)).code).toBe(0);
  });

  it("--outside-allocation --reason: a lab unit, declared in the ledger before its intent; one certificate a serial and a key once still hold", async () => {
    const out = join(s.dir, "LAB0001.pem");
    const r = await issue(request("lab1", "LAB0001"), "LAB0001", out, "--outside-allocation", "--reason", "EMC test sample");
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/outside every allocation/);
    expect(openssl(["verify", "-CAfile", join(pki, "root.pem"), "-untrusted", join(pki, "factory-ca.pem"), out]).code).toBe(0);
    const entries = ledgerOf("LAB0001");
    expect(entries.map((e) => e.type)).toEqual(["serial.outside-allocation", "signing.intent", "certificate.issued", "unit.delivered"]);
    expect(entries[0]).toMatchObject({ reason: "EMC test sample" });
    // The directory publishes allocated serials only: a lab unit is not queued for it.
    expect(outbox()).not.toContain("LAB0001");

    const again = await issue(request("lab1b", "LAB0001"), "LAB0001", join(s.dir, "LAB0001-b.pem"), "--outside-allocation", "--reason", "again");
    expect(again.code).toBe(6);
    expect(oneLineError(again)).toMatch(/serial LAB0001 is already provisioned/);
    const reused = await issue(request("lab2", "LAB0002", "lab1"), "LAB0002", join(s.dir, "LAB0002.pem"), "--outside-allocation", "--reason", "same key");
    expect(reused.code).toBe(6);
    expect(oneLineError(reused)).toMatch(/presented the public key unit LAB0001 already presented/);
    expect(ledgerOf("LAB0002")).toEqual([]);

    const allocated = await issue(request("sn108", "SN000108"), "SN000108", join(s.dir, "SN000108.pem"), "--outside-allocation", "--reason", "lab");
    expect(allocated.code).toBe(3);
    expect(oneLineError(allocated)).toMatch(/serial SN000108 is in allocation .*: issue it without --outside-allocation/);
    const noReason = await issue(request("lab3", "LAB0003"), "LAB0003", join(s.dir, "LAB0003.pem"), "--outside-allocation");
    expect(noReason.code).toBe(2);
    expect(oneLineError(noReason)).toMatch(/reason/);
    const blank = await issue(request("lab3", "LAB0003"), "LAB0003", join(s.dir, "LAB0003.pem"), "--outside-allocation", "--reason", " ");
    expect(blank.code).toBe(2);
    expect(oneLineError(blank)).toMatch(/--reason must say why/);
    expect(ledgerOf("LAB0003")).toEqual([]);
  });
});

describe("--help and --json", () => {
  it("every command has help with an example", async () => {
    for (const cmd of [["hsm", "init"], ["hsm", "list"], ["ca", "init"], ["ca", "issue"]]) {
      const r = await idmintInProcess([...cmd, "--help"]);
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout).toMatch(/Examples:/);
    }
  });

  it("a failure with --json prints one JSON document on stdout", async () => {
    const r = await cli("ca", "init", "--json");
    expect(r.code).toBe(5);
    expect(JSON.parse(r.stdout)).toMatchObject({ ok: false, error: { code: "CA_EXISTS" } });
  });
});
