import { errorClass, type ErrorKind } from "../core/index.js";

/**
 * - LISTEN_FAILED: the dashboard cannot listen on the address and port asked for.
 * - DASHBOARD_CRASHED: its process failed to start with something that is not one of our errors: a bug.
 */
export type DashboardErrorCode = "LISTEN_FAILED" | "DASHBOARD_CRASHED";

const KIND: Record<DashboardErrorCode, ErrorKind> = {
  LISTEN_FAILED: "unavailable",
  DASHBOARD_CRASHED: "internal",
};

export function isDashboardErrorCode(code: string | undefined): code is DashboardErrorCode {
  return code !== undefined && Object.hasOwn(KIND, code);
}

export class DashboardError extends errorClass("DashboardError", KIND) {}
