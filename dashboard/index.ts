export { startDashboard, type DashboardOptions, type DashboardServer } from "./server.js";
export { startDashboardProcess, type DashboardProcess } from "./process.js";
export type { DashboardStatus } from "./status.js";
export { DashboardError, type DashboardErrorCode } from "./errors.js";
