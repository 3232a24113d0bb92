/**
 * What the directory benchmark and its server child (directory-server.ts) agree on: the IPC
 * messages, and the bytes a certificate path is answered with.
 */

export type ServerMessage = { type: "ready"; port: number } | { type: "cpu"; user: number; system: number };
export type ServerCommand = { type: "cpu" } | { type: "stop" };

export const PEM_TYPE = "application/pem-certificate-chain";

/** The same PEM text the directory writes (directory/server.ts `pemOf`). */
export function pemOf(der: Uint8Array): string {
  const b64 = Buffer.from(der).toString("base64");
  return `-----BEGIN CERTIFICATE-----\n${b64.replace(/.{1,64}/g, "$&\n")}-----END CERTIFICATE-----\n`;
}
