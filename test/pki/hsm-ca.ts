import { Home, fixedClock, systemRandom, type IdmintConfig, type KeyRole } from "../../core/index.js";
import { Hsm, initEmbeddedHsm } from "../../hsm/index.js";
import { runCeremony, type CeremonyResult } from "../../pki/index.js";

export interface HsmCa {
  home: Home;
  config: IdmintConfig;
  hsm: Hsm;
  certs: CeremonyResult;
}

/** An embedded SoftHSM home under `dir` and the key ceremony run in it, every certificate dated `issuedAt`. */
export async function hsmCa(dir: string, issuedAt: Date): Promise<HsmCa> {
  const home = new Home(`${dir}/home`);
  initEmbeddedHsm(home);
  const config = home.readConfig();
  const hsm = Hsm.open({ module: config.hsm.module, softhsmConf: config.hsm.softhsmConf });
  const certs = await runCeremony({
    keys: { create: (role: KeyRole, alg) => hsm.createKey(config.keys[role], alg), destroy: (role: KeyRole) => hsm.destroyKey(config.keys[role]) },
    organization: "Acme Routers",
    stationId: "line-7",
    clock: fixedClock(issuedAt),
    random: systemRandom,
  });
  return { home, config, hsm, certs };
}
