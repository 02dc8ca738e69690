/*
 * log.h: one greppable line per event, never to stderr.
 *
 * A line reads "EVENT key=value key=\"quoted value\" ...". It goes to the
 * journal as a structured entry when our stderr or stdout is a journal
 * stream (systemd sets JOURNAL_STREAM), each key a SMTPD_KEY field beside
 * MESSAGE; otherwise, or when the journal refuses it, to syslog (facility
 * mail).
 */
#ifndef SMTPD_LOG_H
#define SMTPD_LOG_H

#include <stddef.h>
#include <sys/uio.h>
#include <syslog.h>	/* LOG_INFO, LOG_ERR */

void log_open(const char *ident);

/* One line at a syslog(3) priority: log_info for events, log_error for faults. */
void log_at(int priority, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
#define log_info(...)	log_at(LOG_INFO, __VA_ARGS__)
#define log_error(...)	log_at(LOG_ERR, __VA_ARGS__)

/*
 * Client bytes made safe for one log line: printable ASCII is kept, everything
 * else (CR, LF, NUL, 8-bit, quote and backslash) becomes \xHH, and the result
 * is cut at a fixed length. Returns one of a few rotating static buffers, so
 * up to LOG_QUOTE_SLOTS results may appear in one log call.
 */
#define LOG_QUOTE_SLOTS 4
const char *log_quote(const char *p, size_t n);

/*
 * The same for a value written inside quotes (key="..."), where blanks and
 * = cannot start another field: those are kept, so a sentence stays
 * readable. Shares log_quote's slots.
 */
const char *log_quote_text(const char *p, size_t n);

/*
 * The journal fields of one line: SMTPD_EVENT=EVENT, then SMTPD_KEY=value
 * for each key=value that follows (key upper-cased, '-' as '_', quotes
 * removed), built in buf. Stops at the first word of another shape: MESSAGE
 * always carries the whole line. Returns the number of iov entries used.
 */
#define LOG_FIELDS_MAX 24
size_t log_fields(const char *line, struct iovec *iov, size_t max, char *buf, size_t size);

#endif
