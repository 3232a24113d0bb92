export { buildUsageReport } from "./report.js";
