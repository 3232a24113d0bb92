import { spawnSync } from "node:child_process";
import { chmodSync, chownSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

/**
 * A throw-away PostgreSQL cluster for one test file (or one bench run): initdb in a temporary
 * directory, listening only on a Unix socket in it, trust authentication, stopped and removed
 * by stop(). As root it runs as the postgres user (initdb refuses root).
 */
export interface PgCluster {
  /** The socket directory: the host of every URL. */
  socketDir: string;
  /** A connection URL for database `db` (made by createDb). */
  url(db: string): string;
  createDb(db: string): string;
  /** psql -c, as the superuser, on database `db`; throws with psql's stderr on failure. */
  sql(db: string, statement: string): string;
  /** pg_ctl stop -m fast (the server's connections are cut) and start again; data kept. */
  stopServer(): void;
  /** The postmaster and its live children (the backends): whose CPU a benchmark adds up. */
  pids(): number[];
  startServer(): void;
  stop(): void;
}

function binDir(): string | undefined {
  const base = "/usr/lib/postgresql";
  if (!existsSync(base)) return undefined;
  const versions = readdirSync(base).filter((v) => existsSync(join(base, v, "bin", "initdb"))).sort((a, b) => Number(b) - Number(a));
  return versions[0] && join(base, versions[0], "bin");
}

/** Why PostgreSQL tests cannot run here, or undefined when they can. */
export function pgUnavailable(): string | undefined {
  if (!binDir()) return "PostgreSQL is not installed (softhsm-config/ensure-deps.sh installs it as root): PostgreSQL store tests skipped";
  return undefined;
}

export function startPgCluster(): PgCluster {
  const bin = binDir();
  if (!bin) throw new Error(pgUnavailable());
  const root = process.getuid?.() === 0;
  const dir = mkdtempSync(join(tmpdir(), "idmint-pg-"));
  const data = join(dir, "data");
  const pgUid = root ? Number(spawnSync("id", ["-u", "postgres"], { encoding: "utf8" }).stdout.trim()) : undefined;
  if (root) {
    chownSync(dir, pgUid!, pgUid!);
    chmodSync(dir, 0o755);
  }
  const run = (cmd: string, args: string[]): string => {
    const r = root ? spawnSync("runuser", ["-u", "postgres", "--", join(bin, cmd), ...args], { encoding: "utf8" }) : spawnSync(join(bin, cmd), args, { encoding: "utf8" });
    if (r.status !== 0) throw new Error(`${cmd} ${args.join(" ")}: exit ${r.status}: ${r.stderr}`);
    return r.stdout;
  };
  run("initdb", ["-D", data, "-U", "postgres", "--auth=trust", "--no-sync", "-E", "UTF8", "--locale=C"]);
  writeFileSync(join(data, "postgresql.auto.conf"), `listen_addresses = ''\nunix_socket_directories = '${dir}'\nfsync = off\nmax_connections = 200\nshared_buffers = 128MB\n`);
  if (root) chownSync(join(data, "postgresql.auto.conf"), pgUid!, pgUid!);
  const start = () => void run("pg_ctl", ["-D", data, "-w", "-s", "-l", join(dir, "log"), "start"]);
  start();
  let running = true;
  // A test process that ends without its afterAll (a crash, a kill by the runner) still stops its cluster.
  const onExit = () => {
    if (running) spawnSync(root ? "runuser" : join(bin, "pg_ctl"), root ? ["-u", "postgres", "--", join(bin, "pg_ctl"), "-D", data, "-s", "-m", "immediate", "stop"] : ["-D", data, "-s", "-m", "immediate", "stop"]);
    rmSync(dir, { recursive: true, force: true });
  };
  process.once("exit", onExit);
  const url = (db: string) => `postgres://postgres@localhost/${db}?host=${encodeURIComponent(dir)}`;
  const sql = (db: string, statement: string) => run("psql", ["-h", dir, "-U", "postgres", "-d", db, "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", statement]);
  return {
    socketDir: dir,
    url,
    createDb(db) {
      sql("postgres", `CREATE DATABASE "${db}"`);
      return url(db);
    },
    sql,
    pids() {
      const main = Number(readFileSync(join(data, "postmaster.pid"), "utf8").split("\n", 1)[0]);
      const children = readdirSync("/proc")
        .filter((d) => /^\d+$/.test(d))
        .filter((d) => {
          try {
            return Number(readFileSync(`/proc/${d}/stat`, "utf8").replace(/^.*\) /s, "").split(" ")[1]) === main;
          } catch {
            return false;
          }
        });
      return [main, ...children.map(Number)];
    },
    stopServer() {
      run("pg_ctl", ["-D", data, "-w", "-s", "-m", "fast", "stop"]);
      running = false;
    },
    startServer() {
      start();
      running = true;
    },
    stop() {
      try {
        if (running) run("pg_ctl", ["-D", data, "-w", "-s", "-m", "immediate", "stop"]);
      } finally {
        running = false;
        process.off("exit", onExit);
        rmSync(dir, { recursive: true, force: true });
      }
    },
  };
}
