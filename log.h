/* log.h: one greppable line per event, to syslog (facility mail), never stderr. */
#ifndef SMTPD_LOG_H
#define SMTPD_LOG_H

#include <stddef.h>

void log_open(const char *ident);
void log_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/*
 * Client bytes made safe for one log line: printable ASCII is kept, everything
 * else (CR, LF, NUL, 8-bit) becomes \xHH, and the result is cut at a fixed
 * length. Returns one of a few rotating static buffers, so up to
 * LOG_QUOTE_SLOTS results may appear in one log call.
 */
#define LOG_QUOTE_SLOTS 4
const char *log_quote(const char *p, size_t n);

#endif
