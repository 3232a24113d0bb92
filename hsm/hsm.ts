import pkcs11js from "pkcs11js";
import * as asn1js from "asn1js";
import { createHash, createPublicKey, randomBytes } from "node:crypto";
import { HsmError, ckr, pkcs11Failure } from "./errors.js";
import { Pkcs11Module } from "./module.js";
import { KEY_ALGORITHMS, hashFor, type KeyAlgorithm, type Signer } from "./signer.js";
import { describeKey, formatPkcs11Uri, parsePkcs11Uri, readPin, type Pkcs11Uri } from "./uri.js";

type Handle = Buffer;

/** PKCS#11 §2.1.8: the OAEP label is given as data (here empty); pkcs11js has no constant for it. */
const CKZ_DATA_SPECIFIED = 1;

const CURVES = {
  "EC-P256": { oid: "1.2.840.10045.3.1.7", jwk: "P-256", sigBytes: 64 },
  "EC-P384": { oid: "1.3.132.0.34", jwk: "P-384", sigBytes: 96 },
} as const;
const CURVE_BY_OID = new Map<string, KeyAlgorithm>(Object.entries(CURVES).map(([alg, c]) => [c.oid, alg as KeyAlgorithm]));

export interface HsmOptions {
  /** Path of the PKCS#11 module. */
  module: string;
  /** SoftHSM2 only: the configuration to load it with (exported as SOFTHSM2_CONF). */
  softhsmConf?: string;
  env?: NodeJS.ProcessEnv;
}

/** How `createKey` makes a key pair beyond the defaults (sensitive, never extractable, sign only). */
export interface CreateKeyOptions {
  /**
   * EC keys only: CKA_DERIVE=true, so the private key can also agree keys (CKM_ECDH1_DERIVE,
   * see `deriveEcdh`); a unit's IDevID key needs it so operators can encrypt to the unit
   * (RFC 8886 §4). Default false: a CA key signs and does nothing else.
   */
  derive?: boolean;
  /**
   * RSA keys only: CKA_DECRYPT=true, so the private key can also decrypt (CKM_RSA_PKCS, see
   * `decryptRsa`); a unit's RSA IDevID key needs it so operators can encrypt to the unit by
   * key transport (RFC 8886 §4). Default false: a CA key signs and does nothing else.
   */
  decrypt?: boolean;
}

/** The RSA encryption padding `decryptRsa` undoes in the token. */
export type RsaPadding = "pkcs1" | "oaep-sha1";

export interface KeyInfo {
  token: string;
  label: string;
  /** CKA_ID in hex. */
  id: string;
  algorithm: KeyAlgorithm | "unknown";
  sensitive: boolean;
  extractable: boolean;
  uri: string;
}

interface TokenLogin {
  slot: Handle;
  label: string;
  session: Handle;
}

/**
 * The HSM as idmint uses it: keys named by PKCS#11 URI, found or created, signers over
 * them, and nothing else. Every session it opens is closed by `close()`, which is
 * idempotent; the module is finalised only if this process initialised it.
 */
export class Hsm {
  private module: Pkcs11Module | undefined;
  private readonly logins = new Map<string, TokenLogin>();
  private readonly sessions = new Set<string>();
  private readonly env: NodeJS.ProcessEnv;

  private constructor(module: Pkcs11Module, env: NodeJS.ProcessEnv) {
    this.module = module;
    this.env = env;
  }

  static open(options: HsmOptions): Hsm {
    if (options.softhsmConf) {
      const current = process.env.SOFTHSM2_CONF;
      if (current && current !== options.softhsmConf && Pkcs11Module.isLoaded(options.module)) {
        throw new HsmError("MODULE_LOAD", `SoftHSM is already loaded in this process with ${current}; one process serves one idmint home`, { kind: "internal" });
      }
      // SoftHSM reads its configuration path from the environment at C_Initialize.
      process.env.SOFTHSM2_CONF = options.softhsmConf;
    }
    return new Hsm(Pkcs11Module.acquire(options.module), options.env ?? process.env);
  }

  private get mod(): Pkcs11Module {
    if (!this.module) throw new HsmError("PKCS11", "the HSM connection is already closed", { kind: "internal" });
    return this.module;
  }

  private get p11(): pkcs11js.PKCS11 {
    return this.mod.p11;
  }

  tokens(): ReturnType<Pkcs11Module["tokens"]> {
    return this.mod.tokens();
  }

  private openSession(slot: Handle): Handle {
    const s = this.p11.C_OpenSession(slot, pkcs11js.CKF_SERIAL_SESSION | pkcs11js.CKF_RW_SESSION);
    this.sessions.add(s.toString("hex"));
    return s;
  }

  private closeSession(session: Handle): void {
    if (!this.sessions.delete(session.toString("hex"))) return;
    try {
      this.p11.C_CloseSession(session);
    } catch {
      // A session the token already dropped is closed as far as we care.
    }
  }

  /** Logs in to the token a URI names, once per token: one attempt, never retried. */
  private login(uri: Pkcs11Uri): TokenLogin {
    const key = uri.serial ? `serial:${uri.serial}` : `label:${uri.token}`;
    const existing = this.logins.get(key);
    if (existing) return existing;
    const found = this.mod.findSlot({ label: uri.token, serial: uri.serial });
    const name = uri.token ?? `serial ${uri.serial}`;
    if (!found) {
      throw new HsmError("TOKEN_NOT_FOUND", `no token ${name} in PKCS#11 module ${this.mod.path}: run \`idmint hsm init\`, plug in the HSM, or fix token= in the key URI`);
    }
    if (found.flags & pkcs11js.CKF_USER_PIN_LOCKED) {
      throw new HsmError("PIN_LOCKED", `the user PIN of token ${name} is locked: have the security officer unlock it; idmint will not try to log in`);
    }
    const pin = readPin(uri.pinSource, name, this.env);
    const session = this.openSession(found.slot);
    try {
      this.p11.C_Login(session, pkcs11js.CKU_USER, pin);
    } catch (e) {
      const r = ckr(e);
      if (r?.name !== "CKR_USER_ALREADY_LOGGED_IN") {
        this.closeSession(session);
        if (r?.name === "CKR_PIN_INCORRECT" || r?.name === "CKR_PIN_LEN_RANGE") {
          throw new HsmError("PIN_INCORRECT", `wrong PIN for token ${name}: fix the PIN in its pin-source; idmint tried once and will not retry, as real HSMs lock after a few failures`);
        }
        if (r?.name === "CKR_PIN_LOCKED") {
          throw new HsmError("PIN_LOCKED", `the user PIN of token ${name} is locked: have the security officer unlock it`);
        }
        throw pkcs11Failure(`logging in to token ${name}`, e);
      }
    }
    const login = { slot: found.slot, label: found.label, session };
    this.logins.set(key, login);
    return login;
  }

  private find(session: Handle, template: pkcs11js.Template): Handle[] {
    this.p11.C_FindObjectsInit(session, template);
    try {
      return this.p11.C_FindObjects(session, 16);
    } finally {
      this.p11.C_FindObjectsFinal(session);
    }
  }

  private keyTemplate(uri: Pkcs11Uri, cls: number): pkcs11js.Template {
    const t: pkcs11js.Template = [{ type: pkcs11js.CKA_CLASS, value: cls }];
    if (uri.object !== undefined) t.push({ type: pkcs11js.CKA_LABEL, value: uri.object });
    if (uri.id !== undefined) t.push({ type: pkcs11js.CKA_ID, value: Buffer.from(uri.id) });
    return t;
  }

  private findKeyPair(uri: Pkcs11Uri, login: TokenLogin): { privateKey: Handle; publicKey: Handle } | undefined {
    if (uri.object === undefined && uri.id === undefined) {
      throw new HsmError("URI_INVALID", `key URI ${formatPkcs11Uri({ ...uri, pinSource: undefined })} names no key: add object=LABEL or id=`, { kind: "input" });
    }
    const privs = this.find(login.session, this.keyTemplate(uri, pkcs11js.CKO_PRIVATE_KEY));
    if (privs.length === 0) return undefined;
    if (privs.length > 1) {
      throw new HsmError("URI_INVALID", `${privs.length} private keys match ${describeKey(uri)}: add id= to the key URI to pick one`, { kind: "input" });
    }
    const privateKey = privs[0]!;
    const [idAttr] = this.p11.C_GetAttributeValue(login.session, privateKey, [{ type: pkcs11js.CKA_ID }]);
    const pubs = this.find(login.session, [
      { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_PUBLIC_KEY },
      { type: pkcs11js.CKA_ID, value: idAttr!.value as Buffer },
    ]);
    if (pubs.length !== 1) {
      throw new HsmError("KEY_NOT_FOUND", `the public key of ${describeKey(uri)} is missing from the token (need one public key object with the same CKA_ID): restore it`);
    }
    return { privateKey, publicKey: pubs[0]! };
  }

  private readPublicKey(session: Handle, publicKey: Handle): { algorithm: KeyAlgorithm; spki: Uint8Array<ArrayBuffer> } {
    const [typeAttr] = this.p11.C_GetAttributeValue(session, publicKey, [{ type: pkcs11js.CKA_KEY_TYPE }]);
    const keyType = ulong(typeAttr!.value as Buffer);
    if (keyType === pkcs11js.CKK_EC) {
      const [params, point] = this.p11.C_GetAttributeValue(session, publicKey, [{ type: pkcs11js.CKA_EC_PARAMS }, { type: pkcs11js.CKA_EC_POINT }]);
      const oid = asn1js.fromBER(params!.value as Buffer).result as asn1js.ObjectIdentifier;
      const algorithm = CURVE_BY_OID.get(oid.valueBlock.toString());
      if (!algorithm) throw new HsmError("UNSUPPORTED_ALGORITHM", `the key uses curve ${oid.valueBlock.toString()}; idmint signs with P-256 or P-384 only`);
      // PKCS#11 §2.3.3: CKA_EC_POINT is the DER OCTET STRING of the uncompressed point.
      const octets = asn1js.fromBER(point!.value as Buffer).result as asn1js.OctetString;
      const raw = Buffer.from(octets.valueBlock.valueHexView);
      const half = (raw.length - 1) / 2;
      const jwk = { kty: "EC", crv: CURVES[algorithm as "EC-P256" | "EC-P384"].jwk, x: raw.subarray(1, 1 + half).toString("base64url"), y: raw.subarray(1 + half).toString("base64url") };
      return { algorithm, spki: new Uint8Array(createPublicKey({ key: jwk, format: "jwk" }).export({ type: "spki", format: "der" })) };
    }
    if (keyType === pkcs11js.CKK_RSA) {
      const [n, e] = this.p11.C_GetAttributeValue(session, publicKey, [{ type: pkcs11js.CKA_MODULUS }, { type: pkcs11js.CKA_PUBLIC_EXPONENT }]);
      const modulus = n!.value as Buffer;
      const bits = (modulus[0] === 0 ? modulus.length - 1 : modulus.length) * 8;
      const algorithm = `RSA-${bits}` as KeyAlgorithm;
      if (!KEY_ALGORITHMS.includes(algorithm)) throw new HsmError("UNSUPPORTED_ALGORITHM", `the key is RSA-${bits}; idmint signs with RSA-2048 or RSA-3072 only`);
      const jwk = { kty: "RSA", n: modulus.toString("base64url"), e: (e!.value as Buffer).toString("base64url") };
      return { algorithm, spki: new Uint8Array(createPublicKey({ key: jwk, format: "jwk" }).export({ type: "spki", format: "der" })) };
    }
    throw new HsmError("UNSUPPORTED_ALGORITHM", `the key has PKCS#11 key type ${keyType}; idmint signs with EC or RSA keys only`);
  }

  private makeSigner(login: TokenLogin, privateKey: Handle, publicKey: Handle): Signer {
    const { algorithm, spki } = this.readPublicKey(login.session, publicKey);
    // A session per signer: two operations on one session fail with CKR_OPERATION_ACTIVE.
    const session = this.openSession(login.slot);
    const hash = hashFor(algorithm);
    const p11 = () => this.p11;
    const ec = algorithm.startsWith("EC-");
    const out = Buffer.alloc(ec ? CURVES[algorithm as "EC-P256" | "EC-P384"].sigBytes : Number(algorithm.slice(4)) / 8);
    const mechanism = ec ? { mechanism: pkcs11js.CKM_ECDSA } : { mechanism: pkcs11js.CKM_SHA256_RSA_PKCS };
    const hashName = hash === "SHA-384" ? "sha384" : "sha256";
    return {
      algorithm,
      hash,
      publicKeySpki: spki,
      async sign(data: Uint8Array): Promise<Uint8Array<ArrayBuffer>> {
        // SoftHSM 2.6 rejects CKM_ECDSA_SHA256: hash here, let the token sign the digest.
        const input = ec ? createHash(hashName).update(data).digest() : Buffer.from(data.buffer, data.byteOffset, data.byteLength);
        try {
          // Init and sign run back to back without yielding, so no other caller can
          // interleave an operation on this session.
          p11().C_SignInit(session, mechanism, privateKey);
          return new Uint8Array(p11().C_Sign(session, input, out));
        } catch (e) {
          throw pkcs11Failure("signing", e);
        }
      },
    };
  }

  /** Logs in to the token a URI names (one attempt), so that a missing token or a wrong PIN is refused before any work. */
  openToken(uriText: string): void {
    this.login(parsePkcs11Uri(uriText));
  }

  /** A signer for an existing key. A missing key is an error and never leads to creating one. */
  signer(uriText: string): Signer {
    const uri = parsePkcs11Uri(uriText);
    const login = this.login(uri);
    try {
      const pair = this.findKeyPair(uri, login);
      if (!pair) {
        throw new HsmError("KEY_NOT_FOUND", `no private key ${describeKey(uri)}: check the key URI in idmint.json; idmint never creates a CA key outside \`idmint ca init\``);
      }
      return this.makeSigner(login, pair.privateKey, pair.publicKey);
    } catch (e) {
      throw pkcs11Failure(`looking up ${describeKey(uri)}`, e);
    }
  }

  /** Generates a key pair as token objects, sensitive and never extractable; refuses to replace one. */
  createKey(uriText: string, algorithm: KeyAlgorithm, options: CreateKeyOptions = {}): Signer {
    const uri = parsePkcs11Uri(uriText);
    if (uri.object === undefined) throw new HsmError("URI_INVALID", `to create a key the URI needs object=LABEL: ${uriText.split("?")[0]}`, { kind: "input" });
    const derive = options.derive === true;
    if (derive && !algorithm.startsWith("EC-")) {
      throw new HsmError("UNSUPPORTED_ALGORITHM", `only EC keys can be made for key agreement (derive), not ${algorithm}`, { kind: "input" });
    }
    const decrypt = options.decrypt === true;
    if (decrypt && !algorithm.startsWith("RSA-")) {
      throw new HsmError("UNSUPPORTED_ALGORITHM", `only RSA keys can be made for decryption (decrypt), not ${algorithm}`, { kind: "input" });
    }
    const login = this.login(uri);
    if (this.find(login.session, this.keyTemplate({ object: uri.object }, pkcs11js.CKO_PRIVATE_KEY)).length > 0) {
      throw new HsmError("KEY_EXISTS", `a key ${describeKey(uri)} already exists: idmint never replaces a key; remove it by hand or choose another label`, { kind: "state" });
    }
    const id = uri.id ? Buffer.from(uri.id) : randomBytes(16);
    const common = [
      { type: pkcs11js.CKA_TOKEN, value: true },
      { type: pkcs11js.CKA_LABEL, value: uri.object },
      { type: pkcs11js.CKA_ID, value: id },
    ];
    const priv: pkcs11js.Template = [
      ...common,
      { type: pkcs11js.CKA_PRIVATE, value: true },
      { type: pkcs11js.CKA_SENSITIVE, value: true },
      { type: pkcs11js.CKA_EXTRACTABLE, value: false },
      { type: pkcs11js.CKA_SIGN, value: true },
      // A signing key does nothing else: SoftHSM would otherwise default these to true.
      // `derive` adds ECDH (CKM_ECDH1_DERIVE, see deriveEcdh) for keys that must also agree keys;
      // `decrypt` adds RSA decryption (see decryptRsa) for keys that must also open key transport.
      { type: pkcs11js.CKA_DECRYPT, value: decrypt },
      { type: pkcs11js.CKA_UNWRAP, value: false },
      { type: pkcs11js.CKA_DERIVE, value: derive },
    ];
    const pub: pkcs11js.Template = [...common, { type: pkcs11js.CKA_PRIVATE, value: false }, { type: pkcs11js.CKA_VERIFY, value: true }];
    let mech: pkcs11js.Mechanism;
    if (algorithm === "EC-P256" || algorithm === "EC-P384") {
      mech = { mechanism: pkcs11js.CKM_EC_KEY_PAIR_GEN };
      pub.push({ type: pkcs11js.CKA_EC_PARAMS, value: Buffer.from(new asn1js.ObjectIdentifier({ value: CURVES[algorithm].oid }).toBER(false)) });
    } else if (algorithm === "RSA-2048" || algorithm === "RSA-3072") {
      mech = { mechanism: pkcs11js.CKM_RSA_PKCS_KEY_PAIR_GEN };
      pub.push({ type: pkcs11js.CKA_MODULUS_BITS, value: Number(algorithm.slice(4)) }, { type: pkcs11js.CKA_PUBLIC_EXPONENT, value: Buffer.from([1, 0, 1]) });
    } else {
      throw new HsmError("UNSUPPORTED_ALGORITHM", `key algorithm ${String(algorithm)} is not one of ${KEY_ALGORITHMS.join(", ")}`, { kind: "input" });
    }
    let pair: pkcs11js.KeyPair;
    try {
      pair = this.p11.C_GenerateKeyPair(login.session, mech, pub, priv);
    } catch (e) {
      throw pkcs11Failure(`generating ${algorithm} key ${describeKey(uri)}`, e);
    }
    try {
      return this.makeSigner(login, pair.privateKey, pair.publicKey);
    } catch (e) {
      // A key we cannot use must not stay behind to block the next attempt.
      this.p11.C_DestroyObject(login.session, pair.privateKey);
      this.p11.C_DestroyObject(login.session, pair.publicKey);
      throw pkcs11Failure(`reading the new key ${describeKey(uri)}`, e);
    }
  }

  /** An existing key pair and its algorithm, for the operations other than signing. */
  private existingKey(uriText: string): { uri: Pkcs11Uri; login: TokenLogin; pair: { privateKey: Handle; publicKey: Handle }; algorithm: KeyAlgorithm } {
    const uri = parsePkcs11Uri(uriText);
    const login = this.login(uri);
    try {
      const pair = this.findKeyPair(uri, login);
      if (!pair) throw new HsmError("KEY_NOT_FOUND", `no private key ${describeKey(uri)}: check the key URI`);
      return { uri, login, pair, algorithm: this.readPublicKey(login.session, pair.publicKey).algorithm };
    } catch (e) {
      throw pkcs11Failure(`looking up ${describeKey(uri)}`, e);
    }
  }

  /**
   * ECDH between an EC private key in the token and a peer's public point (uncompressed,
   * 0x04||X||Y): CKM_ECDH1_DERIVE (PKCS#11 mechanisms §2.3, elliptic curve) with the null KDF (SoftHSM offers no
   * other), so the token returns Z, the shared secret's x-coordinate, and the caller runs
   * its KDF (e.g. RFC 5753 §3.1.2 for CMS). Z is derived as a session object that is
   * extractable and not sensitive, read once and destroyed at once; the private key never
   * leaves the token. The key must have been made with `derive: true`.
   */
  deriveEcdh(uriText: string, peerPoint: Uint8Array): Uint8Array {
    const { uri, login, pair, algorithm } = this.existingKey(uriText);
    if (algorithm !== "EC-P256" && algorithm !== "EC-P384") {
      throw new HsmError("UNSUPPORTED_ALGORITHM", `${describeKey(uri)} is an ${algorithm} key: ECDH needs an EC key`, { kind: "input" });
    }
    const curve = CURVES[algorithm];
    const fieldBytes = (curve.sigBytes / 2) as number;
    const point = Buffer.from(peerPoint);
    // SEC 1 §3.2.2 public key validation, before the token sees the point: Node refuses a
    // point that is not on the curve.
    const onCurve =
      point.length === 1 + 2 * fieldBytes &&
      point[0] === 0x04 &&
      (() => {
        try {
          createPublicKey({ key: { kty: "EC", crv: curve.jwk, x: point.subarray(1, 1 + fieldBytes).toString("base64url"), y: point.subarray(1 + fieldBytes).toString("base64url") }, format: "jwk" });
          return true;
        } catch {
          return false;
        }
      })();
    if (!onCurve) throw new HsmError("UNSUPPORTED_ALGORITHM", `the peer's public key is not an uncompressed point on ${curve.jwk}`, { kind: "input" });

    const mechanism: pkcs11js.Mechanism = {
      mechanism: pkcs11js.CKM_ECDH1_DERIVE,
      parameter: { type: pkcs11js.CK_PARAMS_EC_DH, kdf: pkcs11js.CKD_NULL, publicData: point } as pkcs11js.ECDH1,
    };
    const template: pkcs11js.Template = [
      { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_SECRET_KEY },
      { type: pkcs11js.CKA_KEY_TYPE, value: pkcs11js.CKK_GENERIC_SECRET },
      { type: pkcs11js.CKA_TOKEN, value: false },
      { type: pkcs11js.CKA_SENSITIVE, value: false },
      { type: pkcs11js.CKA_EXTRACTABLE, value: true },
      { type: pkcs11js.CKA_VALUE_LEN, value: fieldBytes },
    ];
    let secret: Handle;
    try {
      secret = this.p11.C_DeriveKey(login.session, mechanism, pair.privateKey, template);
    } catch (e) {
      const r = ckr(e);
      if (r?.name === "CKR_KEY_FUNCTION_NOT_PERMITTED" || r?.name === "CKR_KEY_TYPE_INCONSISTENT") {
        throw new HsmError("KEY_NOT_PERMITTED", `${describeKey(uri)} may not derive (CKA_DERIVE is false, ${r.name}): it was made for signing only; a key that agrees keys must be made with derive allowed`, { cause: e });
      }
      throw pkcs11Failure(`deriving an ECDH secret with ${describeKey(uri)}`, e);
    }
    try {
      const [value] = this.p11.C_GetAttributeValue(login.session, secret, [{ type: pkcs11js.CKA_VALUE }]);
      return new Uint8Array(value!.value as Buffer);
    } catch (e) {
      throw pkcs11Failure(`reading the ECDH secret of ${describeKey(uri)}`, e);
    } finally {
      try {
        this.p11.C_DestroyObject(login.session, secret);
      } catch {
        // A session object dies with its session at the latest (close()).
      }
    }
  }

  /**
   * RSA decryption inside the token (C_DecryptInit/C_Decrypt, PKCS#11 mechanisms §2.1):
   * CKM_RSA_PKCS (PKCS #1 v1.5 type 2, e.g. CMS rsaEncryption key transport) or
   * CKM_RSA_PKCS_OAEP with SHA-1, MGF1-SHA-1 and the empty label (SoftHSM 2.6 offers no
   * other OAEP hash). Returns the message, or undefined when the ciphertext does not
   * decrypt under this key (bad padding, which is what a ciphertext for another key gives:
   * CKR_ENCRYPTED_DATA_INVALID, or CKR_GENERAL_ERROR from SoftHSM 2.6.1; or not the
   * modulus's length: CKR_ENCRYPTED_DATA_LEN_RANGE). The private key never leaves the token; it must have been made with
   * `decrypt: true`. A session per call, closed before returning, so a failed operation
   * never stays active on a session something else uses.
   */
  decryptRsa(uriText: string, ciphertext: Uint8Array, padding: RsaPadding): Uint8Array | undefined {
    const { uri, login, pair, algorithm } = this.existingKey(uriText);
    if (algorithm !== "RSA-2048" && algorithm !== "RSA-3072") {
      throw new HsmError("UNSUPPORTED_ALGORITHM", `${describeKey(uri)} is an ${algorithm} key: RSA decryption needs an RSA key`, { kind: "input" });
    }
    const mechanism: pkcs11js.Mechanism =
      padding === "pkcs1"
        ? { mechanism: pkcs11js.CKM_RSA_PKCS }
        : {
            mechanism: pkcs11js.CKM_RSA_PKCS_OAEP,
            parameter: { type: pkcs11js.CK_PARAMS_RSA_OAEP, hashAlg: pkcs11js.CKM_SHA_1, mgf: pkcs11js.CKG_MGF1_SHA1, source: CKZ_DATA_SPECIFIED } as pkcs11js.RsaOAEP,
          };
    const out = Buffer.alloc(Number(algorithm.slice(4)) / 8);
    const session = this.openSession(login.slot);
    try {
      try {
        this.p11.C_DecryptInit(session, mechanism, pair.privateKey);
      } catch (e) {
        const r = ckr(e);
        if (r?.name === "CKR_KEY_FUNCTION_NOT_PERMITTED" || r?.name === "CKR_KEY_TYPE_INCONSISTENT") {
          throw new HsmError("KEY_NOT_PERMITTED", `${describeKey(uri)} may not decrypt (CKA_DECRYPT is false, ${r.name}): it was made for signing only; a key that opens key transport must be made with decrypt allowed`, { cause: e });
        }
        if (r?.name === "CKR_MECHANISM_INVALID" || r?.name === "CKR_MECHANISM_PARAM_INVALID" || r?.name === "CKR_ARGUMENTS_BAD") {
          throw new HsmError("UNSUPPORTED_ALGORITHM", `the token cannot decrypt with ${padding === "pkcs1" ? "CKM_RSA_PKCS" : "CKM_RSA_PKCS_OAEP (SHA-1)"} (${r.name})`, { cause: e });
        }
        throw pkcs11Failure(`decrypting with ${describeKey(uri)}`, e);
      }
      try {
        return new Uint8Array(this.p11.C_Decrypt(session, Buffer.from(ciphertext), out));
      } catch (e) {
        const r = ckr(e);
        // PKCS#11 says CKR_ENCRYPTED_DATA_INVALID for a bad block; SoftHSM 2.6.1 says
        // CKR_GENERAL_ERROR for any failure of the RSA operation itself (bad padding, or a
        // ciphertext not below the modulus). After C_DecryptInit accepted key and mechanism,
        // either means: this key does not open this ciphertext.
        if (r?.name === "CKR_ENCRYPTED_DATA_INVALID" || r?.name === "CKR_ENCRYPTED_DATA_LEN_RANGE" || r?.name === "CKR_GENERAL_ERROR") return undefined;
        throw pkcs11Failure(`decrypting with ${describeKey(uri)}`, e);
      }
    } finally {
      out.fill(0);
      this.closeSession(session);
    }
  }

  /** Removes a key pair (used only to undo a ceremony that failed half-way). */
  destroyKey(uriText: string): void {
    const uri = parsePkcs11Uri(uriText);
    const login = this.login(uri);
    const pair = this.findKeyPair(uri, login);
    if (!pair) return;
    this.p11.C_DestroyObject(login.session, pair.privateKey);
    this.p11.C_DestroyObject(login.session, pair.publicKey);
  }

  /** The private keys in the token a URI names, with the attributes that matter for custody. */
  listKeys(uriText: string): KeyInfo[] {
    const uri = parsePkcs11Uri(uriText);
    const login = this.login(uri);
    const s = login.session;
    const handles: Handle[] = [];
    this.p11.C_FindObjectsInit(s, [{ type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_PRIVATE_KEY }]);
    try {
      for (let h = this.p11.C_FindObjects(s, 64); h.length > 0; h = this.p11.C_FindObjects(s, 64)) handles.push(...h);
    } finally {
      this.p11.C_FindObjectsFinal(s);
    }
    return handles.map((h) => {
      const [label, id, sensitive, extractable] = this.p11.C_GetAttributeValue(s, h, [
        { type: pkcs11js.CKA_LABEL },
        { type: pkcs11js.CKA_ID },
        { type: pkcs11js.CKA_SENSITIVE },
        { type: pkcs11js.CKA_EXTRACTABLE },
      ]);
      const labelText = (label!.value as Buffer).toString("utf8");
      const idBytes = id!.value as Buffer;
      let algorithm: KeyInfo["algorithm"] = "unknown";
      const pub = this.find(s, [
        { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_PUBLIC_KEY },
        { type: pkcs11js.CKA_ID, value: idBytes },
      ]);
      if (pub.length === 1) {
        try {
          algorithm = this.readPublicKey(s, pub[0]!).algorithm;
        } catch {
          algorithm = "unknown";
        }
      }
      return {
        token: login.label,
        label: labelText,
        id: idBytes.toString("hex"),
        algorithm,
        sensitive: (sensitive!.value as Buffer)[0] === 1,
        extractable: (extractable!.value as Buffer)[0] === 1,
        uri: formatPkcs11Uri({ token: login.label, object: labelText, id: new Uint8Array(idBytes), type: "private" }),
      };
    });
  }

  close(): void {
    if (!this.module) return;
    for (const hex of [...this.sessions]) this.closeSession(Buffer.from(hex, "hex"));
    this.logins.clear();
    this.module.release();
    this.module = undefined;
  }
}

/** A CK_ULONG attribute as the module wrote it (8 bytes on LP64, 4 elsewhere), little-endian on our hosts. */
function ulong(b: Buffer): number {
  return b.length === 8 ? Number(b.readBigUInt64LE(0)) : b.readUInt32LE(0);
}
