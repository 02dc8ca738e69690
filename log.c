/*
 * log.c: the one place that writes log lines.
 *
 * Promises: every line goes to syslog(3) with facility mail, and nothing is
 * ever written to stderr, which under inetd, xinetd and systemd's
 * StandardInput=socket is the client connection itself (protocol.md 8).
 * Client text reaches a log line only through log_quote().
 */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <syslog.h>

#define LOG_QUOTE_MAX 256	/* bytes of client text shown per field */

void
log_open(const char *ident)
{
	openlog(ident, LOG_PID | LOG_NDELAY, LOG_MAIL);
}

void
log_info(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsyslog(LOG_MAIL | LOG_INFO, fmt, ap);
	va_end(ap);
}

void
log_error(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsyslog(LOG_MAIL | LOG_ERR, fmt, ap);
	va_end(ap);
}

const char *
log_quote(const char *p, size_t n)
{
	static char slots[LOG_QUOTE_SLOTS][LOG_QUOTE_MAX * 4 + 4];
	static unsigned next;
	char *out = slots[next++ % LOG_QUOTE_SLOTS];
	size_t o = 0;

	for (size_t i = 0; i < n && i < LOG_QUOTE_MAX; i++) {
		unsigned char c = (unsigned char)p[i];

		if (c >= 0x20 && c < 0x7f && c != '\\' && c != '"') {
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
