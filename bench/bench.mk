# bench.mk: the benchmark targets (included by the Makefile's bench section).
# `make bench` runs bench/run.sh, which runs every section below in one run
# and writes bench/RESULTS.md; each target here runs one section alone and
# prints its tables (results also in .run/bench/results/<section>.md).
# Benchmarks are never part of make test.

.PHONY: bench-fairness bench-proxy bench-sched bench-pipeline bench-accounts bench-memory bench-credits bench-soak
bench-proxy: ## proxy overhead vs nginx and HAProxy (wrk), ratios
	@bench/proxy/run.sh
bench-sched: ## scheduling quality: 4 paced gpusvc, eeft vs least_conn anchors vs offline ideal
	@bench/sched/run.sh
bench-pipeline: ## POST /images overhead beyond the render, images/s per core
	@bench/pipeline/run.sh
bench-accounts: ## login latency/throughput vs argon2id cost, credits ledger
	@bench/accounts/run.sh
bench-memory: ## RSS idle, proxy RSS with 50 concurrent 5 MB uploads
	@bench/memory/run.sh
bench-credits: ## credits ledger: debits/s under contention, balance with 10,000 grants
	@bench/credits/run.sh
bench-soak: ## mixed traffic through the proxy for SOAK_DURATION (10m): errors, p50/p99 per route, RSS start/end
	@bench/soak/run.sh
bench-fairness: ## fair sharing: one heavy user vs three light ones, FIFO vs fair side by side (B–D wait, A throughput, utilisation)
	@bench/fairness/run.sh
