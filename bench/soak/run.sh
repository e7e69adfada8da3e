#!/usr/bin/env bash
# bench/soak/run.sh (make bench-soak): the soak (bench/README.md §7).
#
# bench/cmd/soak starts the real stack (the built binaries, two gpusvc, its
# own throwaway PostgreSQL and Redis on free loopback ports) and drives mixed
# traffic through the proxy (logins, generations, library reads, uploads)
# for SOAK_DURATION (default 10m) after a 30 s warm-up. It reports the
# errors (target: 0), p50/p99 per route, and the RSS and footprint (Pss without shared memory) of every process at
# the start and the end (target: footprint end / start <= 1.20 for each).
#
# Environment: SOAK_DURATION (a Go duration, default 10m), SOAK_CLIENTS
# (default 8), BENCH_SKIP_BUILD=1.
# shellcheck source=../lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
bench_setup soak
if ! compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null; then need initdb:postgresql; fi
need redis-server:redis-server
build
if [[ ${BENCH_SKIP_BUILD:-} != 1 ]] || [[ ! -x $BIN/soak ]]; then
	(cd "$ROOT/bench" && go build -o "$BIN/soak" ./cmd/soak) >&2
fi
log "soak for ${SOAK_DURATION:-10m} (after a 30 s warm-up)"
"$BIN/soak" -bin "$BIN" -duration "${SOAK_DURATION:-10m}" -clients "${SOAK_CLIENTS:-8}" -results "$OUT_DIR"
