import { readFileSync } from "node:fs";
import { HsmError } from "./errors.js";

/**
 * A PKCS#11 URI (RFC 7512) naming a token and an object in it. Only the attributes idmint
 * uses are kept; `pin-source` is a query attribute (RFC 7512 §2.3) and `pin-value` is refused
 * so that PINs never travel on a command line or in a log.
 */
export interface Pkcs11Uri {
  token?: string;
  serial?: string;
  object?: string;
  /** CKA_ID, raw bytes. */
  id?: Uint8Array;
  type?: "private" | "public" | "cert" | "secret-key" | "data";
  pinSource?: string;
  modulePath?: string;
}

const PATH_ATTRS = new Set(["token", "serial", "object", "id", "type", "manufacturer", "model", "library-manufacturer", "library-description", "library-version", "slot-description", "slot-manufacturer", "slot-id"]);
const QUERY_ATTRS = new Set(["pin-source", "pin-value", "module-path", "module-name"]);

/** RFC 7512 §2.3: values are percent-encoded octets; `id` keeps them raw, the rest are UTF-8. */
function decodeOctets(value: string, uri: string): Buffer {
  const bytes: number[] = [];
  for (let i = 0; i < value.length; i++) {
    const c = value[i]!;
    if (c === "%") {
      const hex = value.slice(i + 1, i + 3);
      if (!/^[0-9A-Fa-f]{2}$/.test(hex)) {
        throw new HsmError("URI_INVALID", `bad percent-encoding in PKCS#11 URI ${redact(uri)}: encode reserved characters as %XX`);
      }
      bytes.push(parseInt(hex, 16));
      i += 2;
    } else {
      bytes.push(...Buffer.from(c, "utf8"));
    }
  }
  return Buffer.from(bytes);
}

function decodePct(value: string, uri: string): string {
  return decodeOctets(value, uri).toString("utf8");
}

function redact(uri: string): string {
  return uri.replace(/pin-value=[^;&]*/g, "pin-value=***");
}

export function parsePkcs11Uri(uri: string): Pkcs11Uri {
  if (!uri.startsWith("pkcs11:")) {
    throw new HsmError("URI_INVALID", `"${redact(uri)}" is not a PKCS#11 URI: write it as pkcs11:token=LABEL;object=LABEL`);
  }
  const rest = uri.slice("pkcs11:".length);
  const q = rest.indexOf("?");
  const path = q === -1 ? rest : rest.slice(0, q);
  const query = q === -1 ? "" : rest.slice(q + 1);
  const out: Pkcs11Uri = {};
  for (const part of path.split(";").filter(Boolean)) {
    const eq = part.indexOf("=");
    const name = eq === -1 ? part : part.slice(0, eq);
    if (!PATH_ATTRS.has(name) || eq === -1) {
      throw new HsmError("URI_INVALID", `unknown or empty attribute "${name}" in PKCS#11 URI ${redact(uri)}: see RFC 7512 §2.3`);
    }
    const raw = part.slice(eq + 1);
    const value = name === "id" ? "" : decodePct(raw, uri);
    if (name === "token") out.token = value;
    else if (name === "serial") out.serial = value;
    else if (name === "object") out.object = value;
    else if (name === "id") out.id = new Uint8Array(decodeOctets(raw, uri));
    else if (name === "type") {
      if (!["private", "public", "cert", "secret-key", "data"].includes(value)) {
        throw new HsmError("URI_INVALID", `type=${value} in PKCS#11 URI ${redact(uri)} is not one of private, public, cert, secret-key, data`);
      }
      out.type = value as Pkcs11Uri["type"];
    }
  }
  for (const part of query.split("&").filter(Boolean)) {
    const eq = part.indexOf("=");
    const name = eq === -1 ? part : part.slice(0, eq);
    if (!QUERY_ATTRS.has(name) || eq === -1) {
      throw new HsmError("URI_INVALID", `unknown query attribute "${name}" in PKCS#11 URI ${redact(uri)}: see RFC 7512 §2.3`);
    }
    if (name === "pin-value") {
      throw new HsmError("URI_INVALID", `PKCS#11 URI ${redact(uri)} carries pin-value: put the PIN in a file and use pin-source=file:/path instead`);
    }
    const value = decodePct(part.slice(eq + 1), uri);
    if (name === "pin-source") out.pinSource = value;
    else if (name === "module-path") out.modulePath = value;
  }
  if (!out.token && !out.serial) {
    throw new HsmError("URI_INVALID", `PKCS#11 URI ${redact(uri)} names no token: add token=LABEL (slot numbers are not stable)`);
  }
  return out;
}

function pct(value: string): string {
  // RFC 7512 §2.3: pk11-pchar allows unreserved and a few sub-delims; encode the rest.
  return encodeURIComponent(value).replace(/[!'()*]/g, (c) => "%" + c.charCodeAt(0).toString(16).toUpperCase());
}

export function formatPkcs11Uri(u: Pkcs11Uri): string {
  const path: string[] = [];
  if (u.token !== undefined) path.push(`token=${pct(u.token)}`);
  if (u.serial !== undefined) path.push(`serial=${pct(u.serial)}`);
  if (u.object !== undefined) path.push(`object=${pct(u.object)}`);
  if (u.id !== undefined) path.push(`id=${[...u.id].map((b) => "%" + b.toString(16).padStart(2, "0")).join("")}`);
  if (u.type !== undefined) path.push(`type=${u.type}`);
  const query: string[] = [];
  if (u.pinSource !== undefined) query.push(`pin-source=${pct(u.pinSource).replace(/%2F/g, "/").replace(/%3A/g, ":")}`);
  if (u.modulePath !== undefined) query.push(`module-path=${pct(u.modulePath).replace(/%2F/g, "/")}`);
  return `pkcs11:${path.join(";")}${query.length ? "?" + query.join("&") : ""}`;
}

/** A short name for messages: never includes the PIN source's content. */
export function describeKey(u: Pkcs11Uri): string {
  return `${u.object ?? "(any object)"} in token ${u.token ?? `serial ${u.serial}`}`;
}

/**
 * Reads the PIN that a `pin-source` names: `file:/path` (the file's first line) or
 * `env:NAME` (an environment variable). Never retried, never logged.
 */
export function readPin(pinSource: string | undefined, token: string, env: NodeJS.ProcessEnv = process.env): string {
  if (!pinSource) {
    throw new HsmError("PIN_SOURCE", `no pin-source for token ${token}: add ?pin-source=file:/path/to/pin to its key URI`);
  }
  if (pinSource.startsWith("env:")) {
    const name = pinSource.slice(4);
    const v = env[name];
    if (v === undefined || v === "") {
      throw new HsmError("PIN_SOURCE", `environment variable ${name} (pin-source of token ${token}) is not set: export it with the token's PIN`);
    }
    return v;
  }
  const path = pinSource.startsWith("file://") ? pinSource.slice(7) : pinSource.startsWith("file:") ? pinSource.slice(5) : pinSource;
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch {
    throw new HsmError("PIN_SOURCE", `cannot read the PIN file ${path} for token ${token}: create it (mode 0600) or fix pin-source`);
  }
  const pin = text.split(/\r?\n/)[0] ?? "";
  if (!pin) throw new HsmError("PIN_SOURCE", `the PIN file ${path} for token ${token} is empty: write the PIN on its first line`);
  return pin;
}
