import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { encodeFrame, parseResponse, parseResult } from "../../link/index.js";

// Each ```frame block of the firmware writers' document: one JSON line, then the frame's bytes in hex.
const doc = readFileSync(new URL("../../docs/unit-link.md", import.meta.url), "utf8");
const frames = [...doc.matchAll(/^```frame\n(.+)\n([0-9a-f \n]+)\n```$/gm)].map(([, json, hex]) => ({
  message: JSON.parse(json!) as Record<string, unknown>,
  hex: hex!.replace(/\s+/g, ""),
}));

describe("docs/unit-link.md's worked example", () => {
  it("gives, for every frame it shows in hex, the hello request and answer among them, the bytes encodeFrame writes", () => {
    expect(frames.map((f) => f.message)).toEqual(expect.arrayContaining([{ v: 1, id: 1, op: "hello" }, expect.objectContaining({ v: 1, id: 1, ok: true })]));
    for (const f of frames) expect(f.hex).toBe(encodeFrame(f.message).toString("hex"));
  });

  it("shows a hello answer the station accepts as it stands", () => {
    const answer = frames.find((f) => f.message.id === 1 && f.message.ok === true)!.message;
    const response = parseResponse(answer);
    expect(response.ok && parseResult("hello", response.result)).toEqual(answer.result);
  });
});
