import { closeSync, openSync, readFileSync, rmSync, writeSync } from "node:fs";
import { StationError } from "./errors.js";

/** Whether a process `pid` exists (EPERM: it does, another user's). */
export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM";
  }
}

/**
 * One `station run` per home at a time: the line's serial reservations belong to the
 * station, and a second runner would take over the first one's units. A lock left by a
 * killed run (its pid is gone) is taken over, which is how a run resumes after a crash.
 */
export function acquireRunLock(path: string): () => void {
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const fd = openSync(path, "wx", 0o600);
      writeSync(fd, `${process.pid}\n`);
      closeSync(fd);
      return () => rmSync(path, { force: true });
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "EEXIST") throw e;
      const pid = Number.parseInt(readFileSync(path, "utf8"), 10);
      if (Number.isInteger(pid) && pid > 0 && pid !== process.pid && processAlive(pid)) {
        throw new StationError("STATION_BUSY", `another station run (pid ${pid}) is using this home: wait for it to finish or stop it first`);
      }
      rmSync(path, { force: true });
    }
  }
  throw new StationError("STATION_BUSY", `cannot take the station lock ${path}: remove it if no station run is active`);
}
