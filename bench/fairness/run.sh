#!/usr/bin/env bash
# bench/fairness/run.sh (make bench-fairness): fair sharing of the GPU
# fleet (issue 17, bench/README.md).
#
# bench/cmd/fairness starts the real stack (the built binaries, two gpusvc
# with two GPU slots each and the built-in backend paced to
# FAIRNESS_SERVICE seconds per image, its own throwaway PostgreSQL and
# Redis on free loopback ports) twice: FIFO (ADMISSION_POLICY=fifo
# JOB_FAIRNESS=fifo, today's order) and fair (ADMISSION_POLICY=fair
# JOB_FAIRNESS=fair). In each, user A floods (64 concurrent synchronous
# POST /images and 200 async jobs) while users B, C and D each send one
# request every few seconds. It prints one side-by-side table: B–D p50/p99
# wait, A's throughput, fleet utilisation, and the three targets with a
# verdict each. About 3 minutes.
#
# Environment: FAIRNESS_SERVICE (seconds per image, default 1),
# FAIRNESS_MEASURE (a Go duration, default 60s), FAIRNESS_POLICIES
# (default fifo,fair), BENCH_SKIP_BUILD=1.
# shellcheck source=../lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
bench_setup fairness
if ! compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null; then need initdb:postgresql; fi
need redis-server:redis-server
build
if [[ ${BENCH_SKIP_BUILD:-} != 1 ]] || [[ ! -x $BIN/fairness ]]; then
	(cd "$ROOT/bench" && go build -o "$BIN/fairness" ./cmd/fairness) >&2
fi
log "FIFO vs fair, ${FAIRNESS_MEASURE:-60s} each"
"$BIN/fairness" -bin "$BIN" -service "${FAIRNESS_SERVICE:-1}" -measure "${FAIRNESS_MEASURE:-60s}" \
	-policies "${FAIRNESS_POLICIES:-fifo,fair}" -results "$OUT_DIR"
