#!/usr/bin/env bash
# Makes sure the system packages idmint needs are present: SoftHSM2 (the embedded default HSM),
# OpenSSL (interop checks) and OpenSC's pkcs11-tool (token inspection in tests).
# Installs them with apt-get when run as root; otherwise says what to install and stops.
set -euo pipefail

missing=()
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
command -v pkcs11-tool >/dev/null 2>&1 || missing+=(opensc)
softhsm_found=""
for lib in /usr/lib/softhsm/libsofthsm2.so /usr/lib/*-linux-gnu/softhsm/libsofthsm2.so /usr/local/lib/softhsm/libsofthsm2.so; do
  [ -e "$lib" ] && softhsm_found="$lib" && break
done
{ [ -n "$softhsm_found" ] && command -v softhsm2-util >/dev/null 2>&1; } || missing+=(softhsm2)

[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
  echo "idmint: missing system packages: ${missing[*]}; install them with: sudo apt-get install -y ${missing[*]}" >&2
  exit 1
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "idmint: missing system packages: ${missing[*]}, and no apt-get here; install them with your package manager" >&2
  exit 1
fi
echo "idmint: installing ${missing[*]} with apt-get" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
