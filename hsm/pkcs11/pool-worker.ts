import pkcs11js from "pkcs11js";
import { parentPort, workerData } from "node:worker_threads";
import { ckr } from "./ckr.js";
import { findObjects, findTokenSlotToLogIn, keyTemplate } from "./objects.js";
import type { FromPoolWorker, PoolFailure, PoolKey, PoolWorkerData, ToPoolWorker } from "./pool-messages.js";

/**
 * One session of a signing pool (pool.ts), in a thread of its own: every PKCS#11 call here
 * blocks this thread only, however slow the HSM's link, so the station's event loop never
 * waits on it. A module that gives each initialisation an instance of its own (p11-kit's
 * client: a connection per instance) is initialised and finalised here; a module already
 * initialised in this process (SoftHSM) is shared, and only its sessions are ours.
 */
const { module, keys } = workerData as PoolWorkerData;
const port = parentPort!;
const p11 = new pkcs11js.PKCS11();
p11.load(module);
let ownsInit = false;
/** The session per token (keys of one token share it: this thread never interleaves two operations). */
const sessions = new Map<string, Buffer>();
let keyHandles: Buffer[] = [];

class Refusal extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

const tokenOf = (k: PoolKey) => (k.serial !== undefined ? `serial:${k.serial}` : `label:${k.token}`);
const nameOf = (k: PoolKey) => k.token ?? `serial ${k.serial}`;

function disconnect(): void {
  for (const s of sessions.values()) {
    try {
      p11.C_CloseSession(s);
    } catch {
      // A session the HSM already dropped is closed as far as we care.
    }
  }
  sessions.clear();
  keyHandles = [];
  if (ownsInit) {
    try {
      p11.C_Finalize();
    } catch {
      // The instance is being thrown away either way.
    }
  }
  ownsInit = false;
}

function slotOf(k: PoolKey): Buffer {
  const found = findTokenSlotToLogIn(p11, { label: k.token, serial: k.serial });
  if (found) return found.slot;
  throw new Refusal("TOKEN_NOT_FOUND", `no token ${nameOf(k)} in PKCS#11 module ${module}`);
}

function sessionFor(k: PoolKey): Buffer {
  const existing = sessions.get(tokenOf(k));
  if (existing) return existing;
  const session = p11.C_OpenSession(slotOf(k), pkcs11js.CKF_SERIAL_SESSION | pkcs11js.CKF_RW_SESSION);
  sessions.set(tokenOf(k), session);
  try {
    p11.C_Login(session, pkcs11js.CKU_USER, k.pin);
  } catch (e) {
    const r = ckr(e)?.name;
    if (r === "CKR_PIN_INCORRECT" || r === "CKR_PIN_LEN_RANGE") throw new Refusal("PIN_INCORRECT", `wrong PIN for token ${nameOf(k)}`);
    if (r === "CKR_PIN_LOCKED") throw new Refusal("PIN_LOCKED", `the user PIN of token ${nameOf(k)} is locked`);
    if (r !== "CKR_USER_ALREADY_LOGGED_IN") throw e;
  }
  return session;
}

/** (Re)opens everything: the module instance, a logged-in session per token, every key's handle looked up anew. */
function connect(): void {
  disconnect();
  try {
    p11.C_Initialize({ flags: pkcs11js.CKF_OS_LOCKING_OK });
    ownsInit = true;
  } catch (e) {
    if (ckr(e)?.name !== "CKR_CRYPTOKI_ALREADY_INITIALIZED") throw e;
  }
  keyHandles = keys.map((k) => {
    const found = findObjects(p11, sessionFor(k), keyTemplate({ object: k.object, id: k.id }, pkcs11js.CKO_PRIVATE_KEY), 2);
    if (found.length !== 1) throw new Refusal("KEY_NOT_FOUND", `the key ${k.object ?? "(by id)"} in token ${nameOf(k)} is no longer there`);
    return found[0]!;
  });
}

function sign(key: number, data: Uint8Array, outBytes: number): Uint8Array {
  const k = keys[key]!;
  const session = sessionFor(k);
  p11.C_SignInit(session, { mechanism: k.mechanism }, keyHandles[key]!);
  return new Uint8Array(p11.C_Sign(session, Buffer.from(data.buffer, data.byteOffset, data.byteLength), Buffer.alloc(outBytes)));
}

function failureOf(e: unknown): PoolFailure {
  const message = (e instanceof Error ? e.message : String(e)).split("\n")[0]!;
  if (e instanceof Refusal) return { code: e.code, message };
  return { ckr: ckr(e)?.name, message };
}

port.on("message", (m: ToPoolWorker) => {
  if (m.type === "close") {
    disconnect();
    p11.close();
    port.close();
    return;
  }
  let reply: FromPoolWorker;
  try {
    if (m.type === "connect") {
      connect();
      reply = { type: "done", id: m.id };
    } else {
      const signature = sign(m.key, m.data, m.outBytes);
      reply = { type: "done", id: m.id, signature };
    }
  } catch (e) {
    reply = { type: "failed", id: m.id, failure: failureOf(e) };
  }
  port.postMessage(reply);
});
