import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { execFile } from "node:child_process";
import { createPublicKey, verify } from "node:crypto";
import { createServer } from "node:http";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { AsnConvert, OctetString } from "@peculiar/asn1-schema";
import { Certificate, GeneralName, Name, SubjectPublicKeyInfo } from "@peculiar/asn1-x509";
import { cmp } from "../../link/index.js";
import { openssl, scratch } from "../helpers.js";

const HAS_CMP = openssl(["cmp", "-help"]).code === 0;
const OID_SERIAL_NUMBER = "2.5.4.5";
const OID_CN = "2.5.4.3";

const { dir, cleanup } = scratch("cmp-asn1");
afterAll(cleanup);
const key = join(dir, "unit-key.pem");
const csr = join(dir, "unit.csr");
let spki: Buffer;

beforeAll(() => {
  if (!HAS_CMP) return;
  for (const args of [
    ["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", key],
    ["req", "-new", "-key", key, "-subj", "/serialNumber=SN000001/CN=SN000001", "-out", csr],
    ["req", "-in", csr, "-outform", "DER", "-out", `${csr}.der`],
  ]) {
    const r = openssl(args);
    if (r.code !== 0) throw new Error(`openssl ${args[0]}: ${r.stderr}`);
  }
  spki = createPublicKey(readFileSync(key)).export({ type: "spki", format: "der" });
});

/**
 * Runs OpenSSL's own CMP client against a 127.0.0.1 server that records the request body and
 * answers 500, so the client gives up after its first message: that message is what we parse.
 */
async function captured(cmd: string, extra: string[]): Promise<Buffer> {
  let body: Buffer | undefined;
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      body = Buffer.concat(chunks);
      res.writeHead(500).end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  try {
    const { port } = server.address() as { port: number };
    const args = ["cmp", "-cmd", cmd, "-server", `127.0.0.1:${port}/pkix/`, "-ref", "1234", "-secret", "pass:s3cret", "-recipient", "/CN=station"];
    args.push("-msg_timeout", "5", "-total_timeout", "10", "-certout", join(dir, "never.pem"), ...extra);
    const stderr = await new Promise<string>((resolve) => execFile("openssl", args, (_e, _out, err) => resolve(err)));
    if (!body) throw new Error(`openssl cmp -cmd ${cmd} sent nothing: ${stderr}`);
    return body;
  } finally {
    await new Promise((resolve) => server.close(resolve));
  }
}

/** The string values of one attribute type in a Name, in order. */
function nameValues(name: Name | undefined, type: string): string[] {
  return (name ?? []).flatMap((rdn) => rdn.filter((atv) => atv.type === type).map((atv) => atv.value.toString()));
}

/** Checks what every OpenSSL request carries: pvno, the reference as senderKID, the recipient, and a PBM that verifies only with the right secret. */
function expectProtectedRequest(message: cmp.PKIMessage): cmp.PBMParameter {
  expect(message.header.pvno).toBe(cmp.PVNO_CMP2000);
  expect(Buffer.from(message.header.senderKID!.buffer).toString()).toBe("1234");
  expect(nameValues(message.header.recipient.directoryName, OID_CN)).toEqual(["station"]);
  expect(message.header.transactionID!.byteLength).toBe(16);
  expect(message.header.senderNonce!.byteLength).toBe(16);
  expect(() => cmp.verifyPbm(message, Buffer.from("s3cret"))).not.toThrow();
  expect(() => cmp.verifyPbm(message, Buffer.from("s3cret!"))).toThrow(expect.objectContaining({ name: "UnitError", code: "CMP_PROTECTION_INVALID" }));
  return cmp.pbmParameterOf(message);
}

/** The signature POP of RFC 4211 §4.1 without poposkInput: a signature over DER(CertRequest) by the requested key. */
function expectSignaturePop(msg: cmp.CertReqMsg): void {
  const pop = msg.popo?.signature;
  expect(pop).toBeDefined();
  expect(pop!.poposkInput).toBeUndefined();
  expect(pop!.algorithmIdentifier.algorithm).toBe("1.2.840.10045.4.3.2"); // ecdsa-with-SHA256
  const publicKey = createPublicKey({ key: Buffer.from(AsnConvert.serialize(msg.certReq.certTemplate.publicKey!)), format: "der", type: "spki" });
  expect(verify("sha256", new Uint8Array(msg.certReqRaw!), publicKey, new Uint8Array(pop!.signature))).toBe(true);
  expect(verify("sha256", Buffer.from("not the request"), publicKey, new Uint8Array(pop!.signature))).toBe(false);
}

function expectTemplate(msg: cmp.CertReqMsg): void {
  const template = msg.certReq.certTemplate;
  expect(nameValues(template.subject, OID_SERIAL_NUMBER)).toEqual(["SN000001"]);
  expect(nameValues(template.subject, OID_CN)).toEqual(["SN000001"]);
  expect(Buffer.from(AsnConvert.serialize(template.publicKey!))).toEqual(spki);
}

describe.skipIf(!HAS_CMP)("CMP structures against OpenSSL's own CMP client", () => {
  it("parses an ir: subject, public key, a signature POP that verifies, senderKID and a PBM that verifies only with the secret", async () => {
    const der = await captured("ir", ["-newkey", key, "-subject", "/serialNumber=SN000001/CN=SN000001"]);
    const message = cmp.parsePKIMessage(der);
    expect(message.body.ir).toHaveLength(1);
    const msg = message.body.ir![0]!;
    expect(msg.certReq.certReqId).toBe(0);
    expectTemplate(msg);
    expectSignaturePop(msg);
    // Without a certificate, OpenSSL names the unit by the requested subject.
    expect(nameValues(message.header.sender.directoryName, OID_SERIAL_NUMBER)).toEqual(["SN000001"]);
    // OpenSSL 3.0's PBM: SHA-256 as OWF, 500 iterations, HMAC-SHA1 (its -mac default), a 16-octet salt.
    const pbm = expectProtectedRequest(message);
    expect([pbm.owf.algorithm, pbm.iterationCount, pbm.mac.algorithm, pbm.salt.byteLength]).toEqual(["2.16.840.1.101.3.4.2.1", 500, "1.3.6.1.5.5.8.1.2", 16]);
    // Our re-encoding of what OpenSSL sent is its exact bytes.
    expect(Buffer.from(AsnConvert.serialize(message))).toEqual(der);
  });

  it("parses a cr the same way", async () => {
    const der = await captured("cr", ["-newkey", key, "-subject", "/serialNumber=SN000001/CN=SN000001"]);
    const message = cmp.parsePKIMessage(der);
    expect(message.body.cr).toHaveLength(1);
    expectTemplate(message.body.cr![0]!);
    expectSignaturePop(message.body.cr![0]!);
    expectProtectedRequest(message);
    expect(Buffer.from(AsnConvert.serialize(message))).toEqual(der);
  });

  it("parses a p10cr: the body is the CSR openssl req made, byte for byte", async () => {
    const der = await captured("p10cr", ["-csr", csr]);
    const message = cmp.parsePKIMessage(der);
    expect(Buffer.from(AsnConvert.serialize(message.body.p10cr!))).toEqual(readFileSync(`${csr}.der`));
    expectProtectedRequest(message);
  });

  it("parses a genm", async () => {
    const der = await captured("genm", []);
    const message = cmp.parsePKIMessage(der);
    expect(message.body.genm).toBeDefined();
    expectProtectedRequest(message);
    expect(Buffer.from(AsnConvert.serialize(message))).toEqual(der);
  });
});

describe("CMP structures we build", () => {
  const header = () =>
    new cmp.PKIHeader({
      sender: new GeneralName({ directoryName: new Name() }),
      recipient: new GeneralName({ directoryName: new Name() }),
      messageTime: new Date("2026-12-06T12:00:00Z"),
      senderKID: new OctetString(Buffer.from("1234")),
      transactionID: new OctetString(Buffer.alloc(16, 1)),
      senderNonce: new OctetString(Buffer.alloc(16, 2)),
      recipNonce: new OctetString(Buffer.alloc(16, 3)),
    });

  it.skipIf(!HAS_CMP)("an ip with a certificate, PBM-protected, round-trips byte for byte and verifies", () => {
    const certDer = join(dir, "issued.der");
    const r = openssl(["req", "-x509", "-key", key, "-subj", "/serialNumber=SN000001/CN=SN000001", "-days", "1", "-outform", "DER", "-out", certDer]);
    expect(r.code).toBe(0);
    const certificate = AsnConvert.parse(readFileSync(certDer), Certificate);
    const ip = new cmp.CertRepMessage({
      response: [
        new cmp.CertResponse({
          certReqId: 0,
          status: new cmp.PKIStatusInfo({ status: cmp.PKI_STATUS.accepted }),
          certifiedKeyPair: new cmp.CertifiedKeyPair({ certOrEncCert: new cmp.CertOrEncCert({ certificate }) }),
        }),
      ],
    });
    const built = cmp.protectWithPbm(new cmp.PKIMessage({ header: header(), body: new cmp.PKIBody({ ip }), extraCerts: [certificate] }), Buffer.from("s3cret"), { iterationCount: 1000 });
    const der = Buffer.from(AsnConvert.serialize(built));
    const parsed = cmp.parsePKIMessage(der);
    expect(Buffer.from(AsnConvert.serialize(parsed))).toEqual(der);
    expect(parsed.body.ip!.response[0]!.certifiedKeyPair!.certOrEncCert.certificate).toBeDefined();
    expect(() => cmp.verifyPbm(parsed, Buffer.from("s3cret"))).not.toThrow();
    expect(() => cmp.verifyPbm(parsed, Buffer.from("other"))).toThrow(/does not match/);
    // OpenSSL reads it as DER with the structure of RFC 4210.
    const dump = openssl(["asn1parse", "-inform", "DER"], { input: der });
    expect(dump.code).toBe(0);
  });

  it.skipIf(!HAS_CMP)("an answer built from DER parts (protectedMessageDer) is byte for byte the PKIMessage protectWithPbm makes", () => {
    const certDer = join(dir, "issued-2.der");
    expect(openssl(["req", "-x509", "-key", key, "-subj", "/serialNumber=SN000001/CN=SN000001", "-days", "1", "-outform", "DER", "-out", certDer]).code).toBe(0);
    const der = new Uint8Array(readFileSync(certDer));
    const certificate = AsnConvert.parse(der, Certificate);
    const options = { salt: Buffer.alloc(16, 7), iterationCount: 1000 };
    for (const kind of ["ir", "p10cr"] as const) {
      const rep = new cmp.CertRepMessage({
        caPubs: [certificate],
        response: [new cmp.CertResponse({ certReqId: kind === "ir" ? 0 : -1, status: new cmp.PKIStatusInfo({ status: cmp.PKI_STATUS.accepted }), certifiedKeyPair: new cmp.CertifiedKeyPair({ certOrEncCert: new cmp.CertOrEncCert({ certificate }) }) })],
      });
      const h = header();
      const expected = AsnConvert.serialize(cmp.protectWithPbm(new cmp.PKIMessage({ header: h, body: new cmp.PKIBody(kind === "ir" ? { ip: rep } : { cp: rep }), extraCerts: [certificate] }), Buffer.from("s3cret"), options));
      const built = cmp.protectedMessageDer(h, cmp.certRepBody(kind, der, der.slice().buffer), [der.slice().buffer], Buffer.from("s3cret"), options);
      expect(Buffer.from(built)).toEqual(Buffer.from(expected));
    }
  });

  it("DER(ProtectedPart) made from its parts is the schema's, at every length form (short, 1, 2 and 3 length octets)", () => {
    const octets = (n: number) => {
      // An OCTET STRING of n content octets as a stand-in DER value.
      return new Uint8Array(AsnConvert.serialize(new OctetString(Buffer.alloc(n, 5))));
    };
    for (const [h, b] of [[3, 10], [60, 70], [100, 200], [300, 70_000]] as const) {
      const header = octets(h);
      const body = octets(b);
      expect(cmp.protectedPartDer(header, body)).toEqual(Buffer.from(AsnConvert.serialize(new cmp.ProtectedPart({ header: header.slice().buffer, body: body.slice().buffer }))));
    }
  });

  it("an error message names its PKIFailureInfo bits, and pkiconf and certConf round-trip", () => {
    const error = new cmp.ErrorMsgContent({
      pKIStatusInfo: new cmp.PKIStatusInfo({ status: cmp.PKI_STATUS.rejection, statusString: new cmp.PKIFreeText(["serial not allocated"]), failInfo: cmp.PKIFailureInfo.of("badRequest", "duplicateCertReq") }),
    });
    for (const body of [
      new cmp.PKIBody({ error }),
      new cmp.PKIBody({ pkiconf: null }),
      new cmp.PKIBody({ certConf: new cmp.CertConfirmContent([new cmp.CertStatus({ certHash: new OctetString(Buffer.alloc(32, 9)), certReqId: 0 })]) }),
    ]) {
      const der = Buffer.from(AsnConvert.serialize(new cmp.PKIMessage({ header: header(), body })));
      expect(Buffer.from(AsnConvert.serialize(cmp.parsePKIMessage(der)))).toEqual(der);
    }
    const again = cmp.parsePKIMessage(new Uint8Array(AsnConvert.serialize(new cmp.PKIMessage({ header: header(), body: new cmp.PKIBody({ error }) }))));
    expect(again.body.error!.pKIStatusInfo.failInfo!.failures()).toEqual(["badRequest", "duplicateCertReq"]);
  });

  it("refuses a PBM iteration count outside 100..100000, and bytes that are not a PKIMessage, with typed errors", () => {
    const message = new cmp.PKIMessage({ header: header(), body: new cmp.PKIBody({ pkiconf: null }) });
    for (const iterationCount of [99, 100_001]) {
      expect(() => cmp.protectWithPbm(message, Buffer.from("s3cret"), { iterationCount })).toThrow(expect.objectContaining({ code: "CMP_PROTECTION_UNSUPPORTED" }));
    }
    expect(() => cmp.verifyPbm(message, Buffer.from("s3cret"))).toThrow(expect.objectContaining({ code: "CMP_PROTECTION_UNSUPPORTED" }));
    expect(() => cmp.parsePKIMessage(Buffer.from("garbage"))).toThrow(expect.objectContaining({ code: "CMP_MALFORMED" }));
  });
});
