#!/usr/bin/env bash
# Makes sure the system packages idmint needs are present: SoftHSM2 (the embedded default HSM),
# OpenSSL (interop checks), OpenSC's pkcs11-tool (token inspection in tests), p11-kit's server
# and client module (the tests reach SoftHSM through them as a network HSM would be reached),
# a headless Chromium (the dashboard's browser tests), PostgreSQL (the directory's store at
# scale) and Go with golang.org/x/mod (the tiles' independent check by sumdb/tlog).
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
# `p11-kit server` execs p11-kit-remote, so the binary alone is not enough.
{ command -v p11-kit >/dev/null 2>&1 && [ -x /usr/libexec/p11-kit/p11-kit-remote ]; } || missing+=(p11-kit)
compgen -G "/usr/lib/*-linux-gnu/pkcs11/p11-kit-client.so" >/dev/null || missing+=(p11-kit-modules)
# The dashboard's browser tests drive Debian's headless Chromium (playwright-core, never `playwright install`).
{ command -v chromium-headless-shell >/dev/null 2>&1 || command -v chromium >/dev/null 2>&1; } || missing+=(chromium-headless-shell)
# The ledger tiles are checked by Go's golang.org/x/mod/sumdb/tlog, offline in GOPATH mode.
command -v go >/dev/null 2>&1 || missing+=(golang-go)
[ -d /usr/share/gocode/src/golang.org/x/mod/sumdb/tlog ] || missing+=(golang-golang-x-mod-dev)

# The directory's PostgreSQL store is tested on a throw-away cluster (test/postgres.ts), never a running server.
compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || missing+=(postgresql)

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
