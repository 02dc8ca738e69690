/*
 * log.c: the one place that writes log lines.
 *
 * Promises: nothing is ever written to stderr, which under inetd, xinetd
 * and systemd's StandardInput=socket is the client connection itself
 * (systemd.exec(5): StandardError= inherits standard output by default).
 * Under systemd with the journal attached each line is a structured entry,
 * sent in the journal's native protocol; everywhere else syslog(3),
 * facility mail. Client text reaches a line only through
 * log_quote().
 */
#include "log.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#define LOG_QUOTE_MAX	256	/* bytes of client text shown per field */
#define LOG_LINE_MAX	4096	/* a journal entry's MESSAGE; syslog lines are not cut */

static bool use_journal;
static const char *log_ident = "smtpd";
static struct timespec started;	/* for SMTPD_DURATION_MS */

/*
 * systemd.exec(5): JOURNAL_STREAM is "DEV:INODE" of the stream that stdout
 * or stderr is connected to. It may be inherited from a parent whose
 * streams differ from ours, so the descriptor itself must match.
 */
static bool
journal_is_attached(void)
{
	const char *env = getenv("JOURNAL_STREAM");
	unsigned long long dev, ino;
	struct stat st;
	char end;

	if (env == NULL || sscanf(env, "%llu:%llu%c", &dev, &ino, &end) != 2)
		return false;
	for (int fd = 1; fd <= 2; fd++)
		if (fstat(fd, &st) == 0 && (unsigned long long)st.st_dev == dev &&
		    (unsigned long long)st.st_ino == ino)
			return true;
	return false;
}

void
log_open(const char *ident)
{
	log_ident = ident;
	clock_gettime(CLOCK_MONOTONIC, &started);
	use_journal = journal_is_attached();
	if (!use_journal)
		openlog(ident, LOG_PID | LOG_NDELAY, LOG_MAIL);
}

/*
 * A key's journal field name: upper case, '-' as '_'; a few short log keys
 * get the longer name their field has always had. out NULL: the length only.
 */
static size_t
field_name(const char *key, size_t klen, char *out)
{
	static const struct { const char *key, *field; } renamed[] = {
		{ "tls", "TLS_VERSION" }, { "cipher", "TLS_CIPHER" },
	};

	for (size_t i = 0; i < sizeof(renamed) / sizeof(renamed[0]); i++)
		if (strlen(renamed[i].key) == klen && memcmp(renamed[i].key, key, klen) == 0) {
			if (out != NULL)
				memcpy(out, renamed[i].field, strlen(renamed[i].field));
			return strlen(renamed[i].field);
		}
	for (size_t i = 0; i < klen && out != NULL; i++)
		out[i] = key[i] == '-' ? '_' : (char)(key[i] >= 'a' && key[i] <= 'z' ?
		    key[i] - 'a' + 'A' : key[i]);
	return klen;
}

size_t
log_fields(const char *line, struct iovec *iov, size_t max, char *buf, size_t size)
{
	size_t elen = strcspn(line, " "), n = 0, o;
	const char *p;
	int w;

	if (max == 0 || elen == 0 || memchr(line, '=', elen) != NULL)
		return 0;
	w = snprintf(buf, size, "SMTPD_EVENT=%.*s", (int)elen, line);
	if (w < 0 || (size_t)w >= size)
		return 0;
	iov[n].iov_base = buf;
	iov[n++].iov_len = (size_t)w;
	o = (size_t)w + 1;
	for (p = line + elen; *p == ' ' && n < max; ) {
		const char *key = ++p, *eq, *val, *vend;
		size_t klen;

		for (eq = key; (*eq >= 'a' && *eq <= 'z') || (*eq >= '0' && *eq <= '9') || *eq == '-'; eq++)
			;
		if (*eq != '=' || eq == key)
			break;
		klen = (size_t)(eq - key);
		val = eq + 1;
		if (*val == '"') {
			val++;
			if ((vend = strchr(val, '"')) == NULL)
				break;
			p = vend + 1;
		} else {
			vend = val + strcspn(val, " ");
			p = vend;
		}
		if (*p != '\0' && *p != ' ')
			break;
		if (o + 6 + field_name(key, klen, NULL) + 1 + (size_t)(vend - val) + 1 > size)
			break;
		iov[n].iov_base = buf + o;
		memcpy(buf + o, "SMTPD_", 6);
		o += 6;
		o += field_name(key, klen, buf + o);
		buf[o++] = '=';
		memcpy(buf + o, val, (size_t)(vend - val));
		o += (size_t)(vend - val);
		iov[n].iov_len = (size_t)(buf + o - (char *)iov[n].iov_base);
		buf[o++] = '\0';
		n++;
	}
	return n;
}

/*
 * One datagram of "FIELD=value\n" lines to journald's socket: the native
 * protocol as systemd documents it (systemd.io/JOURNAL_NATIVE_PROTOCOL),
 * and the bytes sd_journal_sendv() sends for values without a newline.
 * Spoken here rather than through libsystemd because loading the library
 * costs every connection under the unit 1.3 MiB (bench/ACTIVATION.md).
 * Our values hold no newline (client text passes log_quote()); a line that
 * did would go to syslog instead.
 */
static int
journal_sendv(const struct iovec *fields, size_t n)
{
	static const struct sockaddr_un journal = {
		.sun_family = AF_UNIX, .sun_path = "/run/systemd/journal/socket",
	};
	static int fd = -1;
	struct iovec iov[2 * (5 + LOG_FIELDS_MAX)];
	struct msghdr mh;

	if (n > sizeof(iov) / sizeof(iov[0]) / 2)
		return -1;
	for (size_t i = 0; i < n; i++) {
		if (memchr(fields[i].iov_base, '\n', fields[i].iov_len) != NULL)
			return -1;
		iov[2 * i] = fields[i];
		iov[2 * i + 1].iov_base = (void *)"\n";
		iov[2 * i + 1].iov_len = 1;
	}
	if (fd == -1 && (fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0)) == -1)
		return -1;
	memset(&mh, 0, sizeof(mh));
	mh.msg_name = (void *)&journal;
	mh.msg_namelen = sizeof(journal);
	mh.msg_iov = iov;
	mh.msg_iovlen = 2 * n;
	return sendmsg(fd, &mh, MSG_NOSIGNAL) == -1 ? -1 : 0;
}

/* One structured entry; -1 when the journal would not take it. */
static int
journal_send(int priority, const char *line)
{
	char message[LOG_LINE_MAX + 16], head[4][64], fields[LOG_LINE_MAX * 2];
	struct iovec iov[5 + LOG_FIELDS_MAX];
	struct timespec now;
	long long ms;
	size_t n = 0;
	int w;

	clock_gettime(CLOCK_MONOTONIC, &now);
	ms = (now.tv_sec - started.tv_sec) * 1000LL + (now.tv_nsec - started.tv_nsec) / 1000000;
	w = snprintf(message, sizeof(message), "MESSAGE=%s", line);
	iov[n].iov_base = message;
	iov[n++].iov_len = w < 0 ? 0 : (size_t)w < sizeof(message) ? (size_t)w : sizeof(message) - 1;
	snprintf(head[0], sizeof(head[0]), "PRIORITY=%d", priority);
	snprintf(head[1], sizeof(head[1]), "SYSLOG_IDENTIFIER=%s", log_ident);
	snprintf(head[2], sizeof(head[2]), "SYSLOG_FACILITY=%d", LOG_MAIL >> 3);
	snprintf(head[3], sizeof(head[3]), "SMTPD_DURATION_MS=%lld", ms);
	for (size_t i = 0; i < 4; i++) {
		iov[n].iov_base = head[i];
		iov[n++].iov_len = strlen(head[i]);
	}
	n += log_fields(line, iov + n, LOG_FIELDS_MAX, fields, sizeof(fields));
	return journal_sendv(iov, n);
}

/*
 * The line formatted and sent as a journal entry; -1 when the journal would
 * not take it. Not inlined: its 16 KiB of buffers stay off the stack of the
 * syslog path, where vsyslog would otherwise run 16 KiB deeper and touch
 * pages of its own (bench/RESULTS-shape.md).
 */
static __attribute__((noinline)) int
journal_line(int priority, const char *fmt, va_list ap)
{
	char line[LOG_LINE_MAX];
	va_list copy;

	va_copy(copy, ap);
	vsnprintf(line, sizeof(line), fmt, copy);
	va_end(copy);
	return journal_send(priority, line);
}

static void
log_line(int priority, const char *fmt, va_list ap)
{
	if (use_journal) {
		if (journal_line(priority, fmt, ap) == 0)
			return;
		/* The journal went away: syslog reaches it, or whatever replaced it. */
		use_journal = false;
		openlog(log_ident, LOG_PID | LOG_NDELAY, LOG_MAIL);
	}
	vsyslog(LOG_MAIL | priority, fmt, ap);
}

void
log_at(int priority, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_line(priority, fmt, ap);
	va_end(ap);
}

/* log_quote's work; blanks and = escaped too when the value is not in quotes. */
static const char *
quote(const char *p, size_t n, bool in_quotes)
{
	static char slots[LOG_QUOTE_SLOTS][LOG_QUOTE_MAX * 4 + 4];
	static unsigned next;
	char *out = slots[next++ % LOG_QUOTE_SLOTS];
	size_t o = 0;

	for (size_t i = 0; i < n && i < LOG_QUOTE_MAX; i++) {
		unsigned char c = (unsigned char)p[i];
		/* Space and = too: client text must not look like another key=value. */
		bool safe = c > 0x20 && c < 0x7f && c != '\\' && c != '"' && c != '=';

		if (safe || (in_quotes && (c == ' ' || c == '='))) {
			out[o++] = (char)c;
		} else {
			snprintf(out + o, 5, "\\x%02x", c);
			o += 4;
		}
	}
	if (n > LOG_QUOTE_MAX) {
		out[o++] = '.';
		out[o++] = '.';
		out[o++] = '.';
	}
	out[o] = '\0';
	return out;
}

const char *
log_quote(const char *p, size_t n)
{
	return quote(p, n, false);
}

const char *
log_quote_text(const char *p, size_t n)
{
	return quote(p, n, true);
}
