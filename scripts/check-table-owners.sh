#!/usr/bin/env bash
# check-table-owners.sh fails when SQL naming an owned table appears in Go
# production code outside the table's owner package. Each table has one
# owner, the only package with SQL for it; every other package calls the
# owner's functions (the map below lists the owners). Tests (*_test.go,
# the e2e/ and bench/ modules), testdata/ and migrations/ are not checked:
# fixtures and harnesses may write any table.
#
# SQL is recognised by a keyword followed by the table name (FROM, INTO,
# UPDATE, JOIN, TABLE; any case), which is how every statement in the code
# names its table; comment lines are skipped. `users` has no single owner yet (accounts, token
# revocation, the credits row lock and the job emails each read it), so it
# is not checked. Run by `make lint`; exit 1 lists every offending line.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

# table -> owner directory (the package and anything below it).
declare -A owner=(
	[images]=shared/library
	[audio]=shared/library
	[videos]=shared/library
	[links]=shared/library
	[video_projects]=shared/library
	[api_hosts]=shared/apihost
	[jobs]=shared/jobs
	[river_job]=shared/jobs
	[transactions]=shared/credits
	[transaction_allocations]=shared/credits
)

bad=0
for table in "${!owner[@]}"; do
	own=${owner[$table]}
	while IFS= read -r hit; do
		[[ -z $hit ]] && continue
		file=${hit%%:*}
		file=${file#./}
		[[ $file == "$own"/* ]] && continue
		line=${hit#*:*:}
		[[ $line =~ ^[[:space:]]*// ]] && continue
		printf '%s: SQL on table %s outside its owner %s\n' "$hit" "$table" "$own" >&2
		bad=1
	done < <(grep -rnIiE "\b(FROM|INTO|UPDATE|JOIN|TABLE)[[:space:]]+\"?${table}\"?\b" \
		--include='*.go' --exclude='*_test.go' \
		--exclude-dir=.git --exclude-dir=.run --exclude-dir=testdata --exclude-dir=migrations \
		--exclude-dir=e2e --exclude-dir=bench . || true)
done
if ((bad)); then
	echo "check-table-owners: move the SQL into the owner package and call it from there" >&2
	exit 1
fi
echo "check-table-owners: every owned table is written and read only by its owner"
