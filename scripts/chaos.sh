#!/usr/bin/env bash
# chaos.sh (`make chaos`) runs the fault-injection suite bench/cmd/chaos
# against the real stack: it installs what the suite needs when missing (as
# root; otherwise it says what to install), builds bin/proxy, bin/accountsvc,
# bin/gpusvc and bin/chaos, and runs bin/chaos. The suite starts its OWN
# PostgreSQL and Redis on free loopback ports under a temporary folder (never
# the machine's servers, which it must stop and kill), three gpusvc, accountsvc
# and the proxy, runs five scenarios, prints each one's figures, stops
# everything it started and exits non-zero when a scenario fails.
#
# CHAOS_ARGS passes flags to bin/chaos, e.g. CHAOS_ARGS='-only 1,2 -keep'
# (-keep leaves the logs and data of the run in its temporary folder).
# Takes about 3 minutes.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

log() { printf 'chaos: %s\n' "$*" >&2 || true; }
die() {
	log "error: $*"
	exit 1
}

# The PostgreSQL server binaries live outside PATH on Debian.
have_pg() {
	compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || command -v initdb >/dev/null 2>&1
}
missing=()
have_pg || missing+=(postgresql)
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v ffmpeg >/dev/null 2>&1 || missing+=(ffmpeg)
if ((${#missing[@]} > 0)); then
	[[ $(id -u) -eq 0 ]] || die "missing ${missing[*]}; install them first (sudo apt-get install ${missing[*]})"
	log "installing ${missing[*]} (apt-get)"
	DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 -q update >&2
	DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 -q install -y --no-install-recommends "${missing[@]}" >&2
fi

make --no-print-directory build >&2
(cd bench && go build -o ../bin/chaos ./cmd/chaos) >&2
# shellcheck disable=SC2086 # CHAOS_ARGS is a list of flags
exec bin/chaos -bin bin ${CHAOS_ARGS:-}
