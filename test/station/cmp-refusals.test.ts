import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { randomBytes } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import Database from "better-sqlite3";
import { cmp } from "../../link/index.js";
import { lineHome, openssl, scratch, type Run } from "../helpers.js";
import { opensslCmp, resent, startCmpStation, startMockCa, type CmpStation, unitKey } from "../fixtures/cmp-station.js";

const HAS_CMP = openssl(["cmp", "-help"]).code === 0;
const SECRET = "line-7-bootstrap";

const { dir, cleanup } = scratch("cmp-refusals");
afterAll(cleanup);
const file = (name: string) => join(dir, name);

const newKey = (name: string) => unitKey(file(`${name}.key`));

/** What a refusal must leave alone: every serial's state, every key on record, every certifying ledger entry. */
function stationState(home: string) {
  const db = new Database(join(home, "station.db"), { readonly: true });
  try {
    return {
      serials: db.prepare("SELECT serial, state, certificate_fingerprint FROM serials ORDER BY serial").all(),
      keys: db.prepare("SELECT key_fingerprint, serial FROM seen_keys ORDER BY key_fingerprint").all(),
      certifying: db.prepare("SELECT idx, type, serial FROM ledger_entries WHERE type NOT IN ('error') ORDER BY idx").all(),
      units: db.prepare("SELECT serial, stage, failure_code FROM units ORDER BY serial").all(),
      ledgerSize: db.prepare("SELECT COUNT(*) FROM ledger_entries").pluck().get() as number,
    };
  } finally {
    db.close();
  }
}

const text = (r: Run) => r.stdout + r.stderr;

describe.skipIf(!HAS_CMP)("station run --cmp refuses, each with a CMP error message naming its PKIFailureInfo, and stores nothing", () => {
  let line: ReturnType<typeof lineHome>;
  let station: CmpStation;
  let base: string[];
  const goodKey = () => file("good.key");

  beforeAll(async () => {
    line = lineHome(dir, "line", 10);
    writeFileSync(file("secret"), `${SECRET}\n`);
    station = await startCmpStation(line.home, file("secret"));
    base = ["-server", `${station.server}/pkix/`, "-ref", "unit", "-msg_timeout", "20"];
    newKey("good");
    const ok = await opensslCmp([...base, "-secret", `pass:${SECRET}`, "-cmd", "ir", "-newkey", goodKey(), "-subject", "/serialNumber=SN000001/CN=one", "-certout", file("one.pem")]);
    if (ok.code !== 0) throw new Error(text(ok));
  }, 120_000);
  afterAll(async () => {
    await station?.stop("SIGTERM");
  });

  /** Runs one refused enrolment; checks the client's error and that nothing changed: serials, keys, ledger. */
  async function refused(args: string[], expected: RegExp): Promise<void> {
    const before = stationState(line.home);
    const r = await opensslCmp([...base, ...args]);
    expect(r.code, text(r)).not.toBe(0);
    expect(text(r)).toMatch(expected);
    const after = stationState(line.home);
    expect(after.serials).toEqual(before.serials);
    expect(after.keys).toEqual(before.keys);
    expect(after.certifying).toEqual(before.certifying);
    expect(after.ledgerSize).toBe(before.ledgerSize);
    expect(after.units).toEqual(before.units);
  }

  const ir = (serial: string, key: string, secret = SECRET) => ["-secret", `pass:${secret}`, "-cmd", "ir", "-newkey", key, "-subject", `/serialNumber=${serial}/CN=x`, "-certout", file("never.pem")];

  it("a serial in no imported allocation: notAuthorized", async () => {
    await refused(ir("XX000001", newKey("k-unallocated")), /PKIFailureInfo: notAuthorized; StatusString: "serial XX000001 is in no imported allocation/);
  });

  it("refusals never stop the line: one serial refused more often than --stop-after-serial-failures (5), then a good unit enrols", async () => {
    const key = newKey("k-again");
    for (let i = 0; i < 6; i++) await refused(ir("XX000009", key), /PKIFailureInfo: notAuthorized/);
    const ok = await opensslCmp([...base, ...ir("SN000009", newKey("k-after")).slice(0, -1), file("nine.pem")]);
    expect(ok.code, text(ok)).toBe(0);
  });

  it("a serial already provisioned, with another key: duplicateCertReq", async () => {
    await refused(ir("SN000001", newKey("k-clone")), /PKIFailureInfo: duplicateCertReq; StatusString: "serial SN000001 already has a certificate, for another key/);
  });

  it("a key another unit presented before: duplicateCertReq", async () => {
    await refused(ir("SN000002", goodKey()), /PKIFailureInfo: duplicateCertReq; StatusString: "unit SN000002 presented the public key unit SN000001 already presented/);
  });

  it("a wrong secret: the client finds no protection it can check; with -unprotected_errors it reads badMessageCheck", async () => {
    const key = newKey("k-secret");
    await refused(ir("SN000003", key, "not-the-line-secret"), /CMP error: missing protection/);
    await refused(["-unprotected_errors", ...ir("SN000003", key, "not-the-line-secret")], /PKIFailureInfo: badMessageCheck; StatusString: "the PKIMessage's PasswordBasedMac does not match/);
  });

  it("no signature POP (-popo 0, RA-verified; -popo -1, none): badPOP", async () => {
    const key = newKey("k-popo");
    await refused(["-popo", "0", ...ir("SN000004", key)], /PKIFailureInfo: badPOP/);
    await refused(["-popo", "-1", ...ir("SN000004", key)], /PKIFailureInfo: badPOP/);
  });

  it("a signature POP that does not verify (one bit flipped, the MAC made again): badPOP", async () => {
    const key = newKey("k-broken-pop");
    // openssl writes the ir it would send (-reqout) while no server answers at port 1.
    const captured = file("captured-ir.der");
    await opensslCmp(["-server", "127.0.0.1:1/pkix/", "-ref", "unit", "-msg_timeout", "2", ...ir("SN000004", key), "-reqout", captured]);
    resent(captured, file("tampered-ir.der"), SECRET, (body) => {
      // OpenSSL's ir ends with the POP, which ends with its signature: the body's last octet is the signature's.
      body[body.length - 1]! ^= 1;
      return body;
    });
    await refused([...ir("SN000004", key), "-reqin", file("tampered-ir.der")], /PKIFailureInfo: badPOP; StatusString: "the CSR's self-signature does not verify/);
  });

  it("a replayed message (openssl -reqin of an ir the station saw): badRequest", async () => {
    const key = newKey("k-replay");
    const seen = file("seen-ir.der");
    const first = await opensslCmp([...base, ...ir("SN000005", key), "-reqout", `${seen},${file("seen-certconf.der")}`]);
    expect(first.code, text(first)).toBe(0);
    await refused([...ir("SN000005", key), "-reqin", seen], /PKIFailureInfo: badRequest; StatusString: "this message was seen before/);
  });

  it("a certConf must name its answer's certReqId (0 after an ir): -1 or 255 is badRequest, and the right one is still taken", async () => {
    const key = newKey("k-confirm");
    // The unit keeps its certificate and sends no certConf (-disable_confirm): the station waits for one (--timeout-ms).
    const [sentFile, answerFile] = [file("confirm-ir.der"), file("confirm-ip.der")];
    const r = await opensslCmp([...base, ...ir("SN000006", key), "-disable_confirm", "-reqout", sentFile, "-rspout", answerFile]);
    expect(r.code, text(r)).toBe(0);
    const [sent, answer] = [cmp.decodeMessage(readFileSync(sentFile)), cmp.decodeMessage(readFileSync(answerFile))];
    const certificate = cmp.certRepOf(answer)!.certificate!;
    const confirm = async (certReqId: number) => {
      const header: cmp.CmpHeader = { ...sent.header, senderNonce: randomBytes(16), recipNonce: answer.header.senderNonce, messageTime: Date.now() };
      const body = cmp.protectedMessageDer(header, cmp.certConfBody(certificate, certReqId), undefined, Buffer.from(SECRET), { iterationCount: 500 });
      const res = await fetch(`http://${station.server}/pkix/`, { method: "POST", headers: { "content-type": "application/pkixcmp" }, body: new Uint8Array(body) });
      return cmp.decodeMessage(Buffer.from(await res.arrayBuffer()));
    };
    for (const wrong of [-1, 255]) expect(cmp.errorOf(await confirm(wrong))).toEqual({ failures: ["badRequest"], text: "the certConf must confirm exactly the one certificate sent" });
    expect((await confirm(0)).bodyType).toBe("pkiconf");
  });

  it("a message type the station does not speak (rr): badRequest, under the line's MAC", async () => {
    await refused(["-secret", `pass:${SECRET}`, "-cmd", "rr", "-oldcert", file("one.pem")], /PKIFailureInfo: badRequest; StatusString: "the station does not answer this message type/);
  });

  it("genm is answered with a genp under the line's MAC, and changes nothing", async () => {
    const before = stationState(line.home);
    const r = await opensslCmp([...base, "-secret", `pass:${SECRET}`, "-cmd", "genm"]);
    expect(r.code, text(r)).toBe(0);
    expect(text(r)).toMatch(/received GENP/);
    expect(stationState(line.home)).toEqual(before);
  });

  it("bytes that are no PKIMessage, and one too large: badDataFormat, unprotected", async () => {
    const before = stationState(line.home);
    for (const body of [Buffer.from("not a PKIMessage"), Buffer.alloc(cmp.MAX_CMP_MESSAGE_BYTES + 1, 0x30)]) {
      const res = await fetch(`http://${station.server}/.well-known/cmp`, { method: "POST", headers: { "content-type": "application/pkixcmp" }, body: new Uint8Array(body) });
      expect(res.status).toBe(200);
      const answer = cmp.decodeMessage(new Uint8Array(await res.arrayBuffer()));
      expect(cmp.errorOf(answer)?.failures).toEqual(["badDataFormat"]);
      expect(answer.protection).toBeUndefined();
    }
    expect(stationState(line.home)).toEqual(before);
  });
});

describe.skipIf(!HAS_CMP)("the 3GPP step: the IDevID enrolled over CMP protects an ir to an operator's CA (OpenSSL's mock server) that trusts only the vendor root", () => {
  it("the IDevID with its factory CA in extraCerts is accepted; a self-made certificate with the same serial and key is refused", async () => {
    // The station's unit from above: SN000001, its key good.key, its IDevID one.pem.
    const home = join(dir, "line");
    const operator = (name: string) => {
      const r = openssl(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", file(`${name}.key`), "-subj", `/CN=${name}`, "-days", "2", "-out", file(`${name}.pem`)]);
      if (r.code !== 0) throw new Error(r.stderr);
    };
    operator("operator-ca");
    // The mock answers every ir with this one certificate, so the unit's new key is its key.
    operator("operator-issued");
    const fake = openssl(["req", "-x509", "-key", file("good.key"), "-subj", "/serialNumber=SN000001/CN=SN000001", "-days", "2", "-out", file("self-made.pem")]);
    expect(fake.code, fake.stderr).toBe(0);
    const mock = await startMockCa(["-srv_cert", file("operator-ca.pem"), "-srv_key", file("operator-ca.key"), "-srv_trusted", join(home, "pki", "root.pem"), "-rsp_cert", file("operator-issued.pem")]);
    try {
      const enrol = (cert: string, out: string) =>
        opensslCmp(["-server", mock.server, "-cmd", "ir", "-cert", cert, "-key", file("good.key"), "-extracerts", join(home, "pki", "factory-ca.pem"), "-trusted", file("operator-ca.pem"), "-newkey", file("operator-issued.key"), "-subject", "/CN=operator-unit", "-certout", out, "-msg_timeout", "20"]);
      const accepted = await enrol(file("one.pem"), file("operator-cert.pem"));
      expect(accepted.code, text(accepted)).toBe(0);
      expect(text(accepted)).toMatch(/received PKICONF/);
      const refusedFake = await enrol(file("self-made.pem"), file("never-operator.pem"));
      expect(refusedFake.code).not.toBe(0);
      expect(text(refusedFake)).toMatch(/PKIFailureInfo: badRequest; StatusString: "no suitable sender cert"/);
    } finally {
      mock.close();
    }
  }, 60_000);
});
