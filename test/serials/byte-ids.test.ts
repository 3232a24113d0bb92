import { describe, expect, it } from "vitest";
import { ByteIds } from "../../serials/byte-ids.js";

describe("ByteIds: dense ids for strings, off the V8 heap", () => {
  it("hands out 0, 1, 2, ... once per distinct string through many table growths, and gives each string back", () => {
    const ids = new ByteIds();
    const serials = Array.from({ length: 50_000 }, (_, i) => `SN${String(i).padStart(8, "0")}`);
    serials.forEach((s, i) => expect(ids.id(s)).toBe(i));
    expect(ids.size).toBe(serials.length);
    for (const i of [0, 1, 4095, 4096, 49_999]) {
      expect(ids.id(serials[i]!)).toBe(i);
      expect(ids.text(i)).toBe(serials[i]);
    }
    expect(ids.id("SN99999999", false)).toBe(-1);
    expect(ids.size).toBe(serials.length);
  });

  it("tells apart strings whose bytes are prefixes of each other, the empty string and text beyond ASCII or longer than its scratch", () => {
    const ids = new ByteIds();
    const texts = ["", "a", "aa", "a\u0000", "é", "e\u0301", "x".repeat(1000), "x".repeat(1001)];
    texts.forEach((t, i) => expect(ids.id(t)).toBe(i));
    texts.forEach((t, i) => {
      expect(ids.id(t)).toBe(i);
      expect(ids.text(i)).toBe(t);
    });
  });
});
