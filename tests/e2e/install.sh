#!/bin/sh
# make install with PREFIX and DESTDIR: the binary, the man page, the units
# and the examples land where they should, name the chosen paths, and work;
# the man page is clean under man --warnings at 80 columns; make uninstall
# removes it all. Runs on a copy, so the tree's build is never touched.
set -eu
smtpd=${SMTPD:-$PWD/smtpd}
top=$PWD
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

mkdir "$dir/src" "$dir/src/units" "$dir/src/filters"
cp "$top/Makefile" "$top/smtpd.8" "$dir/src/"
cp -R "$top"/units/* "$dir/src/units/"
cp "$top"/filters/* "$dir/src/filters/"
cp "$smtpd" "$dir/src/smtpd"
root=$dir/root
# -o smtpd: install the binary under test as it is, never rebuild it here.
make -s -C "$dir/src" -o smtpd install DESTDIR="$root" PREFIX=/usr SYSCONFDIR=/etc >"$dir/make.log" 2>&1 ||
	{ cat "$dir/make.log"; fail "make install"; }

for f in usr/sbin/smtpd usr/share/man/man8/smtpd.8 usr/lib/systemd/system/smtpd.socket \
    usr/lib/systemd/system/smtpd@.service usr/share/doc/smtpd/inetd.conf \
    usr/share/doc/smtpd/xinetd.conf usr/share/doc/smtpd/tcpserver.run \
    usr/lib/systemd/system/smtpd-ticket-keys.service \
    usr/lib/systemd/system/smtpd-ticket-keys.timer usr/share/doc/smtpd/tls.conf; do
	[ -f "$root/$f" ] || fail "$f not installed"
done
[ "$(stat -c %a "$root/usr/sbin/smtpd")" = 755 ] || fail "binary mode"
[ "$(stat -c %a "$root/usr/share/man/man8/smtpd.8")" = 644 ] || fail "man page mode"
[ "$(stat -c %a "$root/usr/share/doc/smtpd/tcpserver.run")" = 755 ] || fail "run script mode"
for f in spamassassin rspamd; do
	[ "$(stat -c %a "$root/usr/share/smtpd/filters/$f")" = 755 ] || fail "filters/$f not installed 755"
	grep -q "filter /usr/share/smtpd/filters/$f " "$root/usr/share/smtpd/filters/$f" ||
		fail "filters/$f does not name its installed path"
done
grep -q '^ExecStart=/usr/sbin/smtpd -c /etc/smtpd.conf$' "$root/usr/lib/systemd/system/smtpd@.service" ||
	fail "ExecStart does not name the installed binary and config"
grep -q '^LoadCredential=tls-key:/etc/smtpd/tls/key.pem$' "$root/usr/share/doc/smtpd/tls.conf" ||
	fail "the TLS drop-in does not name the installed key"
if grep -rq /usr/local "$root"/usr/lib "$root"/usr/share; then
	grep -rn /usr/local "$root"/usr/lib "$root"/usr/share
	fail "installed files still name /usr/local"
fi

# The installed binary serves a session.
printf 'EHLO c.example\r\nMAIL FROM:<a@c.example>\r\nRCPT TO:<b@example.org>\r\nDATA\r\nSubject: inst\r\n\r\nhi\r\n.\r\nQUIT\r\n' |
	"$root/usr/sbin/smtpd" -m "$dir/Maildir" -h mx.example >"$dir/out" 2>"$dir/err"
grep -q '^250 2.0.0 ' "$dir/out" || fail "installed binary did not deliver"
[ "$(find "$dir/Maildir/new" -type f | wc -l)" -eq 1 ] || fail "not one message"
[ ! -s "$dir/err" ] || fail "smtpd wrote to stderr: $(cat "$dir/err")"

# The man page: every section, no warnings, nothing wider than 80 columns.
man=$root/usr/share/man/man8/smtpd.8
for s in NAME SYNOPSIS DESCRIPTION OPTIONS CONFIGURATION REPLIES FILES EXAMPLES; do
	grep -q "^\.SH $s\$" "$man" || fail "man page has no $s section"
done
MANWIDTH=80 man --warnings -l "$man" >"$dir/man.txt" 2>"$dir/man.err" || fail "man failed"
[ ! -s "$dir/man.err" ] || { cat "$dir/man.err"; fail "man --warnings complained"; }
grep -q '/etc/smtpd.conf' "$dir/man.txt" || fail "man page does not name the installed config"
awk 'length > 80 { bad = 1; print "wide: " $0 } END { exit bad }' "$dir/man.txt" ||
	fail "man page wider than 80 columns"

make -s -C "$dir/src" -o smtpd uninstall DESTDIR="$root" PREFIX=/usr SYSCONFDIR=/etc >"$dir/make.log" 2>&1 ||
	{ cat "$dir/make.log"; fail "make uninstall"; }
left=$(find "$root" -type f | wc -l)
[ "$left" -eq 0 ] || { find "$root" -type f; fail "uninstall left $left files"; }
echo "install: 1 passed, 0 failed"
