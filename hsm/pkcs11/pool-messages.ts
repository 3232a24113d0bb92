/** A key a signing pool's workers sign with: its URI's token and object, and the PIN of its token. */
export interface PoolKey {
  token?: string;
  serial?: string;
  object?: string;
  id?: Uint8Array;
  pin: string;
  mechanism: number;
}

/** What a pool worker is started with. */
export interface PoolWorkerData {
  module: string;
  keys: PoolKey[];
}

/** What a pool thread is asked to do, one at a time. */
export type PoolCall = { type: "connect" } | { type: "sign"; key: number; data: Uint8Array; outBytes: number };
export type ToPoolWorker = (PoolCall & { id: number }) | { type: "close" };

/** A PKCS#11 failure as it crosses from a worker: the CKR name (if any) and one line. */
export interface PoolFailure {
  ckr?: string;
  message: string;
  /** An idmint error the worker raised (a token gone, a wrong PIN, a key missing). */
  code?: string;
}

export type FromPoolWorker = { type: "done"; id: number; signature?: Uint8Array } | { type: "failed"; id: number; failure: PoolFailure };

/**
 * The return values of an HSM that went away and may come back (a network blip, a failover,
 * a restarted appliance): the pool waits and reconnects instead of failing the unit. Handles
 * invalid after a reconnect are in the list too, as the pool looks them up again.
 */
export const RECOVERABLE = new Set([
  "CKR_SESSION_HANDLE_INVALID",
  "CKR_SESSION_CLOSED",
  "CKR_DEVICE_ERROR",
  "CKR_DEVICE_REMOVED",
  "CKR_TOKEN_NOT_PRESENT",
  "CKR_USER_NOT_LOGGED_IN",
  "CKR_CRYPTOKI_NOT_INITIALIZED",
  "CKR_KEY_HANDLE_INVALID",
  "CKR_OBJECT_HANDLE_INVALID",
]);

/** idmint's own codes for an HSM that is not there right now (a token no slot shows). */
export const RECOVERABLE_CODES = new Set(["TOKEN_NOT_FOUND"]);
