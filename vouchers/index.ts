export { VouchersError, type VouchersErrorCode } from "./errors.js";
export { defaultMasaKeyUri, masaOf } from "./masa.js";
export { issueVouchers, unitsFor, type IssuedVoucher, type ProvisionedUnit, type ProvisionedUnits, type VoucherRequest } from "./issue.js";
export { sztpdRunning, type SztpdExport } from "./sztpd.js";
export { writeVoucherFiles } from "./files.js";
