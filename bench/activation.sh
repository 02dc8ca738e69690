#!/bin/sh
# bench/activation.sh [RUNS] [ROUNDS]: what libsystemd costs each connection.
#
# Builds ./smtpd (libsystemd opened only when needed) and runs bench/greet on
# it and on its variants in turn, ROUNDS rounds of RUNS runs, so all see the
# same machine load. "linked" is ./smtpd with libsystemd.so.0 preloaded: the
# loader maps it and its dependencies at start, as when it was linked. "journal" is ./smtpd made to believe its stderr
# is a journal stream: it opens libsystemd for its first log line.
# Prints one line per variant and round; bench/ACTIVATION.md has the figures.
set -eu
runs=${1:-300}
rounds=${2:-3}
cd "$(dirname "$0")/.."
make -s smtpd
CC=${CC:-cc}
$CC -O2 -o bench/greet bench/greet.c
$CC -O2 -o bench/hello bench/hello.c
libsystemd=$(ldconfig -p | awk '/libsystemd\.so\.0 .*x86-64|libsystemd\.so\.0 / { print $NF; exit }')
[ -n "$libsystemd" ] || { echo "no libsystemd.so.0"; exit 1; }
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
stream=$(stat -L -c '%d:%i' /proc/self/fd/2)
round=1
while [ "$round" -le "$rounds" ]; do
	printf 'round %d hello   ' "$round"; bench/greet "$runs" bench/hello
	printf 'round %d linked  ' "$round"; LD_PRELOAD=$libsystemd bench/greet "$runs" ./smtpd -m "$dir/M" -h b.example
	printf 'round %d lazy    ' "$round"; bench/greet "$runs" ./smtpd -m "$dir/M" -h b.example
	printf 'round %d journal ' "$round"; JOURNAL_STREAM=$stream bench/greet "$runs" ./smtpd -m "$dir/M" -h b.example
	rm -rf "$dir/M"
	round=$((round + 1))
done
