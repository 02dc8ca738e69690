#!/bin/sh
# ./serve, the README's first command: on a copy of the tree it builds
# smtpd, listens, and a real client's message lands in that copy's Maildir.
# The listener runs in its own process group and is stopped by its pid.
set -eu
top=$PWD
dir=$(mktemp -d)
pid=""
cleanup() {
	[ -z "$pid" ] || kill -TERM "-$pid" 2>/dev/null || true
	[ -z "$pid" ] || wait "$pid" 2>/dev/null || true
	rm -rf "$dir"
}
trap cleanup EXIT
fail() { echo "FAIL: $*"; [ ! -f "$dir/serve.log" ] || cat "$dir/serve.log"; exit 1; }

mkdir "$dir/tree"
cp -R "$top"/*.c "$top"/*.h "$top/Makefile" "$top/serve" "$top/tools" "$dir/tree/"
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
SMTPD_LISTEN=127.0.0.1:$port setsid "$dir/tree/serve" >"$dir/serve.log" 2>&1 </dev/null &
pid=$!
# Building takes a while on a busy machine: up to 120 s for the greeting.
i=0
until swaks --server "127.0.0.1:$port" --quit-after banner --timeout 2 >/dev/null 2>&1; do
	i=$((i + 1))
	[ "$i" -lt 240 ] || fail "no greeting on port $port"
	kill -0 "$pid" 2>/dev/null || fail "./serve exited"
	sleep 0.5
done
grep -q "listening on 127.0.0.1:$port" "$dir/serve.log" || fail "no start message"
printf 'Subject: serve\r\n\r\nserved SERVE1\r\n.dot\r\nend' >"$dir/body"
swaks --server "127.0.0.1:$port" --helo client.example --from a@client.example \
    --to b@example.org --data - --timeout 20 <"$dir/body" >"$dir/swaks.log" 2>&1 ||
	{ cat "$dir/swaks.log"; fail "swaks"; }
files=$(find "$dir/tree/Maildir/new" -type f | wc -l)
[ "$files" -eq 1 ] || fail "$files messages in ./Maildir/new"
grep -q '^served SERVE1$' "$dir"/tree/Maildir/new/* || fail "body not stored"
grep -q '^\.dot$' "$dir"/tree/Maildir/new/* || fail "dot line not unstuffed"
echo "serve: 1 passed, 0 failed"
