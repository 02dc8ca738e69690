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
# A free port is only free until someone binds it: another test may take
# it while ./serve builds smtpd. So ready means a process of serve's own
# group (setsid) holds the listening socket, read from /proc (a greeting
# alone could come from someone else's server on that port), and when
# serve fails because the port was taken it starts again on another one.
start() {
	port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
	SMTPD_LISTEN=127.0.0.1:$port setsid "$dir/tree/serve" >"$dir/serve.log" 2>&1 </dev/null &
	pid=$!
}
state() { python3 "$top/tests/launch.py" state "$pid" "$port"; }
start
tries=1
# Building takes a while on a busy machine: up to 300 s (a guard, not a wait).
i=0
until [ "$(state)" = listening ]; do
	if [ "$(state)" = gone ]; then
		wait "$pid" 2>/dev/null || true
		if ! grep -q "in use" "$dir/serve.log" || [ "$tries" -ge 5 ]; then
			pid=""
			fail "./serve exited"
		fi
		tries=$((tries + 1))
		start
		continue
	fi
	i=$((i + 1))
	[ "$i" -lt 600 ] || fail "./serve does not listen on port $port"
	sleep 0.5
done
swaks --server "127.0.0.1:$port" --quit-after banner --timeout 30 >/dev/null 2>&1 ||
	fail "no greeting on port $port"
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
