/*
 * session.c: the SMTP state machine (RFC 5321), one session per process.
 *
 * Promises: every command line gets exactly one reply, in order; the
 * connection ends only after 221, after 421 (timeout, too many errors,
 * stop) or at client EOF; a message is acknowledged with 250 only after
 * maildir_commit() says it is on disk. Only <CRLF>.<CRLF> ends message data
 * (RFC 5321 4.1.1.4, protocol.md 3), so no second transaction can be
 * smuggled inside one. Leaves reading to reader.c, reply formatting and
 * flushing to reply.c, file handling to maildir.c, routing to route.c.
 */
#include "session.h"

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "address.h"
#include "log.h"
#include "maildir.h"
#include "reader.h"
#include "reply.h"

#define DATA_PIECE	READER_BUFFER	/* longer data lines pass in pieces */
#define ERROR_LIMIT	20	/* Postfix's smtpd_hard_error_limit */
#define HOP_LIMIT	100	/* RFC 5321 6.3: count Received, at least 100 */
#define HELO_MAX	255

enum session_state { S_GREETED, S_HELLO, S_MAIL, S_RCPT, S_CLOSED };

struct session {
	const struct session_config *cfg;
	enum session_state state;
	int	exit_status;
	unsigned errors;
	bool	esmtp;
	char	helo[HELO_MAX + 1];	/* sanitised: safe in Received */
	const char *verb;		/* the command being answered, for logs */

	/* The mail transaction: MAIL, RCPTs, DATA. */
	char	from[SMTP_PATH_MAX + 1];
	bool	smtputf8;
	char	first_rcpt[SMTP_PATH_MAX + 1];
	unsigned nrcpt;
	const char **dirs;		/* distinct Maildirs (owned copies), max_recipients of them */
	size_t	ndirs;

	/* Buffers last, so session_run can clear the state without them. */
	struct reader in;
	struct reply out;
	struct delivery delivery;
};
_Static_assert(offsetof(struct session, in) < offsetof(struct session, out) &&
    offsetof(struct session, out) < offsetof(struct session, delivery) &&
    offsetof(struct session, delivery) + sizeof(struct delivery) == sizeof(struct session),
    "session_run clears everything before `in` and relies on this order");

static volatile sig_atomic_t stop_requested;

void
session_stop(void)
{
	stop_requested = 1;
}

/* Refuse the current command: one reply for the client, one line for the log. */
static void
refuse(struct session *s, int code, const char *ecode, const char *text)
{
	reply_send(&s->out, code, ecode, "%s", text);
	log_info("refused peer=%s cmd=%s reply=\"%d %s %s\"",
	    s->cfg->peer, s->verb, code, ecode, text);
	s->errors++;
}

/* The one way out: last reply, flush, one log line. */
static void
session_close(struct session *s, int code, const char *ecode, const char *why)
{
	if (code != 0)
		reply_send(&s->out, code, ecode, "%s %s", s->cfg->hostname, why);
	reply_flush(&s->out);
	log_info("disconnect peer=%s reason=\"%s\" errors=%u", s->cfg->peer, why, s->errors);
	s->exit_status = code == 0 || code == 221 ? 0 : 1;
	s->state = S_CLOSED;
}

/*
 * A read that brought no line ends the session: 421 on a timeout or a stop
 * (RFC 5321 3.8), silence when the client is gone.
 */
static void
close_after_read(struct session *s, enum read_result r)
{
	if (r == READ_TIMEOUT)
		session_close(s, 421, "4.4.2", "Error: timeout exceeded");
	else if (r == READ_STOPPED)
		session_close(s, 421, "4.3.2", "Service shutting down");
	else if (r == READ_EOF)
		session_close(s, 0, NULL, "client closed the connection");
	else
		session_close(s, 0, NULL, "connection lost");
}

static void
reset_transaction(struct session *s)
{
	maildir_abort(&s->delivery);
	s->from[0] = '\0';
	s->first_rcpt[0] = '\0';
	s->smtputf8 = false;
	s->nrcpt = 0;
	for (size_t i = 0; i < s->ndirs; i++)
		free((void *)s->dirs[i]);
	s->ndirs = 0;
	if (s->state == S_MAIL || s->state == S_RCPT)
		s->state = S_HELLO;
}

static bool
has_args(size_t len)
{
	return len > 0;
}

/* Keep the EHLO name for Received; anything outside a safe set becomes '?'. */
static void
keep_helo(struct session *s, const char *arg, size_t len)
{
	size_t n = len < HELO_MAX ? len : HELO_MAX;

	for (size_t i = 0; i < n; i++) {
		char c = arg[i];
		bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		    (c >= '0' && c <= '9') || strchr(".-_:[]", c) != NULL;

		s->helo[i] = ok ? c : '?';
	}
	s->helo[n] = '\0';
}

/* HELO and EHLO: RFC 5321 4.1.4, a new greeting resets the transaction. */
static bool
greet(struct session *s, const char *arg, size_t len, bool esmtp)
{
	if (!has_args(len)) {
		refuse(s, 501, "5.5.4", esmtp ? "Syntax: EHLO hostname" : "Syntax: HELO hostname");
		return false;
	}
	keep_helo(s, arg, len);
	s->esmtp = esmtp;
	reset_transaction(s);
	s->state = S_HELLO;
	return true;
}

static void
handle_helo(struct session *s, const char *arg, size_t len)
{
	if (greet(s, arg, len, false))
		reply_send(&s->out, 250, NULL, "%s", s->cfg->hostname);
}

static void
handle_ehlo(struct session *s, const char *arg, size_t len)
{
	if (!greet(s, arg, len, true))
		return;
	/* RFC 5321 4.1.1.1: list exactly what we implement (protocol.md 2.9). */
	reply_send_more(&s->out, 250, "%s", s->cfg->hostname);
	reply_send_more(&s->out, 250, "PIPELINING");
	reply_send_more(&s->out, 250, "SIZE %llu", s->cfg->max_message_size);
	reply_send_more(&s->out, 250, "8BITMIME");
	reply_send_more(&s->out, 250, "ENHANCEDSTATUSCODES");
	reply_send(&s->out, 250, NULL, "SMTPUTF8");
}

/* "FROM:" or "TO:", then optional spaces (a common, harmless leniency). */
static size_t
skip_keyword(const char *arg, size_t len, const char *kw)
{
	size_t k = strlen(kw), i;

	if (len < k || strncasecmp(arg, kw, k) != 0)
		return 0;
	for (i = k; i < len && arg[i] == ' '; i++)
		;
	return i;
}

enum param_result { PARAM_OK, PARAM_BAD_VALUE, PARAM_UNKNOWN, PARAM_TOO_BIG };

/* Is p[0..klen) the keyword kw (case-insensitive, RFC 5321 4.1.1.11)? */
static bool
is_keyword(const char *p, size_t klen, const char *kw)
{
	return klen == strlen(kw) && strncasecmp(p, kw, klen) == 0;
}

/*
 * RFC 1870 SIZE=, RFC 6152 BODY=, RFC 6531 SMTPUTF8. The keyword decides:
 * one we know with a value it does not take is 501, one we do not is 555.
 */
static enum param_result
parse_mail_param(struct session *s, const char *p, size_t n)
{
	const char *eq = memchr(p, '=', n);
	size_t klen = eq != NULL ? (size_t)(eq - p) : n;
	const char *v = eq != NULL ? eq + 1 : NULL;
	size_t vlen = eq != NULL ? n - klen - 1 : 0;

	if (is_keyword(p, klen, "SIZE")) {
		unsigned long long size = 0;

		if (v == NULL || vlen == 0 || vlen > 20)
			return PARAM_BAD_VALUE;
		for (size_t i = 0; i < vlen; i++) {
			if (v[i] < '0' || v[i] > '9')
				return PARAM_BAD_VALUE;
			size = size > (~0ULL - 9) / 10 ? ~0ULL : size * 10 + (unsigned)(v[i] - '0');
		}
		return size > s->cfg->max_message_size ? PARAM_TOO_BIG : PARAM_OK;
	}
	if (is_keyword(p, klen, "BODY"))
		return v != NULL && (is_keyword(v, vlen, "7BIT") || is_keyword(v, vlen, "8BITMIME")) ?
		    PARAM_OK : PARAM_BAD_VALUE;
	if (is_keyword(p, klen, "SMTPUTF8")) {
		if (v != NULL)
			return PARAM_BAD_VALUE;
		s->smtputf8 = true;
		return PARAM_OK;
	}
	return PARAM_UNKNOWN;
}

/* Walk "SP param SP param..." after a path; the first failure wins. */
static enum param_result
parse_mail_params(struct session *s, const char *p, size_t n)
{
	size_t i = 0;

	while (i < n) {
		size_t start;
		enum param_result r;

		if (p[i] != ' ')
			return PARAM_BAD_VALUE;
		while (i < n && p[i] == ' ')
			i++;
		start = i;
		while (i < n && p[i] != ' ')
			i++;
		if (i > start && (r = parse_mail_param(s, p + start, i - start)) != PARAM_OK)
			return r;
	}
	return PARAM_OK;
}

static void
handle_mail(struct session *s, const char *arg, size_t len)
{
	struct address from;
	size_t off = skip_keyword(arg, len, "FROM:"), used;
	enum address_result ar;
	enum param_result pr;

	if (s->state == S_GREETED) {
		refuse(s, 503, "5.5.1", "Send HELO/EHLO first");
		return;
	}
	if (s->state != S_HELLO) {
		refuse(s, 503, "5.5.1", "Nested MAIL command");
		return;
	}
	if (off == 0) {
		refuse(s, 501, "5.5.4", "Syntax: MAIL FROM:<address>");
		return;
	}
	ar = address_parse_path(arg + off, len - off, PATH_REVERSE, true, &from, &used);
	if (ar != ADDRESS_OK) {
		refuse(s, 501, "5.1.7", ar == ADDRESS_TOO_LONG ? "Sender address too long" :
		    "Bad sender address syntax");
		return;
	}
	s->smtputf8 = false;
	pr = parse_mail_params(s, arg + off + used, len - off - used);
	if (pr == PARAM_UNKNOWN || pr == PARAM_BAD_VALUE || pr == PARAM_TOO_BIG) {
		s->smtputf8 = false;
		if (pr == PARAM_UNKNOWN)
			refuse(s, 555, "5.5.4", "Unsupported MAIL parameter");
		else if (pr == PARAM_BAD_VALUE)
			refuse(s, 501, "5.5.4", "Bad MAIL parameter syntax");
		else
			refuse(s, 552, "5.3.4", "Message size exceeds fixed maximum message size");
		return;
	}
	if (from.utf8 && !s->smtputf8) {
		refuse(s, 553, "5.6.7", "Must declare SMTPUTF8 to send a UTF-8 address");
		return;
	}
	address_format(&from, s->from, sizeof(s->from));
	s->state = S_MAIL;
	reply_send(&s->out, 250, "2.1.0", "Ok");
}

/* Remember the recipient's Maildir once, however many recipients share it. */
static int
add_recipient(struct session *s, const struct address *to, const char *maildir)
{
	size_t i;

	for (i = 0; i < s->ndirs && strcmp(s->dirs[i], maildir) != 0; i++)
		;
	if (i == s->ndirs) {
		if ((s->dirs[s->ndirs] = strdup(maildir)) == NULL)
			return -1;
		s->ndirs++;
	}
	if (s->nrcpt++ == 0)
		address_format(to, s->first_rcpt, sizeof(s->first_rcpt));
	s->state = S_RCPT;
	return 0;
}

static void
handle_rcpt(struct session *s, const char *arg, size_t len)
{
	struct address to;
	size_t off = skip_keyword(arg, len, "TO:"), used;
	struct route route;
	enum address_result ar;

	if (s->state != S_MAIL && s->state != S_RCPT) {
		refuse(s, 503, "5.5.1", "MAIL first");
		return;
	}
	if (off == 0) {
		refuse(s, 501, "5.5.4", "Syntax: RCPT TO:<address>");
		return;
	}
	ar = address_parse_path(arg + off, len - off, PATH_FORWARD, s->smtputf8, &to, &used);
	if (ar == ADDRESS_NEEDS_UTF8) {
		refuse(s, 553, "5.6.7", "Must declare SMTPUTF8 to send a UTF-8 address");
		return;
	}
	if (ar != ADDRESS_OK) {
		refuse(s, 501, "5.1.3", ar == ADDRESS_TOO_LONG ? "Recipient address too long" :
		    "Bad recipient address syntax");
		return;
	}
	if (used < len - off) {
		refuse(s, 555, "5.5.4", "Unsupported RCPT parameter");
		return;
	}
	if (s->nrcpt >= s->cfg->max_recipients) {
		/* RFC 5321 4.5.3.1.10: 452 for the excess only; not a client error. */
		reply_send(&s->out, 452, "4.5.3", "Too many recipients");
		log_info("refused peer=%s cmd=RCPT reply=\"452 4.5.3 Too many recipients\"",
		    s->cfg->peer);
		return;
	}
	switch (routes_lookup(s->cfg->routes, &to, &route)) {
	case ROUTE_UNKNOWN_USER:
		refuse(s, 550, "5.1.1", "User unknown");
		return;
	case ROUTE_NOT_OURS:
		refuse(s, 550, "5.7.1", "Relay access denied");
		return;
	case ROUTE_TEMPFAIL:
		refuse(s, 451, "4.3.0", "Temporary failure looking up the recipient");
		return;
	case ROUTE_OK:
		break;
	}
	if (add_recipient(s, &to, route.maildir) == -1) {
		refuse(s, 451, "4.3.0", "Out of memory; try again later");
		return;
	}
	reply_send(&s->out, 250, "2.1.5", "Ok");
}

/* Return-Path and a Received line in RFC 5321 4.4's grammar. */
static void
write_trace_headers(struct session *s)
{
	char head[2048], date[64];
	time_t now = time(NULL);
	struct tm tm;
	const char *with = s->smtputf8 ? "UTF8SMTP" : s->esmtp ? "ESMTP" : "SMTP";
	int n;

	localtime_r(&now, &tm);
	strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S %z", &tm);
	n = snprintf(head, sizeof(head),
	    "Return-Path: %s\nReceived: from %s%s%s%s\n\tby %s with %s id %s%s%s; %s\n",
	    s->from, s->helo, s->cfg->peer_literal ? " (" : "",
	    s->cfg->peer_literal ? s->cfg->peer_literal : "", s->cfg->peer_literal ? ")" : "",
	    s->cfg->hostname, with, s->delivery.id,
	    s->nrcpt == 1 ? "\n\tfor " : "", s->nrcpt == 1 ? s->first_rcpt : "", date);
	if (n > 0 && (size_t)n < sizeof(head))
		maildir_write(&s->delivery, head, (size_t)n);
	else
		s->delivery.error = 1;	/* cannot happen: every field is bounded */
}

/* What the data loop found, beyond the bytes it stored. */
struct data_status {
	enum read_result read;
	unsigned long long size;
	unsigned hops;
	bool	too_big;
};

/*
 * Read message data up to <CRLF>.<CRLF>, the only end of data (RFC 5321
 * 4.1.1.4): a "." line ends it only when it and the line before both ended
 * in CRLF. Bare LF ends a stored line but never the data; bare CR is kept
 * as a byte. Lines are stored with LF. Faults keep reading to the end.
 */
static void
receive_data(struct session *s, struct data_status *st)
{
	/*
	 * The DATA line's end counts as the first CRLF of <CRLF>.<CRLF> even
	 * when it was a bare LF (we accept those on command lines), so an
	 * empty message can always end; inside the data, CRLF is required.
	 */
	bool line_start = true, prev_crlf = true, in_header = true;
	struct line line;

	memset(st, 0, sizeof(*st));
	for (;;) {
		const char *p;
		size_t n;

		if ((st->read = reader_piece(&s->in, &line, DATA_PIECE)) != READ_LINE)
			return;
		p = line.bytes;
		n = line.len;
		if (line_start && prev_crlf && line.crlf && n == 1 && p[0] == '.')
			return;
		/* RFC 5321 4.5.2: the client doubled any leading dot; take one off. */
		if (line_start && n > 0 && p[0] == '.' && (n > 1 || !line.complete)) {
			p++;
			n--;
		}
		if (line_start && in_header) {
			if (n == 0)
				in_header = false;
			else if (n >= 9 && strncasecmp(p, "Received:", 9) == 0)
				st->hops++;
		}
		st->size += n + (line.complete ? 2 : 0);
		if (st->size > s->cfg->max_message_size && !st->too_big) {
			st->too_big = true;
			maildir_abort(&s->delivery);	/* free the disk now */
		}
		if (!st->too_big) {
			maildir_write(&s->delivery, p, n);
			if (line.complete)
				maildir_write(&s->delivery, "\n", 1);
		}
		line_start = line.complete;
		prev_crlf = line.crlf;
	}
}

static void
log_delivery(struct session *s, const char *result, unsigned long long size)
{
	log_info("%s peer=%s%s%s id=%s from=%s rcpt=%s nrcpt=%u maildirs=%zu size=%llu",
	    result, s->cfg->peer, s->cfg->proxy != NULL ? " proxy=" : "",
	    s->cfg->proxy != NULL ? s->cfg->proxy : "", s->delivery.id,
	    log_quote(s->from, strlen(s->from)),
	    log_quote(s->first_rcpt, strlen(s->first_rcpt)), s->nrcpt, s->ndirs, size);
}

/* After the final dot: exactly one reply, 250 only once it is on disk. */
static void
finish_data(struct session *s, const struct data_status *st)
{
	if (st->too_big) {
		refuse(s, 552, "5.3.4", "Message size exceeds fixed maximum message size");
		return;
	}
	if (st->hops >= HOP_LIMIT) {
		maildir_abort(&s->delivery);
		refuse(s, 554, "5.4.6", "Too many hops: mail loop?");
		return;
	}
	switch (maildir_commit(&s->delivery)) {
	case DELIVER_OK:
		log_delivery(s, "delivered", st->size);
		reply_send(&s->out, 250, "2.0.0", "%s", s->delivery.id);
		break;
	case DELIVER_TEMPFAIL:
		log_delivery(s, "failed", st->size);
		refuse(s, 451, "4.3.0", "Local error writing the message; try again later");
		break;
	case DELIVER_NOSPACE:
		log_delivery(s, "failed", st->size);
		refuse(s, 452, "4.3.1", "Insufficient system storage");
		break;
	}
}

static void
handle_data(struct session *s, const char *arg, size_t len)
{
	struct data_status st;
	enum deliver_result r;

	(void)arg;
	if (has_args(len)) {
		refuse(s, 501, "5.5.4", "Syntax: DATA");
		return;
	}
	if (s->state == S_MAIL) {
		refuse(s, 554, "5.5.1", "No valid recipients");
		return;
	}
	if (s->state != S_RCPT) {
		refuse(s, 503, "5.5.1", "MAIL first");
		return;
	}
	if ((r = maildir_begin(&s->delivery, s->dirs, s->ndirs)) != DELIVER_OK) {
		log_error("cannot stage a message peer=%s", s->cfg->peer);
		if (r == DELIVER_NOSPACE)
			refuse(s, 452, "4.3.1", "Insufficient system storage");
		else
			refuse(s, 451, "4.3.0", "Local error staging the message; try again later");
		return;
	}
	reply_send(&s->out, 354, NULL, "End data with <CR><LF>.<CR><LF>");
	write_trace_headers(s);
	receive_data(s, &st);
	if (st.read == READ_LINE)
		finish_data(s, &st);
	else	/* RFC 5321 4.1.1.10: a transaction cut short is void */
		close_after_read(s, st.read);
	reset_transaction(s);
}

static void
handle_rset(struct session *s, const char *arg, size_t len)
{
	(void)arg;
	if (has_args(len)) {
		refuse(s, 501, "5.5.4", "Syntax: RSET");
		return;
	}
	reset_transaction(s);
	reply_send(&s->out, 250, "2.0.0", "Ok");
}

static void
handle_noop(struct session *s, const char *arg, size_t len)
{
	(void)arg;
	(void)len;	/* RFC 5321 4.1.1.9: parameters are ignored */
	reply_send(&s->out, 250, "2.0.0", "Ok");
}

static void
handle_quit(struct session *s, const char *arg, size_t len)
{
	(void)arg;
	if (has_args(len)) {
		refuse(s, 501, "5.5.4", "Syntax: QUIT");
		return;
	}
	reply_send(&s->out, 221, "2.0.0", "Bye");
	session_close(s, 0, NULL, "quit");
}

static void
handle_vrfy(struct session *s, const char *arg, size_t len)
{
	(void)arg;
	if (!has_args(len)) {
		refuse(s, 501, "5.5.4", "Syntax: VRFY address");
		return;
	}
	/* RFC 5321 7.3: 252 when we will not say who exists. */
	reply_send(&s->out, 252, "2.5.2", "Cannot VRFY user, but will accept message");
}

static void
handle_help(struct session *s, const char *arg, size_t len)
{
	(void)arg;
	(void)len;
	reply_send(&s->out, 214, "2.0.0",
	    "Commands: HELO EHLO MAIL RCPT DATA RSET NOOP QUIT VRFY HELP");
}

/* RFC 5321 4.2.4: recognised but not implemented is 502, not 500. */
static void
handle_unimplemented(struct session *s, const char *arg, size_t len)
{
	(void)arg;
	(void)len;
	refuse(s, 502, "5.5.1", "Command not implemented");
}

struct command {
	const char *verb;
	void	(*handle)(struct session *, const char *, size_t);
};

static const struct command commands[] = {
	{ "HELO", handle_helo }, { "EHLO", handle_ehlo }, { "MAIL", handle_mail },
	{ "RCPT", handle_rcpt }, { "DATA", handle_data }, { "RSET", handle_rset },
	{ "NOOP", handle_noop }, { "QUIT", handle_quit }, { "VRFY", handle_vrfy },
	{ "HELP", handle_help },
	/* RFC 821 relics and extensions we do not offer (protocol.md 1.12). */
	{ "EXPN", handle_unimplemented }, { "SEND", handle_unimplemented },
	{ "SOML", handle_unimplemented }, { "SAML", handle_unimplemented },
	{ "TURN", handle_unimplemented }, { "ETRN", handle_unimplemented },
	{ "ATRN", handle_unimplemented }, { "BDAT", handle_unimplemented },
	{ "AUTH", handle_unimplemented }, { "STARTTLS", handle_unimplemented },
};

/* Split "VERB args", drop trailing blanks (RFC 5321 4.1.1), dispatch. */
static void
dispatch(struct session *s, const char *p, size_t n)
{
	size_t vlen = 0, arg;

	while (n > 0 && (p[n - 1] == ' ' || p[n - 1] == '\t'))
		n--;
	while (vlen < n && p[vlen] != ' ')
		vlen++;
	for (arg = vlen; arg < n && p[arg] == ' '; arg++)
		;
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
		if (strlen(commands[i].verb) == vlen &&
		    strncasecmp(commands[i].verb, p, vlen) == 0) {
			s->verb = commands[i].verb;
			commands[i].handle(s, p + arg, n - arg);
			return;
		}
	}
	s->verb = "unknown";
	refuse(s, 500, "5.5.2", "Command not recognized");
}

static void
handle_line(struct session *s, enum read_result r, const struct line *line)
{
	switch (r) {
	case READ_LINE:
		if (memchr(line->bytes, '\0', line->len) != NULL) {
			s->verb = "NUL";
			refuse(s, 500, "5.5.2", "Syntax error: NUL byte in command");
		} else {
			dispatch(s, line->bytes, line->len);
		}
		break;
	case READ_TOO_LONG:
		s->verb = "too-long";
		refuse(s, 500, "5.5.2", "Line too long");
		break;
	default:
		close_after_read(s, r);
		break;
	}
}

static int
flush_before_wait(void *arg)
{
	return reply_flush(arg);
}

int
session_run(const struct session_config *cfg, int in_fd, int out_fd)
{
	static struct session s;	/* 80 KiB of buffers: not on the stack */
	sigset_t stops, old;
	struct line line;

	/*
	 * Clear the state, not the 80 KiB of buffers (each is read only up to
	 * its length): clearing them cost every connection ~100,000
	 * instructions, a third of smtpd's own, and 20 page faults
	 * (bench/RESULTS.md). reader_init and reply_init do the same.
	 */
	memset(&s, 0, offsetof(struct session, in));
	memset(&s.delivery, 0, offsetof(struct delivery, buf));
	s.cfg = cfg;
	s.dirs = calloc(cfg->max_recipients > 0 ? cfg->max_recipients : 1, sizeof(*s.dirs));
	reader_init(&s.in, in_fd, (int)cfg->timeout * 1000, (int)cfg->session_timeout * 1000);
	reply_init(&s.out, out_fd, (int)cfg->timeout * 1000);
	/* Stop signals are taken only while waiting for the client (reader.c). */
	sigemptyset(&stops);
	sigaddset(&stops, SIGTERM);
	sigaddset(&stops, SIGINT);
	sigaddset(&stops, SIGHUP);
	sigprocmask(SIG_BLOCK, &stops, &old);
	s.in.wait_mask = old;
	s.in.stop = &stop_requested;
	s.out.wait_mask = old;
	s.out.stop = &stop_requested;
	s.in.read_limit = cfg->read_limit;
	s.in.before_wait = flush_before_wait;
	s.in.before_wait_arg = &s.out;
	s.verb = "connect";
	if (s.dirs == NULL) {
		session_close(&s, 421, "4.3.0", "Out of memory");
		return s.exit_status;
	}
	log_info("connect peer=%s%s%s", cfg->peer, cfg->proxy != NULL ? " proxy=" : "",
	    cfg->proxy != NULL ? cfg->proxy : "");
	reply_send(&s.out, 220, NULL, "%s ESMTP", cfg->hostname);
	while (s.state != S_CLOSED) {
		if (s.errors >= ERROR_LIMIT) {
			session_close(&s, 421, "4.7.0", "Error: too many errors");
			break;
		}
		handle_line(&s, reader_next(&s.in, &line, SMTP_COMMAND_MAX), &line);
		if (s.out.failed && s.state != S_CLOSED) {
			session_close(&s, 0, NULL, stop_requested ? "stopped while the client was not reading" :
			    "client stopped reading");
			s.exit_status = 1;
		}
	}
	reset_transaction(&s);
	free(s.dirs);
	sigprocmask(SIG_SETMASK, &old, NULL);
	return s.exit_status;
}
