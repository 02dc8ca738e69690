/* filter.h: one run of a content filter program over one staged message. */
#ifndef SMTPD_FILTER_H
#define SMTPD_FILTER_H

#include <signal.h>
#include <stddef.h>

#define FILTER_HEADER_MAX	65536	/* bytes of header fields a filter may add */
#define FILTER_TEXT_MAX		200	/* octets of a filter's refusal text */
#define FILTER_LINE_MAX		998	/* RFC 5322 2.1.1, without the CRLF */
#define FILTER_STDERR_LINES	10	/* stderr lines logged per run; the rest is counted */

enum filter_verdict {
	FILTER_ACCEPT,		/* exit 0, output valid: store out->headers */
	FILTER_REJECT,		/* exit 100: 554 5.7.1 out->text */
	FILTER_TEMPFAIL,	/* 111, other status, signal, timeout, no start: 451 4.7.1 */
	FILTER_BAD_OUTPUT,	/* exit 0 but not header fields, or too much output: 451 4.3.0 */
};

struct filter_spec {
	char *const *argv;	/* argv[0] is the program's absolute path; NULL-terminated */
	unsigned timeout;	/* seconds from start to verdict, at least 1 */
	const volatile sig_atomic_t *stop;	/* set by a signal: kill it, TEMPFAIL; or NULL */
	const sigset_t *wait_mask;	/* let these signals in while waiting; NULL: the caller's mask */
};

/* What the filter learns about the transaction, as SMTPD_* variables; only tls may be NULL. */
struct filter_env {
	const char *id;		/* SMTPD_ID */
	const char *peer;	/* SMTPD_PEER: address or "local" */
	const char *helo;	/* SMTPD_HELO: the sanitised name */
	const char *from;	/* SMTPD_FROM: "<a@b>", "<>" for the null sender */
	const char *const *rcpts;	/* SMTPD_RCPTS: one per line */
	size_t	nrcpts;
	unsigned long long size;	/* SMTPD_SIZE: the staged message's octets */
	const char *tls;	/* SMTPD_TLS when not NULL */
};

struct filter_result {
	size_t	headers_len;	/* FILTER_ACCEPT: header fields, LF endings, maybe 0 */
	char	headers[FILTER_HEADER_MAX];
	char	text[FILTER_TEXT_MAX + 1];	/* FILTER_REJECT: printable ASCII reply text */
	char	reason[160];	/* every verdict: what happened, for the log */
};

/*
 * Run spec->argv once, without a shell, in a new process group, with
 * message_fd (read-only, at offset 0; never written by us) as its stdin,
 * pipes as stdout and stderr, no other descriptor open and only the
 * SMTPD_* variables and PATH in its environment. Waits for its exit and
 * the end of both pipes, up to spec->timeout seconds; then, or as soon as
 * the filter itself has exited, its whole process group is killed. Up to
 * FILTER_STDERR_LINES stderr lines are logged (log_quote'd, with env->id).
 * The verdict comes from the exit status; out->reason always says why.
 * The caller's signal mask is kept; SIGCHLD is handled only during the run.
 * A signal let in by spec->wait_mask that sets *spec->stop ends the wait at
 * once: the group is killed and the verdict is FILTER_TEMPFAIL ("stopped").
 */
enum filter_verdict filter_run(const struct filter_spec *spec, int message_fd,
    const struct filter_env *env, struct filter_result *out);

/*
 * Check a filter's output as RFC 5322 header fields (3.6.8, 2.2.3) and
 * turn CRLF into LF in place. Returns the new length, or -1 with a short
 * description of the first fault in why (size bytes).
 */
long filter_check_headers(char *p, size_t n, char *why, size_t size);

#endif
