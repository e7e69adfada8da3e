#!/usr/bin/env bash
# bench/credits/run.sh: the credits ledger benchmarks (shared/credits
# bench_test.go) against real PostgreSQL.
#   BenchmarkDebitContention  one user, 32 goroutines, 1-credit debits: debits/s
#   BenchmarkBalance10k       balance of a user with 10,000 grants: time per
#                             lookup, and the EXPLAIN ANALYZE plan (it must
#                             use transactions_open_credits_idx)
# Without TEST_DATABASE_URL it runs under scripts/with-services.sh, which finds
# or starts PostgreSQL. BENCHTIME (default 3s) is passed to -benchtime.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
if [[ -z ${TEST_DATABASE_URL:-} ]]; then
	exec "$root/scripts/with-services.sh" "$0" "$@"
fi

cd "$root/shared"
out=$(go test -run '^$' -bench 'BenchmarkDebitContention|BenchmarkBalance10k' \
	-benchtime "${BENCHTIME:-3s}" -count 1 -v ./credits/ 2>&1) || {
	echo "$out" >&2
	exit 1
}
echo "$out"

echo
echo "== credits ledger summary"
awk '
/^BenchmarkDebitContention/ { for (i = 1; i < NF; i++) if ($(i+1) == "debits/s") printf "debit throughput (1 user, 32 goroutines): %s debits/s\n", $i }
/^BenchmarkBalance10k/      { for (i = 1; i < NF; i++) if ($(i+1) == "ns/op") printf "balance lookup (10,000 grants): %.3f ms\n", $i / 1e6 }
' <<<"$out"
if grep -q "Index Only Scan using transactions_open_credits_idx\|Index Scan using transactions_open_credits_idx" <<<"$out"; then
	echo "balance query plan: uses transactions_open_credits_idx"
else
	echo "balance query plan: index NOT used" >&2
	exit 1
fi
