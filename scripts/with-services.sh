#!/usr/bin/env bash
# with-services.sh CMD [ARG...] runs CMD with the data stores ensured by
# scripts/services.sh (DATABASE_URL, REDIS_URL, TEST_DATABASE_URL and
# TEST_REDIS_URL exported), then stops whatever throwaway servers were started
# for it, however CMD ends (success, failure, Ctrl-C). Its exit status is CMD's.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
(($# > 0)) || {
	echo "usage: $0 CMD [ARG...]" >&2
	exit 2
}

exports=$("$here/services.sh")
eval "$exports"

cleanup() {
	local rc=$?
	if [[ -n ${SERVICES_STARTED:-} ]]; then
		# shellcheck disable=SC2086 # a space-separated list of names
		"$here/services.sh" stop $SERVICES_STARTED || true
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

"$@"
