import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { execFile } from "node:child_process";
import { createPublicKey, verify } from "node:crypto";
import { createServer } from "node:http";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { cmp } from "../../link/index.js";
import { SubjectPublicKeyInfoModel, attributes, directoryString, type NameDer } from "../../pki/index.js";
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
function nameValues(name: NameDer | undefined, type: string): string[] {
  return attributes(name ?? [])
    .filter((a) => a.type === type)
    .map((a) => directoryString(a.value));
}

function directoryName(g: cmp.GeneralNameDer): NameDer {
  if (g.type !== "directoryName") throw new Error(`a ${g.type}, not a directoryName`);
  return g.value;
}

/** Checks what every OpenSSL request carries: pvno, the reference as senderKID, the recipient, and a PBM that verifies only with the right secret. */
function expectProtectedRequest(message: cmp.CmpMessage): ReturnType<typeof cmp.pbmParameterOf> {
  expect(message.header.pvno).toBe(cmp.PVNO_CMP2000);
  expect(message.header.senderKID!.toString()).toBe("1234");
  expect(nameValues(directoryName(message.header.recipient), OID_CN)).toEqual(["station"]);
  expect(message.header.transactionID!.byteLength).toBe(16);
  expect(message.header.senderNonce!.byteLength).toBe(16);
  expect(() => cmp.verifyPbm(message, Buffer.from("s3cret"))).not.toThrow();
  expect(() => cmp.verifyPbm(message, Buffer.from("s3cret!"))).toThrow(expect.objectContaining({ name: "UnitError", code: "CMP_PROTECTION_INVALID" }));
  return cmp.pbmParameterOf(message.header);
}

/** What we write from what we read is OpenSSL's message byte for byte: the header through its model, the rest as the DER it is. */
function expectRewrittenExactly(message: cmp.CmpMessage, der: Buffer): void {
  expect(cmp.headerDer(message.header)).toEqual(message.headerDer);
  expect(cmp.pkiMessageDer(cmp.headerDer(message.header), message.bodyDer, message.protection, message.extraCerts)).toEqual(der);
}

/** The signature POP of RFC 4211 §4.1 without poposkInput: a signature over DER(CertRequest) by the requested key. */
function expectSignaturePop(msg: cmp.CertReqMsgDer): void {
  const popo = msg.popo;
  if (popo?.type !== "signature") throw new Error(`no signature POP: ${popo?.type}`);
  expect(popo.value.poposkInput).toBeUndefined();
  expect(popo.value.algorithmIdentifier.algorithm.join(".")).toBe("1.2.840.10045.4.3.2"); // ecdsa-with-SHA256
  const publicKey = createPublicKey({ key: SubjectPublicKeyInfoModel.encode(msg.template.publicKey!, "der"), format: "der", type: "spki" });
  expect(verify("sha256", msg.certReqDer, publicKey, popo.value.signature.data)).toBe(true);
  expect(verify("sha256", Buffer.from("not the request"), publicKey, popo.value.signature.data)).toBe(false);
}

function expectTemplate(msg: cmp.CertReqMsgDer): void {
  expect(nameValues(msg.template.subject, OID_SERIAL_NUMBER)).toEqual(["SN000001"]);
  expect(nameValues(msg.template.subject, OID_CN)).toEqual(["SN000001"]);
  expect(SubjectPublicKeyInfoModel.encode(msg.template.publicKey!, "der")).toEqual(spki);
}

describe.skipIf(!HAS_CMP)("the CMP models against OpenSSL's own CMP client", () => {
  it("reads an ir: subject, public key, a signature POP that verifies, senderKID and a PBM that verifies only with the secret", async () => {
    const der = await captured("ir", ["-newkey", key, "-subject", "/serialNumber=SN000001/CN=SN000001"]);
    const message = cmp.decodeMessage(der);
    expect(message.bodyType).toBe("ir");
    const msgs = cmp.certReqMessagesOf(message);
    expect(msgs).toHaveLength(1);
    expect(msgs[0]!.certReqId).toBe(0);
    expectTemplate(msgs[0]!);
    expectSignaturePop(msgs[0]!);
    // Without a certificate, OpenSSL names the unit by the requested subject.
    expect(nameValues(directoryName(message.header.sender), OID_SERIAL_NUMBER)).toEqual(["SN000001"]);
    // OpenSSL 3.0's PBM: SHA-256 as OWF, 500 iterations, HMAC-SHA1 (its -mac default), a 16-octet salt.
    const pbm = expectProtectedRequest(message);
    expect([pbm.owf, pbm.iterationCount, pbm.mac, pbm.salt.byteLength]).toEqual(["2.16.840.1.101.3.4.2.1", 500, "1.3.6.1.5.5.8.1.2", 16]);
    expectRewrittenExactly(message, der);
  });

  it("reads a cr the same way", async () => {
    const der = await captured("cr", ["-newkey", key, "-subject", "/serialNumber=SN000001/CN=SN000001"]);
    const message = cmp.decodeMessage(der);
    expect(message.bodyType).toBe("cr");
    const msgs = cmp.certReqMessagesOf(message);
    expectTemplate(msgs[0]!);
    expectSignaturePop(msgs[0]!);
    expectProtectedRequest(message);
    expectRewrittenExactly(message, der);
  });

  it("reads a p10cr: the body's content is the CSR openssl req made, byte for byte", async () => {
    const der = await captured("p10cr", ["-csr", csr]);
    const message = cmp.decodeMessage(der);
    expect(message.bodyType).toBe("p10cr");
    expect(message.content).toEqual(readFileSync(`${csr}.der`));
    expectProtectedRequest(message);
    expectRewrittenExactly(message, der);
  });

  it("reads a genm", async () => {
    const der = await captured("genm", []);
    const message = cmp.decodeMessage(der);
    expect(message.bodyType).toBe("genm");
    expect(cmp.decodeContent(message, cmp.GenMsgContentModel)).toBeInstanceOf(Array);
    expectProtectedRequest(message);
    expectRewrittenExactly(message, der);
  });
});

describe("CMP messages we write", () => {
  const header = (): cmp.CmpHeader => ({
    pvno: cmp.PVNO_CMP2000,
    sender: { type: "directoryName", value: [] },
    recipient: { type: "directoryName", value: [] },
    messageTime: Date.parse("2026-12-06T12:00:00Z"),
    senderKID: Buffer.from("1234"),
    transactionID: Buffer.alloc(16, 1),
    senderNonce: Buffer.alloc(16, 2),
    recipNonce: Buffer.alloc(16, 3),
  });

  it.skipIf(!HAS_CMP)("an ip and a cp with a certificate, PBM-protected, read back with the certificate as it was, and OpenSSL reads them as DER", () => {
    const certDer = join(dir, "issued.der");
    expect(openssl(["req", "-x509", "-key", key, "-subj", "/serialNumber=SN000001/CN=SN000001", "-days", "1", "-outform", "DER", "-out", certDer]).code).toBe(0);
    const certificate = readFileSync(certDer);
    for (const kind of ["ir", "p10cr"] as const) {
      const der = cmp.protectedMessageDer(header(), cmp.certRepBody(kind, certificate, certificate), [certificate], Buffer.from("s3cret"), { iterationCount: 1000 });
      const message = cmp.decodeMessage(der);
      expect(message.bodyType).toBe(kind === "ir" ? "ip" : "cp");
      expect(cmp.certRepOf(message)).toEqual({ certReqId: kind === "ir" ? 0 : -1, status: cmp.PKI_STATUS.accepted, certificate });
      expect(message.extraCerts).toEqual([certificate]);
      expect(() => cmp.verifyPbm(message, Buffer.from("s3cret"))).not.toThrow();
      expect(() => cmp.verifyPbm(message, Buffer.from("other"))).toThrow(/does not match/);
      expect(openssl(["asn1parse", "-inform", "DER"], { input: der }).code).toBe(0);
    }
  });

  it("an error names its PKIFailureInfo bits in DER form; certConf and pkiConf read back", () => {
    // RFC 4210 §5.2.3 bit 9 (badPOP): the second octet's second bit, six unused bits after it.
    expect(cmp.failureInfo("badPOP")).toEqual({ unused: 6, data: Buffer.from([0x00, 0x40]) });
    expect(cmp.failuresOf(cmp.failureInfo("badRequest", "duplicateCertReq"))).toEqual(["badRequest", "duplicateCertReq"]);
    const error = cmp.decodeMessage(cmp.protectedMessageDer(header(), cmp.errorBody("notAuthorized", "serial not allocated"), undefined, undefined));
    expect(cmp.errorOf(error)).toEqual({ failures: ["notAuthorized"], text: "serial not allocated" });
    expect(error.protection).toBeUndefined();
    const certDer = join(dir, "issued.der");
    const conf = cmp.decodeMessage(cmp.protectedMessageDer(header(), cmp.certConfBody(readFileSync(certDer), -1, "refused by the unit"), undefined, undefined));
    const [status] = cmp.certStatusesOf(conf);
    expect(status!.certReqId).toBe(-1);
    expect(status!.certHash).toEqual(cmp.certHash(readFileSync(certDer)));
    expect(status!.statusInfo?.statusString).toEqual(["refused by the unit"]);
    expect(cmp.decodeMessage(cmp.protectedMessageDer(header(), cmp.PKICONF_BODY, undefined, undefined)).bodyType).toBe("pkiconf");
  });

  it("reads certReqId signed (asn1.js reads INTEGERs unsigned: 255 must not pass for a p10cr's -1) and refuses an INTEGER too big for its field", () => {
    const certDer = readFileSync(join(dir, "issued.der"));
    const certConf = (certReqId: number) => cmp.decodeMessage(cmp.protectedMessageDer(header(), cmp.certConfBody(certDer, certReqId), undefined, undefined));
    expect([-1, 0, 255, 256].map((id) => cmp.certStatusesOf(certConf(id))[0]!.certReqId)).toEqual([-1, 0, 255, 256]);
    const ip = (certReqId: number) => cmp.decodeMessage(cmp.protectedMessageDer(header(), cmp.bodyDer("ip", cmp.CertRepMessageModel.encode({ response: [{ certReqId: cmp.intDer(certReqId), status: { status: 0 } }] }, "der")), undefined, undefined));
    expect([-1, 0, 255].map((id) => cmp.certRepOf(ip(id))?.certReqId)).toEqual([-1, 0, 255]);
    // A status of 64 bits (RFC 4210 allows any INTEGER) is CMP_MALFORMED, which the station answers with badDataFormat.
    const huge = cmp.decodeMessage(cmp.protectedMessageDer(header(), cmp.bodyDer("ip", cmp.CertRepMessageModel.encode({ response: [{ certReqId: 0, status: { status: Buffer.from("7fffffffffffffff", "hex") } }] }, "der")), undefined, undefined));
    expect(() => cmp.certRepOf(huge)).toThrow(expect.objectContaining({ code: "CMP_MALFORMED" }));
  });

  it("the messages of one transaction share a salt and its key (RFC 4210 §5.1.3.1): the MAC is the same as derived afresh", () => {
    const keys = new cmp.PbmKeyCache(1);
    const options = { salt: Buffer.alloc(16, 7), iterationCount: 1000, keyCache: keys };
    for (let i = 0; i < 3; i++) {
      const message = cmp.decodeMessage(cmp.protectedMessageDer({ ...header(), senderNonce: Buffer.alloc(16, i) }, cmp.PKICONF_BODY, undefined, Buffer.from("s3cret"), options));
      expect(() => cmp.verifyPbm(message, Buffer.from("s3cret"))).not.toThrow();
      expect(() => cmp.verifyPbm(message, Buffer.from("s3cret"), keys)).not.toThrow();
    }
  });

  it("refuses a PBM iteration count outside 100..100000, and bytes that are not a PKIMessage, with typed errors", () => {
    for (const iterationCount of [99, 100_001]) {
      expect(() => cmp.protectedMessageDer(header(), cmp.PKICONF_BODY, undefined, Buffer.from("s3cret"), { iterationCount })).toThrow(expect.objectContaining({ code: "CMP_PROTECTION_UNSUPPORTED" }));
    }
    const unprotected = cmp.decodeMessage(cmp.protectedMessageDer(header(), cmp.PKICONF_BODY, undefined, undefined));
    expect(() => cmp.verifyPbm(unprotected, Buffer.from("s3cret"))).toThrow(expect.objectContaining({ code: "CMP_PROTECTION_UNSUPPORTED" }));
    expect(() => cmp.decodeMessage(Buffer.from("garbage"))).toThrow(expect.objectContaining({ code: "CMP_MALFORMED" }));
  });
});
