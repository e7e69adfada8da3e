#!/usr/bin/env bash
# bench/accounts/run.sh (make bench-accounts): accounts (bench/README.md §4).
#
# accountsvc alone on loopback with a fresh, verified user. benchtool closed
# sends POST /login (HTTP basic auth, argon2id verification) one at a time
# for the latency, then with 2 × cores clients for the throughput.
# benchtool argon2 measures one argon2id hash with the same parameters and
# library (golang.org/x/crypto/argon2), so the service's own overhead is
# login − hash. The credits ledger figures come from bench/credits/run.sh
# (written by the credits engineer), run here and summarised.
#
# Environment: LOGIN_N (sequential logins, default 40), LOGIN_SECONDS
# (default 10), ARGON2_MEMORY_KIB/ARGON2_TIME/ARGON2_THREADS (passed to
# accountsvc and to the hash measurement), BENCH_SKIP_BUILD=1.
# shellcheck source=../lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
bench_setup accounts
need jq:jq curl:curl psql:postgresql-client
build
stores
n=${LOGIN_N:-40}
secs=${LOGIN_SECONDS:-10}
cores=$(nproc)
mem=${ARGON2_MEMORY_KIB:-19456} passes=${ARGON2_TIME:-2} threads=${ARGON2_THREADS:-1}
mapfile -t envs < <(common_env)
envs+=("ARGON2_MEMORY_KIB=$mem" "ARGON2_TIME=$passes" "ARGON2_THREADS=$threads")

next_port
acc_addr=127.0.0.1:$PORT
start_accountsvc "$acc_addr"
make_user "http://$acc_addr" "$WORK/outbox"
record_rss "idle (accounts)" accountsvc

hash_f=$WORK/argon2.json
"$BIN/benchtool" argon2 -m "$mem" -t "$passes" -p "$threads" -n 30 >"$hash_f"
sampler_start "login load" accountsvc
seq_f=$WORK/login-seq.json
"$BIN/benchtool" closed -url "http://$acc_addr/login" -method POST -c 1 -n "$n" -warmup 2 -label sequential \
	-H "challenge-token: $CHALLENGE" -basic "$USER_EMAIL:$USER_PASSWORD" >"$seq_f" 2>>"$WORK/benchtool.log"
par_f=$WORK/login-par.json
t0=$(cpu_ticks accountsvc)
"$BIN/benchtool" closed -url "http://$acc_addr/login" -method POST -c $((2 * cores)) -duration "${secs}s" -label concurrent \
	-H "challenge-token: $CHALLENGE" -basic "$USER_EMAIL:$USER_PASSWORD" >"$par_f" 2>>"$WORK/benchtool.log"
t1=$(cpu_ticks accountsvc)
sampler_stop
[[ $(jget "$seq_f" ok) -gt 0 ]] || die "no successful login: $(jq -c .statuses "$seq_f")"
cpu_per=$(awk -v a="$t0" -v b="$t1" -v hz="$(getconf CLK_TCK)" -v n="$(jget "$par_f" ok)" 'BEGIN { if (n > 0) printf "%.1f", (b - a) / hz / n * 1000; else print "n/a" }')

md "## 4. Accounts" "" \
	"POST /login (basic auth, argon2id m=${mem} KiB, t=${passes}, p=${threads}) straight to accountsvc; the hash cost measured alone with the same library and parameters." "" \
	"| measurement | p50 ms | p99 ms | mean ms | per second |" "|---|---:|---:|---:|---:|" \
	"| argon2id hash alone (1 thread, sequential) | $(jget "$hash_f" p50_ms) | $(jget "$hash_f" p99_ms) | $(jget "$hash_f" mean_ms) | $(jget "$hash_f" per_sec) |" \
	"| login, 1 client ($n logins) | $(jget "$seq_f" p50_ms) | $(jget "$seq_f" p99_ms) | $(jget "$seq_f" mean_ms) | $(jget "$seq_f" per_sec) |" \
	"| login, $((2 * cores)) clients (${secs} s) | $(jget "$par_f" p50_ms) | $(jget "$par_f" p99_ms) | $(jget "$par_f" mean_ms) | $(jget "$par_f" per_sec) |" "" \
	"Service overhead of a login beyond the hash (1 client, p50): $(awk -v a="$(jget "$seq_f" p50_ms)" -v b="$(jget "$hash_f" p50_ms)" 'BEGIN { printf "%.2f", a - b }') ms. CPU per login under load: $cpu_per ms (accountsvc process). Throughput ceiling on $cores cores ≈ cores / hash time = $(awk -v c="$cores" -v h="$(jget "$hash_f" mean_ms)" 'BEGIN { printf "%.0f", c * 1000 / h }') logins/s; measured $(jget "$par_f" per_sec) ($(jget "$par_f" rejected) rejected, $(jget "$par_f" failed) failed)." ""

# The credits ledger (bench/credits/run.sh, against the same PostgreSQL).
stop accountsvc
credits_out=$WORK/credits.txt
if TEST_DATABASE_URL=$ADMIN_URL "$ROOT/bench/credits/run.sh" >"$credits_out" 2>&1; then
	md "Credits ledger (bench/credits/run.sh: shared/credits benchmarks on real PostgreSQL):" "" '```' \
		"$(sed -n '/== credits ledger summary/,$p' "$credits_out" | tail -n +2)" \
		"$(grep -E '^Benchmark' "$credits_out" || true)" '```' ""
else
	md "Credits ledger: bench/credits/run.sh failed (log: .run/bench/accounts/credits.txt):" "" '```' "$(tail -n 15 "$credits_out")" '```' ""
	log "bench/credits/run.sh failed; see $credits_out"
fi
