#!/bin/sh
# swaks --pipe: smtpd on swaks's own stdin/stdout, as a launcher would run it;
# two messages (one with --pipeline), each stored once, body byte-exact.
set -eu
smtpd=${SMTPD:-./smtpd}
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
printf 'hostname mx.example\nmaildir %s/Maildir\ntimeout 5\n' "$dir" >"$dir/smtpd.conf"
# swaks ends the data with CRLF . CRLF itself, so the body has no last CRLF.
printf 'Subject: pipe %s\r\n\r\n.dot first\r\n8-bit: caf\303\251\r\nend %s' TOKEN1 TOKEN1 >"$dir/body1"
printf 'Subject: pipe %s\r\n\r\nline\r\nend %s' TOKEN2 TOKEN2 >"$dir/body2"
n=1
for flags in "" "--pipeline"; do
	# shellcheck disable=SC2086 # flags is one word or none
	timeout 30 swaks --pipe "$smtpd -c $dir/smtpd.conf" --helo client.example \
	    --from "p$n@client.example" --to "a@example.org" --data - $flags \
	    <"$dir/body$n" >"$dir/swaks$n.log" 2>&1 || { cat "$dir/swaks$n.log"; exit 1; }
	n=$((n + 1))
done
count=$(find "$dir/Maildir/new" -type f | wc -l)
[ "$count" -eq 2 ] || { echo "expected 2 messages, found $count"; exit 1; }
[ -z "$(ls "$dir/Maildir/tmp")" ] || { echo "files left in tmp/"; exit 1; }
for n in 1 2; do
	file=$(grep -l "^Subject: pipe TOKEN$n\$" "$dir"/Maildir/new/*)
	[ "$(printf '%s\n' "$file" | wc -l)" -eq 1 ] || { echo "TOKEN$n not once"; exit 1; }
	[ "$(mshow -n -q -h return-path "$file")" = "Return-Path: <p$n@client.example>" ] ||
		{ echo "TOKEN$n: wrong Return-Path"; exit 1; }
	# After our Return-Path and Received lines, the body as sent, CRLF as LF.
	awk 'NR == 1 { next } !body && /^Received: / { rcv = 1; next }
	    rcv && /^\t/ { next } { body = 1; print }' "$file" >"$dir/got$n"
	{ tr -d '\r' <"$dir/body$n"; echo; } >"$dir/want$n"
	cmp "$dir/got$n" "$dir/want$n" || { echo "TOKEN$n: body differs"; diff "$dir/got$n" "$dir/want$n"; exit 1; }
done
echo "swaks --pipe: 2 passed, 0 failed"
