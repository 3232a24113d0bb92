/**
 * The CMP benchmark's units, a process of their own (as the TCP line's simulator is): argv[2] is
 * the JSON of enrolOverCmp's options; the result goes back over IPC.
 */
import { enrolOverCmp } from "../sim/index.js";

const { line, cmp } = JSON.parse(process.argv[2]!) as { line: Parameters<typeof enrolOverCmp>[0]; cmp: Omit<Parameters<typeof enrolOverCmp>[1], "secret"> & { secret: string } };
const result = await enrolOverCmp(line, { ...cmp, secret: new Uint8Array(Buffer.from(cmp.secret)) });
process.send!(result, () => process.exit(0));
