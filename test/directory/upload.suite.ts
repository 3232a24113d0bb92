import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { spawn } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { webcrypto } from "node:crypto";
import { join } from "node:path";
import { openDb, sha256Hex, systemClock, systemRandom } from "../../core/index.js";
import { Ledger, openCheckpoint, stationOrigin } from "../../ledger/index.js";
import { checkCsr, issueEndEntity, issueIdevid, x509 } from "../../pki/index.js";
import { SoftwareUnit } from "../fixtures/software-unit.js";
import { issueFromCsr, withStation } from "../../station/index.js";
import { startDirectory, type DirectoryStore, type RunningDirectory } from "../../directory/index.js";
import { DirectoryClient, buildUpload, signUpload, type SignedUpload, type UploadReceipt } from "../../directory/client/index.js";
import { openssl, scratch } from "../helpers.js";
import { certPem, directoryCli, forgeIdevid, makeHome, must, pem, post, postSigned, recordIssued, stationUpload, withHsm, withLedger } from "./fixture.js";

import { dump, testStores, useStore, type StoreKind } from "./stores.js";

/** The directory suite on one store kind (upload.test.ts: SQLite, upload-pg.test.ts: PostgreSQL). */
export function uploadSuite(kind: StoreKind): void {
  const s = scratch(`directory-${kind}`);
  const stores = testStores(kind, s.dir);
  const file = (name: string) => join(s.dir, name);
  let vendor: ReturnType<typeof makeHome>;
  let dir: RunningDirectory;
  let client: DirectoryClient;
  let location: string;
  let store: DirectoryStore | undefined;
  const logs: string[] = [];

  /** SN000001.. are station-1's (the station imports them, the directory registers them); SB000001.. are station-2's. */
  beforeAll(async () => {
    vendor = makeHome(s.dir, "vendor");
    const { cli, home } = vendor;
    location = stores.fresh("directory");
    useStore(vendor.h, location);
    for (const [station, prefix] of [["station-1", "SN"], ["station-2", "SB"]] as const) {
      const list = file(`${station}.json`);
      must(cli("serials", "allocate", "--order", `PO-${station}`, "--station", station, "--model", "RT-1", "--count", "20", "--prefix", prefix, "--start", "1", "--out", list), "allocate");
      must(directoryCli(home, "allocations", "add", list), "directory allocations add");
      if (station === "station-1") must(cli("serials", "import", list), "serials import");
    }
    must(cli("station", "run", "--sim", "5", "--slots", "2"), "station run");
    store = await stores.open(location);
    dir = await startDirectory({
      store,
      root: new x509.X509Certificate(pem(vendor.h, "root")),
      factoryCas: [new x509.X509Certificate(pem(vendor.h, "factory-ca"))],
      port: 0,
      logger: { level: "warn", stream: { write: (line) => void logs.push(line) } },
    });
    client = new DirectoryClient(dir.url);
  });
  afterAll(async () => {
    await dir?.close();
    await store?.close();
    s.cleanup();
  });

  const first5 = ["SN000001", "SN000002", "SN000003", "SN000004", "SN000005"];
  const certs = (serials: string[]) => serials.map((serial) => ({ serial, certificate: certPem(vendor.h, serial) }));
  let firstUpload: SignedUpload;

  /**
   * curl as an operator runs it. Asynchronously: the server lives in this process, so a
   * synchronous spawn would block the very event loop that has to answer it.
   */
  async function curl(path: string, ...extra: string[]): Promise<{ code: number; status: number; headers: Record<string, string>; body: Buffer }> {
    const out = file("curl.body");
    const hdr = file("curl.headers");
    writeFileSync(out, "");
    const code = await new Promise<number>((resolve) => {
      const child = spawn("curl", ["-sS", "--max-time", "20", "-o", out, "-D", hdr, ...extra, `${dir.url}${path}`], { stdio: "ignore" });
      child.on("close", (c) => resolve(c ?? -1));
    });
    const lines = readFileSync(hdr, "utf8").split("\r\n");
    const status = Number(/^HTTP\/\S+ (\d{3})/.exec(lines[0] ?? "")?.[1]);
    const headers = Object.fromEntries(lines.slice(1).filter((l) => l.includes(":")).map((l) => [l.slice(0, l.indexOf(":")).toLowerCase(), l.slice(l.indexOf(":") + 1).trim()]));
    return { code, status, headers, body: readFileSync(out) };
  }

  describe("a station's upload is published, and operators fetch it", () => {
    it("5 certificates with the station's first checkpoint; curl fetches each, openssl verifies them, the proofs check with only the root", async () => {
      const { signed, size } = await stationUpload(vendor.h, { previousSize: 0, certificates: certs(first5) });
      firstUpload = signed;
      const receipt = await client.upload(signed);
      expect(receipt).toMatchObject({ ok: true, station: "station-1", checkpoint: { size, status: "accepted" }, alreadyPublished: [] });
      expect(receipt.published.sort()).toEqual(first5);

      const files: string[] = [];
      for (const serial of first5) {
        const pemAnswer = await curl(`/certificates/${serial}.crt`);
        expect(pemAnswer.code).toBe(0);
        expect(pemAnswer.status).toBe(200);
        expect(pemAnswer.headers["content-type"]).toBe("application/pem-certificate-chain");
        const fingerprint = sha256Hex(new Uint8Array(new x509.X509Certificate(pemAnswer.body.toString("utf8")).rawData));
        expect(pemAnswer.headers.etag).toBe(`"${fingerprint}"`);
        expect(pemAnswer.headers["cache-control"]).toMatch(/max-age=\d+/);
        writeFileSync(file(`${serial}.crt`), pemAnswer.body);
        files.push(file(`${serial}.crt`));

        const der = await curl(`/certificates/${serial}.der`);
        expect(der.headers["content-type"]).toBe("application/pkix-cert");
        writeFileSync(file(`${serial}.der`), der.body);
        const converted = openssl(["x509", "-inform", "DER", "-in", file(`${serial}.der`)]);
        expect(pemAnswer.body.toString("utf8").startsWith(converted.stdout)).toBe(true);
        // The device certificate first, then the factory CA that issued it.
        expect(pemAnswer.body.toString("utf8").replace(/\s+/g, "")).toBe((certPem(vendor.h, serial) + pem(vendor.h, "factory-ca")).replace(/\s+/g, ""));
      }
      const verified = openssl(["verify", "-CAfile", vendor.h.pkiFile("root"), "-untrusted", vendor.h.pkiFile("factory-ca"), ...files]);
      expect(verified.code, verified.stderr).toBe(0);
      expect(verified.stdout.trim().split("\n")).toHaveLength(5);

      // The JSON facts carry an idmint-inclusion/1 bundle that `idmint ledger verify-proof` checks with only the root.
      const info = await client.info("SN000003");
      expect(info).toMatchObject({ serial: "SN000003", station: "station-1", links: { pem: "/certificates/SN000003.crt" } });
      expect(info.proof.checkpoint).toBe(await client.checkpoint("station-1"));
      writeFileSync(file("proof.json"), JSON.stringify(info.proof));
      const proof = vendor.cli("ledger", "verify-proof", "--proof", file("proof.json"), "--root", vendor.h.pkiFile("root"), "--json");
      expect(proof.code, proof.stderr).toBe(0);
      expect(JSON.parse(proof.stdout)).toMatchObject({ ok: true, index: info.ledgerIndex, entry: { event: { type: "certificate.issued", serial: "SN000003", certificateFingerprint: info.fingerprint } } });

      // The checkpoint endpoint serves the station's signed note.
      const note = await curl("/stations/station-1/checkpoint");
      expect(note.headers["content-type"]).toMatch(/^text\/plain/);
      const station = new x509.X509Certificate(pem(vendor.h, "station"));
      expect(openCheckpoint(note.body.toString("utf8"), stationOrigin("station-1"), new Uint8Array(station.publicKey.rawData)).size).toBe(size);
      expect(await client.acceptedSize("station-1")).toBe(size);
    });

    it("conditional GETs, strict serial syntax, 404 for the unknown", async () => {
      const first = await curl("/certificates/SN000001.crt");
      const again = await curl("/certificates/SN000001.crt", "-H", `If-None-Match: ${first.headers.etag}`);
      expect(again.status).toBe(304);
      expect(again.body.length).toBe(0);
      expect((await curl("/certificates/SN000001.der", "-H", `If-None-Match: W/${first.headers.etag}`)).status).toBe(304);
      expect((await curl("/certificates/SN000001.crt", "-H", 'If-None-Match: "other"')).status).toBe(200);
      const cp = await curl("/stations/station-1/checkpoint");
      expect((await curl("/stations/station-1/checkpoint", "-H", `If-None-Match: ${cp.headers.etag}`)).status).toBe(304);

      for (const bad of ["bad%20serial.crt", "-SN1", "%2e%2e", "a".repeat(65), "SN%00.der"]) expect((await curl(`/certificates/${bad}`)).status, bad).toBe(400);
      expect((await curl("/stations/bad%20id/checkpoint")).status).toBe(400);
      const unknown = await curl("/certificates/SN000019.crt");
      expect(unknown.status).toBe(404);
      expect(unknown.headers["cache-control"]).toBe("no-store");
      expect((await curl("/stations/station-2/checkpoint")).status).toBe(404);
      await expect(client.certificate("SN000019")).rejects.toMatchObject({ code: "NOT_FOUND", kind: "input" });
      expect(await client.acceptedSize("station-2")).toBe(0);
    });

    it("the next upload proves consistency with the accepted checkpoint; a retry is idempotent", async () => {
      must(vendor.cli("station", "run", "--sim", "3", "--slots", "2"), "station run");
      const previousSize = await client.acceptedSize("station-1");
      const { signed, size } = await stationUpload(vendor.h, { previousSize, certificates: certs(["SN000001", "SN000006", "SN000007", "SN000008"]) });
      expect(size).toBeGreaterThan(previousSize);
      const receipt = await client.upload(signed);
      expect(receipt).toMatchObject({ checkpoint: { size, status: "accepted" }, published: ["SN000006", "SN000007", "SN000008"], alreadyPublished: ["SN000001"] });

      const before = await dump(location);
      const retry = await client.upload(signed);
      expect(retry).toMatchObject({ checkpoint: { size, status: "unchanged" }, published: [], alreadyPublished: ["SN000001", "SN000006", "SN000007", "SN000008"] });
      expect(await dump(location)).toEqual(before);
      expect(before.directory_certificates).toHaveLength(8);
    });
  });

  describe("refusals: the right status, nothing stored, nothing already stored changed", () => {
    /**
     * Posts an upload whose certificates the directory must refuse one by one: a 207 naming
     * each with its reason, and nothing changed but the station's checkpoint (and, for a
     * conflict, the conflicts kept).
     */
    async function refusedIn(signed: SignedUpload, expected: Array<{ serial: string; code: string }>) {
      const before = await dump(location);
      const r = await postSigned(dir.url, signed);
      expect(r.status, JSON.stringify(r.json)).toBe(207);
      expect(r.json).toMatchObject({ ok: true, published: [], refused: expected });
      const after = await dump(location);
      const conflicts = expected.some((x) => x.code === "CONFLICT");
      const unchanged = (d: Record<string, unknown[]>) => ({ ...d, directory_checkpoints: [], ...(conflicts ? { directory_conflicts: [] } : {}) });
      expect(unchanged(after)).toEqual(unchanged(before));
      return r.json as unknown as UploadReceipt;
    }

    /** A signed upload of station-1's certificates against the checkpoint the directory holds now. */
    async function upload(certificates: Array<{ serial: string; certificate: string }>): Promise<SignedUpload> {
      return (await stationUpload(vendor.h, { previousSize: await client.acceptedSize("station-1"), certificates })).signed;
    }

    /** Posts an upload and checks the refusal and that the store is exactly as before. */
    async function refused(upload: SignedUpload | (() => ReturnType<typeof post>), status: number, code: string, serial?: string) {
      const before = await dump(location);
      const r = typeof upload === "function" ? await upload() : await postSigned(dir.url, upload);
      expect(r.status, JSON.stringify(r.json)).toBe(status);
      expect(r.json).toMatchObject({ ok: false, error: { code } });
      if (serial) expect(r.json.error?.serial).toBe(serial);
      expect(await dump(location)).toEqual(before);
      return r.json;
    }

    it("an upload signed by a key with no station certificate, or not by the station it names (401)", async () => {
      const previousSize = await client.acceptedSize("station-1");
      const config = vendor.h.readConfig();
      // The allocation signer's key and certificate: chains to the root, but is no station.
      const allocationSigned = await stationUpload(vendor.h, {
        previousSize,
        certificates: certs(["SN000006"]),
        signer: (hsm) => hsm.signer(config.keys.allocationSigner),
        signerCertificate: pem(vendor.h, "allocation-signer"),
      });
      await refused(allocationSigned.signed, 401, "STATION_UNKNOWN");
      // The station's certificate, but the allocation signer's signature.
      const station = new x509.X509Certificate(pem(vendor.h, "station"));
      const forged = await stationUpload(vendor.h, {
        previousSize,
        certificates: certs(["SN000006"]),
        signer: (hsm) => {
          const key = hsm.signer(config.keys.allocationSigner);
          return { algorithm: key.algorithm, publicKeySpki: new Uint8Array(station.publicKey.rawData), sign: (d) => key.sign(d) };
        },
      });
      await refused(forged.signed, 401, "SIGNATURE_INVALID");
      // A genuine upload with one byte changed after signing.
      const genuine = await stationUpload(vendor.h, { previousSize, certificates: certs(["SN000006"]) });
      const tampered = Buffer.from(Buffer.from(genuine.signed.body).toString().replace('"previousSize":', '"previousSize": '));
      await refused({ body: tampered, signature: genuine.signed.signature }, 401, "SIGNATURE_INVALID");
      // No signature at all.
      await refused(() => post(dir.url, genuine.signed.body), 401, "UNSIGNED");
      // A station certificate from another vendor's root.
      const rogue = makeHome(s.dir, "rogue");
      const rogueSigned = await stationUpload(rogue.h, { previousSize: 0, certificates: [] });
      await refused(rogueSigned.signed, 401, "STATION_UNKNOWN");
    });

    it("station-1 uploading a serial allocated to station-2: that certificate refused, the rest of the upload taken; through the client too", async () => {
      const rogue = await issueFor("SB000001");
      const signed = await upload([...certs(["SN000006"]), { serial: "SB000001", certificate: rogue }]);
      const receipt = await refusedIn(signed, [{ serial: "SB000001", code: "SERIAL_NOT_ALLOWED" }]);
      expect(receipt).toMatchObject({ alreadyPublished: ["SN000006"], allocations: 2 });
      expect(receipt.refused[0]!.message).toBe("serial SB000001 is not allocated to station station-1");
      expect(await client.upload(signed)).toMatchObject({ checkpoint: { status: "unchanged" }, alreadyPublished: ["SN000006"], refused: [{ serial: "SB000001", code: "SERIAL_NOT_ALLOWED" }] });
      expect((await curl("/certificates/SB000001.crt")).status).toBe(404);
    });

    it("a serial allocated to no station", async () => {
      await refusedIn(await upload([{ serial: "ZZ000001", certificate: await issueFor("ZZ000001") }]), [{ serial: "ZZ000001", code: "SERIAL_UNALLOCATED" }]);
    });

    it("one request settles a batch with several refusals: every refused certificate named with its reason, the others published", async () => {
      must(vendor.cli("station", "run", "--sim", "1", "--slots", "1"), "station run");
      const logged = logs.length;
      const receipt = await client.upload(
        await upload([
          ...certs(["SN000009", "SN000002"]),
          { serial: "SB000002", certificate: await issueFor("SB000002") },
          { serial: "ZZ000002", certificate: await issueFor("ZZ000002") },
          { serial: "SN000004", certificate: await rogueSecondCertificate("SN000004") },
        ]),
      );
      expect(receipt).toMatchObject({ published: ["SN000009"], alreadyPublished: ["SN000002"], allocations: 2 });
      expect(receipt.refused.map((r) => [r.serial, r.code])).toEqual([
        ["SB000002", "SERIAL_NOT_ALLOWED"],
        ["ZZ000002", "SERIAL_UNALLOCATED"],
        ["SN000004", "CONFLICT"],
      ]);
      expect((await curl("/certificates/SN000009.crt")).status).toBe(200);
      // The log has each refusal with its cause.
      const refusals = logs.slice(logged).map((l) => JSON.parse(l)).filter((l) => l.msg.startsWith("certificate refused"));
      expect(refusals.map((l) => l.serial)).toEqual(["SB000002", "ZZ000002", "SN000004"]);
      expect(refusals[0].detail).toMatch(/allocated to station-2/);
    });

    it("certificates not from the factory CA, or not IDevIDs; the log has the cause, the answer a safe message", async () => {
      // Self-made with openssl, for an allocated serial, recorded in the station's ledger.
      const made = openssl(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", file("self.key"), "-subj", "/serialNumber=SN000019/CN=SN000019", "-days", "1", "-out", file("self.pem")]);
      expect(made.code, made.stderr).toBe(0);
      const selfMade = readFileSync(file("self.pem"), "utf8");
      await withLedger(vendor.h, (ledger) => recordIssued(ledger, "SN000019", new x509.X509Certificate(selfMade)));
      const logged = logs.length;
      const answer = await refusedIn(await upload([{ serial: "SN000019", certificate: selfMade }]), [{ serial: "SN000019", code: "CHAIN_INVALID" }]);
      expect(answer.refused[0]!.message).toBe("the certificate of SN000019 does not chain to the vendor root through a factory CA");
      const log = logs.slice(logged).join("");
      expect(log).toMatch(/"reason":"CHAIN_INVALID"/);
      expect(log).toMatch(/CN=SN000019.*does not chain to the vendor root/);

      // Signed by the vendor root itself, skipping the factory CA.
      const byRoot = await forgeIdevid(vendor.h, "SN000018", "root");
      await refusedIn(await upload([{ serial: "SN000018", certificate: byRoot.toString("pem") }]), [{ serial: "SN000018", code: "CHAIN_INVALID" }]);

      // Signed by the factory CA, but a station-style certificate: no serialNumber, no hardwareModuleName, it expires.
      const config = vendor.h.readConfig();
      const key = await webcrypto.subtle.generateKey({ name: "ECDSA", namedCurve: "P-256" }, true, ["sign", "verify"]);
      const spki = new Uint8Array(await webcrypto.subtle.exportKey("spki", key.publicKey));
      const notIdevid = await withHsm(vendor.h, async (hsm) =>
        issueEndEntity({
          purpose: "station",
          issuer: { signer: hsm.signer(config.keys.factoryCa), certificate: new x509.X509Certificate(pem(vendor.h, "factory-ca")) },
          publicKeySpki: spki,
          subject: { organization: config.profile.organization, commonName: "SN000017" },
          clock: systemClock,
          random: systemRandom,
        }),
      );
      await withLedger(vendor.h, (ledger) => recordIssued(ledger, "SN000017", notIdevid));
      await refusedIn(await upload([{ serial: "SN000017", certificate: notIdevid.toString("pem") }]), [{ serial: "SN000017", code: "PROFILE_VIOLATION" }]);
    });

    it("an entry or proof that does not match", async () => {
      const otherEntry = await stationUpload(vendor.h, {
        previousSize: await client.acceptedSize("station-1"),
        certificates: certs(["SN000006"]),
        edit: (c) => {
          const first = c.certificates[0]!;
          first.index = first.index - 1; // the signing.intent entry just before it
          first.entry = withLedgerSync((l) => l.entryBytes(first.index).toString("base64"));
        },
      });
      await refusedIn(otherEntry.signed, [{ serial: "SN000006", code: "LEDGER_MISMATCH" }]);
      const badProof = await stationUpload(vendor.h, {
        previousSize: await client.acceptedSize("station-1"),
        certificates: certs(["SN000006"]),
        edit: (c) => {
          c.certificates[0]!.inclusionProof.reverse();
        },
      });
      await refusedIn(badProof.signed, [{ serial: "SN000006", code: "PROOF_INVALID" }]);
    });

    it("a second, different certificate for a published serial: kept as a conflict, never published", async () => {
      const published = (await curl("/certificates/SN000001.crt")).body.toString("utf8");
      const second = await rogueSecondCertificate("SN000001");
      const signed = await upload([{ serial: "SN000001", certificate: second }]);

      const before = await dump(location);
      await refusedIn(signed, [{ serial: "SN000001", code: "CONFLICT" }]);
      const after = await dump(location);
      expect(after.directory_conflicts).toHaveLength(before.directory_conflicts!.length + 1);
      // Again: still refused, kept once.
      expect((await postSigned(dir.url, signed)).json).toMatchObject({ refused: [{ serial: "SN000001", code: "CONFLICT" }] });
      expect(await dump(location)).toEqual(after);

      expect((await curl("/certificates/SN000001.crt")).body.toString("utf8")).toBe(published);
      const listed = directoryCli(vendor.home, "conflicts", "--serial", "SN000001", "--json");
      expect(listed.code, listed.stderr).toBe(0);
      const { conflicts } = JSON.parse(listed.stdout);
      expect(conflicts).toHaveLength(1);
      const secondFingerprint = sha256Hex(new Uint8Array(new x509.X509Certificate(second).rawData));
      expect(conflicts[0]).toMatchObject({ serial: "SN000001", station: "station-1", refusedFingerprint: secondFingerprint, publishedFingerprint: sha256Hex(new Uint8Array(new x509.X509Certificate(published).rawData)) });
    });

    it("a checkpoint that rewrites the accepted history (409), at a larger or at the same size", async () => {
      const accepted = await client.acceptedSize("station-1");
      const config = vendor.h.readConfig();
      const station = pem(vendor.h, "station");
      // A copy of the station's ledger with its last two accepted entries replaced.
      async function forkedUpload(size: number): Promise<SignedUpload> {
        const copy = file(`fork-${size}.db`);
        const src = openDb(vendor.h.stationDbPath);
        src.exec(`VACUUM INTO '${copy}'`);
        src.close();
        const db = openDb(copy);
        try {
          db.exec(`DELETE FROM ledger_entries WHERE idx >= ${accepted - 2}; DELETE FROM ledger_checkpoints;`);
          const ledger = new Ledger(db, systemClock);
          while (ledger.size() < size) ledger.append({ type: "error", stage: "rewrite", code: "X", message: "history rewritten" });
          return await withHsm(vendor.h, async (hsm) => {
            const signer = hsm.signer(config.keys.station);
            const checkpoint = await ledger.checkpoint(signer, stationOrigin("station-1"));
            return signUpload(buildUpload({ ledger, station: "station-1", checkpoint, previousSize: accepted, certificates: [] }), signer, station);
          });
        } finally {
          db.close();
        }
      }
      const larger = await refused(await forkedUpload(accepted + 3), 409, "INCONSISTENT");
      expect(larger.acceptedSize).toBe(accepted);
      await refused(await forkedUpload(accepted), 409, "HISTORY_REWRITTEN");
      // A proof from a size the directory does not hold, for a ledger grown since.
      withLedgerSync((l) => l.append({ type: "error", stage: "upload", code: "X", message: "an entry after the accepted checkpoint" }));
      const stale = await stationUpload(vendor.h, { previousSize: accepted - 1, certificates: [] });
      await refused(stale.signed, 409, "PREVIOUS_SIZE_MISMATCH");
    });

    it("a replayed old upload (409)", async () => {
      await refused(firstUpload, 409, "REPLAY");
    });

    it("garbage (400) and an oversized body (413)", async () => {
      const valid = await stationUpload(vendor.h, { previousSize: await client.acceptedSize("station-1"), certificates: certs(["SN000006"]) });
      const sig = { "idmint-signature": valid.signed.signature };
      await refused(() => post(dir.url, "{not json", sig), 400, "MALFORMED");
      await refused(() => post(dir.url, Buffer.from([0xff, 0xfe, 0x7b, 0x7d]), sig), 400, "MALFORMED");
      await refused(() => post(dir.url, "[]", sig), 400, "MALFORMED");
      await refused(() => post(dir.url, "", sig), 400, "MALFORMED");
      const doc = JSON.parse(Buffer.from(valid.signed.body).toString());
      for (const edit of [
        (d: any) => (d.format = "idmint-upload/2"),
        (d: any) => (d.extra = 1),
        (d: any) => (d.previousSize = -1),
        (d: any) => (d.certificates[0].entry = "not*base64"),
        (d: any) => (d.certificates[0].inclusionProof = ["AAAA"]),
        (d: any) => (d.certificates[0].serial = "bad serial"),
        (d: any) => d.certificates.push(d.certificates[0]),
        (d: any) => (d.certificates[0].certificate = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"),
        (d: any) => (d.station = "../etc"),
      ]) {
        const d = structuredClone(doc);
        edit(d);
        await refused(() => post(dir.url, JSON.stringify(d), sig), 400, "MALFORMED");
      }
      const big = Buffer.alloc(9 * 1024 * 1024, 0x20);
      await refused(() => post(dir.url, big, sig), 413, "TOO_LARGE");
      // Still serving afterwards.
      expect((await curl("/certificates/SN000001.crt")).status).toBe(200);
    });

    it("the client says unreachable for a directory that is not there", async () => {
      const gone = new DirectoryClient("http://127.0.0.1:9", { timeoutMs: 2000 });
      await expect(gone.certificate("SN000001")).rejects.toMatchObject({ code: "DIRECTORY_UNREACHABLE", kind: "unavailable" });
    });
  });

  /** A real IDevID from the factory CA for a serial station-1 holds no allocation for: a lab unit in its ledger, which the directory must not publish. */
  async function issueFor(serial: string): Promise<string> {
    const config = vendor.h.readConfig();
    return withHsm(vendor.h, (hsm) =>
      withStation(vendor.h, systemClock, async (stores) => {
        const unit = await SoftwareUnit.create(serial, "RT-1");
        const csr = await unit.csr();
        const { certificate } = await issueFromCsr({ stores, hsm, home: vendor.h, config, clock: systemClock, random: systemRandom, csr, serial, outsideAllocation: { reason: "upload test" } });
        return certificate.toString("pem") + "\n";
      }),
    );
  }

  /** A second certificate from the factory CA for a serial already certified, recorded in the ledger: what a rogue station's software could make (the issue path refuses it). */
  async function rogueSecondCertificate(serial: string): Promise<string> {
    const config = vendor.h.readConfig();
    const unit = await SoftwareUnit.create(serial, "RT-1");
    const { publicKeySpki } = await checkCsr(await unit.csr(), serial);
    const cert = await withHsm(vendor.h, (hsm) =>
      issueIdevid({
        issuer: { signer: hsm.signer(config.keys.factoryCa), certificate: new x509.X509Certificate(pem(vendor.h, "factory-ca")) },
        publicKeySpki,
        serial,
        organization: config.profile.organization,
        hwTypeOid: config.profile.hwTypeOid,
        clock: systemClock,
        random: systemRandom,
      }),
    );
    await withLedger(vendor.h, (ledger) => recordIssued(ledger, serial, cert));
    return cert.toString("pem") + "\n";
  }

  function withLedgerSync<T>(fn: (ledger: Ledger) => T): T {
    const db = openDb(vendor.h.stationDbPath);
    try {
      return fn(new Ledger(db, systemClock));
    } finally {
      db.close();
    }
  }
}
