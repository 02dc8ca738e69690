/*
 * session.c: the SMTP state machine (RFC 5321), one session per process.
 *
 * Promises: every command line gets exactly one reply, in order; the
 * connection ends only after 221, after 421 (timeout, too many errors,
 * stop) or at client EOF; a message is acknowledged with 250 only after
 * the content filter, when there is one, has accepted it and
 * maildir_commit() says it is on disk. Only <CRLF>.<CRLF> ends message data
 * (RFC 5321 4.1.1.4; doc/smuggling.md) and a BDAT chunk is read by its
 * count (RFC 3030), so no second transaction can be smuggled inside one;
 * after STARTTLS nothing sent in plain text is answered (RFC 3207 4.2).
 * Leaves reading to reader.c, reply formatting and flushing to reply.c,
 * TLS to tls.c, file handling to maildir.c, routing to route.c, running
 * the content filter to filter.c.
 */
#include "session.h"

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "address.h"
#include "filter.h"
#include "log.h"
#include "maildir.h"
#include "reader.h"
#include "reply.h"
#include "text.h"

#define DATA_PIECE	READER_BUFFER	/* longer data lines pass in pieces */
#define ERROR_LIMIT	20	/* Postfix's smtpd_hard_error_limit */
#define HOP_LIMIT	100	/* RFC 5321 6.3: count Received, at least 100 */
#define OVERSHOOT_LIMIT	1000	/* Postfix's smtpd_recipient_overshoot_limit */
#define HELO_MAX	255
#define CHUNK_CLOCK	65536	/* BDAT: octets per line timeout (RFC 3030 has none) */
#define FOLDER_LIMIT	10	/* create-folders: new folders per session */
#define LINGER_MS	2000	/* a lingering close reads at most this long */
#define LINGER_BYTES	(1 << 20)	/* and at most this much */

enum session_state { S_GREETED, S_HELLO, S_MAIL, S_RCPT, S_CLOSED };

/* One distinct destination of the transaction. */
struct destination {
	char	*maildir;		/* owned: freed by reset_transaction */
	char	folder[ROUTE_FOLDER_MAX];	/* "" or the ".TAG" the route named */
};

struct session {
	/*
	 * Everything but the buffers: session_run clears it whole, with one
	 * memset, so no field added here can escape the clearing.
	 */
	struct {
		const struct session_config *cfg;
		enum session_state state;
		int	exit_status;
		bool	closed_by_us;		/* with a 421: linger() */
		unsigned errors;
		bool	esmtp;
		struct tls *tls;		/* after STARTTLS; tls_close at the end */
		char	helo[HELO_MAX + 1];	/* sanitised: safe in Received */
		const char *verb;		/* the command being answered, for logs */
		const char *arg;		/* its argument, in the reader: valid until the next read */
		size_t	arg_len;

		/* The mail transaction: MAIL, RCPTs, DATA. */
		char	from[SMTP_PATH_MAX + 1];
		bool	smtputf8;
		char	first_rcpt[SMTP_PATH_MAX + 1];
		char	**rcpts;		/* owned, with a filter: the nrcpt forward paths */
		unsigned nrcpt;
		unsigned excess_rcpt;		/* RCPTs past max_recipients, refused with 452 */
		struct destination *dests;	/* owned: grown by add_recipient, freed by session_run */
		size_t	ndests, dests_room;
		unsigned folders_made;		/* create-folders: this session's, up to FOLDER_LIMIT */
		bool	chunking;		/* a BDAT came: DATA is out of step (RFC 3030 2) */
		bool	chunks_failed;		/* a chunk was refused: the rest are 503 */
		struct text text;		/* the message as stored, DATA or BDAT */
		size_t	trace_len;		/* our Return-Path and Received: where a filter's fields go */
	};

	/* The buffers, last: each init clears its own state and not its bytes. */
	struct reader in;
	struct reply out;
	struct delivery delivery;
};
_Static_assert(offsetof(struct session, out) == offsetof(struct session, in) + sizeof(struct reader) &&
    offsetof(struct session, delivery) == offsetof(struct session, out) + sizeof(struct reply) &&
    offsetof(struct session, delivery) + sizeof(struct delivery) == sizeof(struct session),
    "the buffers end struct session, one after the other: the state is all before `in`");

/*
 * Every refusal, and every fixed reply: code, enhanced code (RFC 3463) and
 * text defined once. Handlers return one of these (or REPLIED when they
 * sent a reply of their own); the dispatcher sends it.
 */
struct smtp_reply {
	int	code;
	const char *ecode;
	const char *text;
};
#define REPLIED	NULL

static const struct smtp_reply
    OK = { 250, "2.0.0", "Ok" },
    SENDER_OK = { 250, "2.1.0", "Ok" },
    RECIPIENT_OK = { 250, "2.1.5", "Ok" },
    /* RFC 5321 7.3: 252 when we will not say who exists */
    CANNOT_VRFY = { 252, "2.5.2", "Cannot VRFY user, but will accept message" },
    HELP_TEXT = { 214, "2.0.0", "Commands: HELO EHLO MAIL RCPT DATA BDAT RSET NOOP QUIT VRFY HELP" },
    /* Commands out of order (RFC 5321 4.1.4) */
    HELLO_FIRST = { 503, "5.5.1", "Send HELO/EHLO first" },
    NESTED_MAIL = { 503, "5.5.1", "Nested MAIL command" },
    MAIL_FIRST = { 503, "5.5.1", "MAIL first" },
    NO_RECIPIENTS = { 554, "5.5.1", "No valid recipients" },
    DATA_AFTER_BDAT = { 503, "5.5.1", "DATA after BDAT" },	/* Postfix's text */
    RCPT_AFTER_BDAT = { 503, "5.5.1", "RCPT after BDAT" },
    BDAT_FAILED = { 503, "5.5.1", "Chunk discarded after an earlier error" },
    /* Syntax */
    UNKNOWN_COMMAND = { 500, "5.5.2", "Command not recognized" },
    NUL_IN_COMMAND = { 500, "5.5.2", "Syntax error: NUL byte in command" },
    LINE_TOO_LONG = { 500, "5.5.2", "Line too long" },
    NOT_IMPLEMENTED = { 502, "5.5.1", "Command not implemented" },	/* RFC 5321 4.2.4 */
    SYNTAX_STARTTLS = { 501, "5.5.4", "Syntax: STARTTLS" },
    TLS_ACTIVE = { 503, "5.5.1", "TLS already active" },
    TLS_IN_TRANSACTION = { 503, "5.5.1", "MAIL transaction in progress" },	/* Postfix's */
    TLS_UNAVAILABLE = { 454, "4.7.0", "TLS not available due to local problem" },
    TLS_REQUIRED = { 530, "5.7.0", "Must issue a STARTTLS command first" },
    SYNTAX_MAIL = { 501, "5.5.4", "Syntax: MAIL FROM:<address>" },
    SYNTAX_RCPT = { 501, "5.5.4", "Syntax: RCPT TO:<address>" },
    BAD_SENDER = { 501, "5.1.7", "Bad sender address syntax" },
    SENDER_TOO_LONG = { 501, "5.1.7", "Sender address too long" },
    BAD_RECIPIENT = { 501, "5.1.3", "Bad recipient address syntax" },
    RECIPIENT_TOO_LONG = { 501, "5.1.3", "Recipient address too long" },
    BAD_MAIL_PARAM = { 501, "5.5.4", "Bad MAIL parameter syntax" },
    UNKNOWN_MAIL_PARAM = { 555, "5.5.4", "Unsupported MAIL parameter" },
    NO_BINARYMIME = { 555, "5.5.4", "BODY=BINARYMIME not supported" },
    SYNTAX_BDAT = { 501, "5.5.4", "Syntax: BDAT size [LAST]" },
    UNKNOWN_RCPT_PARAM = { 555, "5.5.4", "Unsupported RCPT parameter" },
    NEEDS_SMTPUTF8 = { 553, "5.6.7", "Must declare SMTPUTF8 to send a UTF-8 address" },
    /* Policy */
    TOO_MANY_RECIPIENTS = { 452, "4.5.3", "Too many recipients" },
    USER_UNKNOWN = { 550, "5.1.1", "User unknown" },
    RELAY_DENIED = { 550, "5.7.1", "Relay access denied" },
    TOO_BIG = { 552, "5.3.4", "Message size exceeds fixed maximum message size" },
    TOO_MANY_HOPS = { 554, "5.4.6", "Too many hops: mail loop?" },
    /* Our own faults: try again later */
    LOOKUP_FAILED = { 451, "4.3.0", "Temporary failure looking up the recipient" },
    OUT_OF_MEMORY = { 451, "4.3.0", "Out of memory; try again later" },
    STAGING_FAILED = { 451, "4.3.0", "Local error staging the message; try again later" },
    WRITE_FAILED = { 451, "4.3.0", "Local error writing the message; try again later" },
    NO_SPACE = { 452, "4.3.1", "Insufficient system storage" },
    /*
     * The content filter's verdicts (filter.h). A refusal's text is the
     * filter's own, sent with reply_send; this one stands in when it gave
     * none. 451 4.7.1 is Postfix's reply when a milter says try later.
     */
    CONTENT_REFUSED = { 554, "5.7.1", "Message rejected by content filter" },
    CONTENT_UNCHECKED = { 451, "4.7.1", "Service unavailable - try again later" },
    CONTENT_FILTER_FAILED = { 451, "4.3.0", "Error in content filter; try again later" };

/*
 * Refuse the current command: one reply, one log line, one client error
 * toward ERROR_LIMIT. Excess recipients differ, as RFC 5321 4.5.3.1.10 has
 * the client go on with those accepted: the first of a transaction is
 * logged and the transaction's line counts them all; like Postfix, they
 * are errors only past OVERSHOOT_LIMIT, so a flood ends at the error limit.
 */
static void
refuse(struct session *s, const struct smtp_reply *r)
{
	bool excess = r == &TOO_MANY_RECIPIENTS;

	reply_send(&s->out, r->code, r->ecode, "%s", r->text);
	if (!excess || ++s->excess_rcpt > OVERSHOOT_LIMIT)
		s->errors++;
	if (!excess || s->excess_rcpt == 1)
		log_info("refused peer=%s cmd=%s reply=\"%d %s %s\"",
		    s->cfg->peer, s->verb, r->code, r->ecode, r->text);
}

/* Send a handler's outcome; 4xx and 5xx are refusals. */
static void
answer(struct session *s, const struct smtp_reply *r)
{
	if (r == REPLIED)
		return;
	if (r->code >= 400)
		refuse(s, r);
	else
		reply_send(&s->out, r->code, r->ecode, "%s", r->text);
}

/* The one way out: last reply, flush, one log line (session_run lingers). */
static void
session_close(struct session *s, int code, const char *ecode, const char *why)
{
	if (code != 0)
		reply_send(&s->out, code, ecode, "%s %s", s->cfg->hostname, why);
	reply_flush(&s->out);
	log_info("disconnect peer=%s reason=\"%s\" errors=%u", s->cfg->peer, why, s->errors);
	s->exit_status = code == 0 || code == 221 ? 0 : 1;
	s->closed_by_us = code != 0;
	s->state = S_CLOSED;
}

/* A flush failed: the client does not read, so no last reply can reach it. */
static void
close_not_reading(struct session *s)
{
	session_close(s, 0, NULL, stop_requested(s->cfg->stop) ?
	    "stopped while the client was not reading" : "client stopped reading");
	s->exit_status = 1;
}

/*
 * A read that brought no line ends the session: 421 on a timeout or a stop
 * (RFC 5321 3.8), silence when the client is gone or does not read.
 */
static void
close_after_read(struct session *s, enum read_result r)
{
	if (s->out.failed)	/* the flush before the read */
		close_not_reading(s);
	else if (r == READ_TIMEOUT)
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
	for (unsigned i = 0; s->rcpts != NULL && i < s->nrcpt; i++)
		free(s->rcpts[i]);
	free(s->rcpts);
	s->rcpts = NULL;
	s->trace_len = 0;
	s->from[0] = '\0';
	s->first_rcpt[0] = '\0';
	s->smtputf8 = false;
	s->nrcpt = 0;
	s->excess_rcpt = 0;
	s->chunking = s->chunks_failed = false;
	memset(&s->text, 0, sizeof(s->text));
	for (size_t i = 0; i < s->ndests; i++)
		free(s->dests[i].maildir);
	s->ndests = 0;
	if (s->state == S_MAIL || s->state == S_RCPT)
		s->state = S_HELLO;
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
static void
greet(struct session *s, bool esmtp)
{
	keep_helo(s, s->arg, s->arg_len);
	s->esmtp = esmtp;
	reset_transaction(s);
	s->state = S_HELLO;
}

static const struct smtp_reply *
handle_helo(struct session *s)
{
	greet(s, false);
	reply_send(&s->out, 250, NULL, "%s", s->cfg->hostname);
	return REPLIED;
}

static const struct smtp_reply *
handle_ehlo(struct session *s)
{
	greet(s, true);
	/* RFC 5321 4.1.1.1: list exactly what we implement. */
	reply_send_more(&s->out, 250, "%s", s->cfg->hostname);
	reply_send_more(&s->out, 250, "PIPELINING");
	reply_send_more(&s->out, 250, "SIZE %llu", s->cfg->max_message_size);
	reply_send_more(&s->out, 250, "8BITMIME");
	reply_send_more(&s->out, 250, "ENHANCEDSTATUSCODES");
	if (s->cfg->tls.cert_file != NULL && s->tls == NULL)
		reply_send_more(&s->out, 250, "STARTTLS");
	reply_send_more(&s->out, 250, "SMTPUTF8");
	reply_send(&s->out, 250, NULL, "CHUNKING");
	return REPLIED;
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

/* MAIL FROM:<path> and RCPT TO:<path>, each path then parameters (RFC 5321 4.1.1). */
struct path_arg {
	const char *keyword;
	enum path_kind kind;
	const struct smtp_reply *usage, *bad, *too_long;
};

static const struct path_arg
    SENDER = { "FROM:", PATH_REVERSE, &SYNTAX_MAIL, &BAD_SENDER, &SENDER_TOO_LONG },
    RECIPIENT = { "TO:", PATH_FORWARD, &SYNTAX_RCPT, &BAD_RECIPIENT, &RECIPIENT_TOO_LONG };

/* The command's path into *a, *params where its parameters start; NULL or a refusal. */
static const struct smtp_reply *
parse_path_arg(struct session *s, const struct path_arg *pa, bool utf8, struct address *a,
    size_t *params)
{
	size_t off = skip_keyword(s->arg, s->arg_len, pa->keyword), used;
	enum address_result ar;

	if (off == 0)
		return pa->usage;
	ar = address_parse_path(s->arg + off, s->arg_len - off, pa->kind, utf8, a, &used);
	if (ar == ADDRESS_NEEDS_UTF8)
		return &NEEDS_SMTPUTF8;
	if (ar != ADDRESS_OK)
		return ar == ADDRESS_TOO_LONG ? pa->too_long : pa->bad;
	*params = off + used;
	return NULL;
}

enum param_result { PARAM_OK, PARAM_BAD_VALUE, PARAM_UNKNOWN, PARAM_TOO_BIG, PARAM_BINARYMIME };

/* 1 to 20 digits (RFC 1870 SIZE=, RFC 3030 BDAT); a value too big for us saturates. */
static int
parse_size(const char *p, size_t n, unsigned long long *out)
{
	unsigned long long v = 0;

	if (n == 0 || n > 20)
		return -1;
	for (size_t i = 0; i < n; i++) {
		if (p[i] < '0' || p[i] > '9')
			return -1;
		v = v > (~0ULL - 9) / 10 ? ~0ULL : v * 10 + (unsigned)(p[i] - '0');
	}
	*out = v;
	return 0;
}

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
		unsigned long long size;

		if (v == NULL || parse_size(v, vlen, &size) == -1)
			return PARAM_BAD_VALUE;
		return size > s->cfg->max_message_size ? PARAM_TOO_BIG : PARAM_OK;
	}
	if (is_keyword(p, klen, "BODY")) {
		if (v != NULL && (is_keyword(v, vlen, "7BIT") || is_keyword(v, vlen, "8BITMIME")))
			return PARAM_OK;
		/* RFC 3030 3: stored lines end in LF, so binary bodies would change. */
		return v != NULL && is_keyword(v, vlen, "BINARYMIME") ? PARAM_BINARYMIME :
		    PARAM_BAD_VALUE;
	}
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

static const struct smtp_reply *
handle_mail(struct session *s)
{
	struct address from;
	const struct smtp_reply *r;
	size_t params;
	enum param_result pr;

	if (s->cfg->require_tls && s->tls == NULL)
		return &TLS_REQUIRED;	/* RFC 3207 4: never for a public MX */
	/* A UTF-8 sender parses; SMTPUTF8 among the parameters decides below. */
	if ((r = parse_path_arg(s, &SENDER, true, &from, &params)) != NULL)
		return r;
	s->smtputf8 = false;
	pr = parse_mail_params(s, s->arg + params, s->arg_len - params);
	if (pr != PARAM_OK) {
		s->smtputf8 = false;
		return pr == PARAM_UNKNOWN ? &UNKNOWN_MAIL_PARAM : pr == PARAM_TOO_BIG ? &TOO_BIG :
		    pr == PARAM_BINARYMIME ? &NO_BINARYMIME : &BAD_MAIL_PARAM;
	}
	if (from.utf8 && !s->smtputf8)
		return &NEEDS_SMTPUTF8;
	address_format(&from, s->from, sizeof(s->from));
	s->state = S_MAIL;
	return &SENDER_OK;
}

/*
 * A content filter gets every forward path (SMTPD_RCPTS): kept only when
 * one is configured, at most max_recipients of them. -1 out of memory.
 */
static int
keep_forward_path(struct session *s, const struct address *to)
{
	char path[SMTP_PATH_MAX + 1];

	if (s->cfg->filter == NULL)
		return 0;
	if (s->rcpts == NULL && (s->rcpts = calloc(s->cfg->max_recipients, sizeof(*s->rcpts))) == NULL)
		return -1;
	address_format(to, path, sizeof(path));
	if ((s->rcpts[s->nrcpt] = strdup(path)) == NULL)
		return -1;
	return 0;
}

/*
 * Room for one destination more: four, then twice as many. Grown as
 * recipients come, not made for max_recipients at the start: most
 * transactions have one, and a heap page less is touched.
 */
static int
grow_destinations(struct session *s)
{
	size_t room = s->dests_room == 0 ? 4 : s->dests_room * 2;
	struct destination *d = realloc(s->dests, room * sizeof(*d));

	if (d == NULL)
		return -1;
	s->dests = d;
	s->dests_room = room;
	return 0;
}

/* Remember the recipient's destination once, however many recipients share it. */
static int
add_recipient(struct session *s, const struct address *to, const struct route *route)
{
	size_t i;

	for (i = 0; i < s->ndests && (strcmp(s->dests[i].maildir, route->maildir) != 0 ||
	    strcmp(s->dests[i].folder, route->folder) != 0); i++)
		;
	if (i == s->dests_room && grow_destinations(s) == -1)
		return -1;
	if (keep_forward_path(s, to) == -1)
		return -1;
	if (i == s->ndests) {
		if ((s->dests[i].maildir = strdup(route->maildir)) == NULL) {
			if (s->rcpts != NULL) {	/* kept above, not yet counted */
				free(s->rcpts[s->nrcpt]);
				s->rcpts[s->nrcpt] = NULL;
			}
			return -1;
		}
		memcpy(s->dests[i].folder, route->folder, sizeof(route->folder));
		s->ndests++;
	}
	if (s->nrcpt++ == 0)
		address_format(to, s->first_rcpt, sizeof(s->first_rcpt));
	s->state = S_RCPT;
	return 0;
}

static const struct smtp_reply *
handle_rcpt(struct session *s)
{
	struct address to;
	const struct smtp_reply *r;
	size_t params;
	struct route route;

	if (s->chunking)
		return &RCPT_AFTER_BDAT;	/* Postfix's text; RFC 3030 leaves it open */
	if ((r = parse_path_arg(s, &RECIPIENT, s->smtputf8, &to, &params)) != NULL)
		return r;
	if (params < s->arg_len)
		return &UNKNOWN_RCPT_PARAM;
	if (s->nrcpt >= s->cfg->max_recipients)
		return &TOO_MANY_RECIPIENTS;	/* RFC 5321 4.5.3.1.10: the excess only */
	switch (routes_lookup(s->cfg->routes, &to, &route)) {
	case ROUTE_UNKNOWN_USER:
		return &USER_UNKNOWN;
	case ROUTE_NOT_OURS:
		return &RELAY_DENIED;
	case ROUTE_TEMPFAIL:
		return &LOOKUP_FAILED;
	case ROUTE_OK:
		break;
	}
	if (add_recipient(s, &to, &route) == -1)
		return &OUT_OF_MEMORY;
	return &RECIPIENT_OK;
}

/* Return-Path and a Received line in RFC 5321 4.4's grammar. */
static void
write_trace_headers(struct session *s)
{
	char head[2048], date[64];
	time_t now = time(NULL);
	struct tm tm;
	/* RFC 3848 and RFC 6531 protocol names; the S says TLS */
	const char *with = s->smtputf8 ? "UTF8SMTP" : s->esmtp ? "ESMTP" : "SMTP";
	char tls[128] = "";
	int n;

	if (s->tls != NULL)	/* letters, digits, '.', '-', '_' only (tls.h) */
		snprintf(tls, sizeof(tls), "\n\t(%s %s)", tls_version(s->tls), tls_cipher(s->tls));
	localtime_r(&now, &tm);
	strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S %z", &tm);
	n = snprintf(head, sizeof(head),
	    "Return-Path: %s\nReceived: from %s%s%s%s%s\n\tby %s with %s%s id %s%s%s; %s\n",
	    s->from, s->helo, s->cfg->peer_literal ? " (" : "",
	    s->cfg->peer_literal ? s->cfg->peer_literal : "", s->cfg->peer_literal ? ")" : "",
	    tls, s->cfg->hostname, with, s->tls != NULL ? "S" : "", s->delivery.id,
	    s->nrcpt == 1 ? "\n\tfor " : "", s->nrcpt == 1 ? s->first_rcpt : "", date);
	if (n > 0 && (size_t)n < sizeof(head)) {
		maildir_write(&s->delivery, head, (size_t)n);
		s->trace_len = (size_t)n;
	} else
		s->delivery.error = 1;	/* cannot happen: every field is bounded */
}

/*
 * Read message data up to <CRLF>.<CRLF>, the only end of data (RFC 5321
 * 4.1.1.4): a "." line ends it only when it and the line before both ended
 * in CRLF. Bare LF ends a stored line but never the data; bare CR is kept
 * as a byte. Lines are stored with LF. Faults keep reading to the end.
 */
static enum read_result
receive_data(struct session *s)
{
	/*
	 * The DATA line's end counts as the first CRLF of <CRLF>.<CRLF> even
	 * when it was a bare LF (we accept those on command lines), so an
	 * empty message can always end; inside the data, CRLF is required.
	 */
	bool prev_crlf = true;
	struct line line;
	enum read_result r;

	for (;;) {
		const char *p;
		size_t n;

		if ((r = reader_piece(&s->in, &line, DATA_PIECE)) != READ_LINE)
			return r;
		p = line.bytes;
		n = line.len;
		if (s->text.line_start && prev_crlf && line.crlf && n == 1 && p[0] == '.')
			return READ_LINE;
		/* RFC 5321 4.5.2: the client doubled any leading dot; take one off. */
		if (s->text.line_start && n > 0 && p[0] == '.' && (n > 1 || !line.complete)) {
			p++;
			n--;
		}
		s->text.size += n + (line.complete ? 2 : 0);
		if (s->text.size > s->cfg->max_message_size)
			text_too_big(&s->text);
		text_line(&s->text, p, n, line.complete);
		prev_crlf = line.crlf;
	}
}

/* One line per message that reached its end; tail: more fields, or "". */
static void
log_delivery(struct session *s, const char *result, const char *tail, bool fault)
{
	/* One call, no line buffer of our own: vsyslog or the journal formats it. */
	log_at(fault ? LOG_ERR : LOG_INFO, "%s peer=%s%s%s id=%s from=%s rcpt=%s nrcpt=%u "
	    "maildirs=%zu size=%llu excess-rcpt=%u%s%s%s%s%s",
	    result, s->cfg->peer, s->cfg->proxy != NULL ? " proxy=" : "",
	    s->cfg->proxy != NULL ? s->cfg->proxy : "", s->delivery.id,
	    log_quote(s->from, strlen(s->from)),
	    log_quote(s->first_rcpt, strlen(s->first_rcpt)), s->nrcpt, s->ndests, s->text.size,
	    s->excess_rcpt, s->tls != NULL ? " tls=" : "", s->tls != NULL ? tls_version(s->tls) : "",
	    s->tls != NULL ? " cipher=" : "", s->tls != NULL ? tls_cipher(s->tls) : "",
	    tail);
}

/*
 * A tag's folder takes the message only when it is a real Maildir++ folder
 * now: an existing ".tag" that is not one (a home directory's .ssh) is
 * never written into. A missing one is made here, at DATA before the 354,
 * when create-folders allows and this session has made fewer than
 * FOLDER_LIMIT: so only a transaction that stages a message creates one.
 * Otherwise the message goes to the Maildir itself.
 */
static void
settle_folder(struct session *s, struct destination *d)
{
	int made;

	if (d->folder[0] == '\0' || maildir_is_folder(d->maildir, d->folder))
		return;
	if (s->cfg->routes->create_folders && s->folders_made < FOLDER_LIMIT) {
		if ((made = maildir_make_folder(d->maildir, d->folder)) != -1) {
			if (made == 1)
				log_info("new-folder peer=%s maildir=%s folder=%s", s->cfg->peer,
				    log_quote(d->maildir, strlen(d->maildir)), d->folder);
			s->folders_made += (unsigned)made;
			return;
		}
		if (errno != EEXIST)	/* EEXIST: not a folder, left alone */
			log_error("cannot create folder peer=%s maildir=%s folder=%s: %s",
			    s->cfg->peer, log_quote(d->maildir, strlen(d->maildir)), d->folder,
			    strerror(errno));
	}
	d->folder[0] = '\0';
}

/* Stage the message in every destination, each folder settled first. */
static enum deliver_result
start_delivery(struct session *s)
{
	enum deliver_result r = maildir_begin(&s->delivery, s->ndests);

	for (size_t i = 0; i < s->ndests && r == DELIVER_OK; i++) {
		settle_folder(s, &s->dests[i]);
		r = maildir_stage(&s->delivery, s->dests[i].maildir, s->dests[i].folder);
	}
	return r;
}

/*
 * A message the filter did not accept: dropped, one reply (the filter's
 * text for a refusal), and the transaction's line with the reply and what
 * the filter did; at error level when the filter itself failed.
 */
static void
refuse_filtered(struct session *s, const struct smtp_reply *r, const char *text,
    const char *why)
{
	char tail[2400];

	maildir_abort(&s->delivery);
	reply_send(&s->out, r->code, r->ecode, "%s", text);
	snprintf(tail, sizeof(tail), " reply=\"%d %s %s\" filter=\"%s\"", r->code, r->ecode,
	    log_quote_text(text, strlen(text)), log_quote_text(why, strlen(why)));
	log_delivery(s, "filtered", tail, r != &CONTENT_REFUSED);
}

/*
 * Run the content filter over the staged message, once for all its copies.
 * true: commit, the filter's header fields now right after our
 * Received line. false: refused, replied and logged. A staged copy that
 * cannot be read back is left to maildir_commit to report. A stop signal
 * ends the wait (451 4.7.1); the next read then closes with 421.
 */
static bool
filter_accepts(struct session *s)
{
	/* 64 KiB: kept off the stack, and out of the state cleared per session. */
	static struct filter_result res;
	const struct stop_wait *stop = s->cfg->stop;
	const struct filter_spec spec = { .argv = s->cfg->filter, .timeout = s->cfg->filter_timeout,
	    .stop = stop != NULL ? stop->flag : NULL, .wait_mask = stop != NULL ? &stop->mask : NULL };
	struct filter_env env = { .id = s->delivery.id, .peer = s->cfg->peer, .helo = s->helo,
	    .from = s->from, .rcpts = (const char *const *)s->rcpts, .nrcpts = s->nrcpt };
	enum filter_verdict v;
	struct stat st;
	char tls[128];
	int fd = maildir_open_staged(&s->delivery);

	if (fd == -1)
		return true;
	if (s->tls != NULL) {	/* SMTPD_TLS: "TLSv1.3 TLS_AES_256_GCM_SHA384" */
		snprintf(tls, sizeof(tls), "%s %s", tls_version(s->tls), tls_cipher(s->tls));
		env.tls = tls;
	}
	env.size = fstat(fd, &st) == 0 ? (unsigned long long)st.st_size : s->text.size;
	v = filter_run(&spec, fd, &env, &res);
	close(fd);
	switch (v) {
	case FILTER_ACCEPT:
		if (res.headers_len > 0)	/* a failure is maildir_commit's to report */
			maildir_insert(&s->delivery, (off_t)s->trace_len, res.headers, res.headers_len);
		return true;
	case FILTER_REJECT:
		refuse_filtered(s, &CONTENT_REFUSED, res.text[0] != '\0' ? res.text :
		    CONTENT_REFUSED.text, res.reason);
		return false;
	case FILTER_BAD_OUTPUT:
		refuse_filtered(s, &CONTENT_FILTER_FAILED, CONTENT_FILTER_FAILED.text, res.reason);
		return false;
	case FILTER_TEMPFAIL:
	default:
		refuse_filtered(s, &CONTENT_UNCHECKED, CONTENT_UNCHECKED.text, res.reason);
		return false;
	}
}

/* The end of a message (the final dot, BDAT LAST): one reply, 250 once on disk. */
static const struct smtp_reply *
finish_message(struct session *s)
{
	enum deliver_result r;

	if (s->text.too_big)
		return &TOO_BIG;
	if (s->text.hops >= HOP_LIMIT) {
		maildir_abort(&s->delivery);
		return &TOO_MANY_HOPS;
	}
	if (s->cfg->filter != NULL && !filter_accepts(s))
		return REPLIED;
	r = maildir_commit(&s->delivery);
	log_delivery(s, r == DELIVER_OK ? "delivered" : "failed", "", false);
	if (r != DELIVER_OK)
		return r == DELIVER_NOSPACE ? &NO_SPACE : &WRITE_FAILED;
	reply_send(&s->out, 250, "2.0.0", "%s", s->delivery.id);
	return REPLIED;
}

/* Stage the message and write our trace fields: DATA before its 354, a first BDAT. */
static const struct smtp_reply *
begin_message(struct session *s)
{
	enum deliver_result r = start_delivery(s);

	if (r != DELIVER_OK) {
		log_error("cannot stage a message peer=%s", s->cfg->peer);
		return r == DELIVER_NOSPACE ? &NO_SPACE : &STAGING_FAILED;
	}
	write_trace_headers(s);
	text_begin(&s->text, &s->delivery);
	return NULL;
}

static const struct smtp_reply *
handle_data(struct session *s)
{
	const struct smtp_reply *r;
	enum read_result rr;

	if (s->chunking)
		return &DATA_AFTER_BDAT;
	if ((r = begin_message(s)) != NULL)
		return r;
	reply_send(&s->out, 354, NULL, "End data with <CR><LF>.<CR><LF>");
	if ((rr = receive_data(s)) == READ_LINE)
		r = finish_message(s);
	else	/* RFC 5321 4.1.1.10: a transaction cut short is void */
		close_after_read(s, rr);
	reset_transaction(s);
	return r != NULL ? r : REPLIED;
}

/*
 * Read exactly n octets, stored when keep, else thrown away: a refused
 * chunk is still consumed (RFC 3030 2), so its bytes are never commands.
 * The line timeout runs per CHUNK_CLOCK octets: a steady slow sender of a
 * big chunk is not cut off, a stalled one is. false when the session ended.
 */
static bool
read_chunk(struct session *s, unsigned long long n, bool keep)
{
	unsigned long long since_clock = 0;
	struct line piece;
	enum read_result r;

	reader_restart_clock(&s->in);
	while (n > 0) {
		if ((r = reader_bytes(&s->in, &piece, n < DATA_PIECE ? (size_t)n : DATA_PIECE)) != READ_LINE) {
			close_after_read(s, r);	/* RFC 5321 4.1.1.10: the transaction is void */
			return false;
		}
		n -= piece.len;
		if (keep)
			text_octets(&s->text, piece.bytes, piece.len);
		if ((since_clock += piece.len) >= CHUNK_CLOCK) {
			reader_restart_clock(&s->in);
			since_clock = 0;
		}
	}
	return true;
}

/* "BDAT size [LAST]" (RFC 3030 2): 1 to 20 digits, then LAST or nothing. */
static int
parse_bdat(const char *p, size_t n, unsigned long long *size, bool *last)
{
	size_t digits = 0, i;

	while (digits < n && p[digits] != ' ')
		digits++;
	if (parse_size(p, digits, size) == -1)
		return -1;
	for (i = digits; i < n && p[i] == ' '; i++)
		;
	*last = i < n;
	return i == n || (i > digits && is_keyword(p + i, n - i, "LAST")) ? 0 : -1;
}

/*
 * Whether this chunk's octets are kept, checked before they are read: the
 * sequence (no MAIL: there is no transaction to touch), an earlier
 * failure, recipients and staging on the first chunk, then the size. The
 * chunks after a failed one are discarded until LAST or RSET.
 */
static const struct smtp_reply *
accept_chunk(struct session *s, unsigned long long size)
{
	const struct smtp_reply *r;

	if (s->state == S_GREETED || s->state == S_HELLO)
		return &MAIL_FIRST;
	if (s->text.too_big)
		return &TOO_BIG;
	if (s->chunks_failed)
		return &BDAT_FAILED;
	if (!s->chunking) {
		s->chunking = true;
		r = s->state == S_MAIL ? &NO_RECIPIENTS : begin_message(s);
		if (r != NULL) {
			s->chunks_failed = true;
			return r;
		}
	}
	/* max-message-size counts octets as sent (RFC 1870), our trace lines not. */
	if (size > s->cfg->max_message_size - s->text.size) {
		text_too_big(&s->text);
		return &TOO_BIG;
	}
	s->text.size += size;
	return NULL;
}

static const struct smtp_reply *
handle_bdat(struct session *s)
{
	const struct smtp_reply *r;
	unsigned long long size;
	bool last;

	if (parse_bdat(s->arg, s->arg_len, &size, &last) == -1) {
		/* The chunk's length is unknown, so what follows cannot be read as commands. */
		refuse(s, &SYNTAX_BDAT);
		session_close(s, 421, "4.7.0", "Error: BDAT chunk size unknown");
		return REPLIED;
	}
	r = accept_chunk(s, size);
	if (!read_chunk(s, size, r == NULL))
		return REPLIED;
	if (r == NULL && !last) {
		reply_send(&s->out, 250, "2.0.0", "%llu octets received", size);
		return REPLIED;
	}
	if (r == NULL) {
		text_end(&s->text);
		r = finish_message(s);
	}
	if (last && s->chunking)
		reset_transaction(s);
	return r;
}

/*
 * RFC 3207: 220, then the handshake on the same connection. Whatever the
 * client sent after the STARTTLS line is dropped unanswered (CVE-2011-0411);
 * a failed handshake ends the connection without a plain-text word; a
 * good one starts the session over (4.2): name, transaction, ESMTP gone.
 */
static const struct smtp_reply *
handle_starttls(struct session *s)
{
	const struct stop_wait *stop = s->cfg->stop;
	char why[256];
	struct tls *t;
	enum tls_result r;

	if (s->cfg->tls.cert_file == NULL)
		return &NOT_IMPLEMENTED;
	if (s->arg_len > 0)
		return &SYNTAX_STARTTLS;
	if (s->tls != NULL)
		return &TLS_ACTIVE;
	if (s->state == S_MAIL || s->state == S_RCPT)
		return &TLS_IN_TRANSACTION;
	if ((t = tls_accept(&s->cfg->tls, s->in.opt.fd, s->out.opt.fd, why, sizeof(why))) == NULL) {
		log_error("tls-unavailable peer=%s reason=%s", s->cfg->peer, log_quote(why, strlen(why)));
		return &TLS_UNAVAILABLE;
	}
	if (why[0] != '\0')
		log_info("tls-warning peer=%s reason=%s", s->cfg->peer, log_quote(why, strlen(why)));
	s->tls = t;
	reply_send(&s->out, 220, "2.0.0", "Ready to start TLS");
	if (reply_flush(&s->out) == -1) {
		close_not_reading(s);
		return REPLIED;
	}
	log_info("starttls peer=%s dropped=%zu", s->cfg->peer, reader_start_tls(&s->in, t));
	r = tls_handshake(t, reader_deadline(&s->in), stop != NULL ? stop->flag : NULL,
	    stop != NULL ? &stop->mask : NULL);
	if (r != TLS_OK) {
		log_info("tls-failed peer=%s reason=%s", s->cfg->peer, r == TLS_TIMEOUT ? "timeout" :
		    r == TLS_STOPPED ? "stopped" : log_quote(tls_error(t), strlen(tls_error(t))));
		session_close(s, 0, NULL, "TLS handshake failed");
		s->exit_status = 1;
		return REPLIED;
	}
	reply_start_tls(&s->out, t);
	log_info("tls peer=%s tls=%s cipher=%s resumed=%s", s->cfg->peer, tls_version(t),
	    tls_cipher(t), tls_resumed(t) ? "yes" : "no");
	reset_transaction(s);
	s->helo[0] = '\0';
	s->esmtp = false;
	s->state = S_GREETED;
	return REPLIED;
}

static const struct smtp_reply *
handle_rset(struct session *s)
{
	reset_transaction(s);
	return &OK;
}

static const struct smtp_reply *
handle_quit(struct session *s)
{
	reply_send(&s->out, 221, "2.0.0", "Bye");
	session_close(s, 0, NULL, "quit");
	return REPLIED;
}

/* What the dispatcher checks of a command's argument, before the state. */
enum arg_rule {
	ARGS_IGNORED,	/* anything: NOOP (RFC 5321 4.1.1.9), HELP, those we lack */
	ARGS_NONE,	/* 501 with the row's usage when one is given */
	ARGS_REQUIRED,	/* 501 with the row's usage when none is given */
	ARGS_PARSED,	/* the handler's own grammar, so after the state (MAIL, RCPT) */
};

/* RFC 2920 3.1: a command whose reply the client waits for ends a group. */
enum group_place { ANYWHERE, LAST_IN_GROUP };

/*
 * One row per verb. The dispatcher checks the argument rule, then the
 * state, then runs the handler (or sends the row's reply when the reply is
 * all there is to it), so a handler starts where its command is valid.
 * refused[state] is the reply in a state where the command is not allowed
 * (NULL: allowed), so each keeps the text it has always had.
 */
struct command {
	const char *verb;
	const struct smtp_reply *(*handle)(struct session *);
	enum arg_rule args;
	enum group_place group;
	const char *usage;		/* the 501 text for ARGS_NONE, ARGS_REQUIRED */
	const struct smtp_reply *reply;	/* the answer of a row without a handler */
	const struct smtp_reply *refused[S_CLOSED];	/* S_CLOSED reads no command */
};

static const struct command commands[] = {
	{ "HELO", handle_helo, ARGS_REQUIRED, LAST_IN_GROUP, .usage = "Syntax: HELO hostname" },
	{ "EHLO", handle_ehlo, ARGS_REQUIRED, LAST_IN_GROUP, .usage = "Syntax: EHLO hostname" },
	{ "MAIL", handle_mail, ARGS_PARSED, ANYWHERE, .refused = {
	    [S_GREETED] = &HELLO_FIRST, [S_MAIL] = &NESTED_MAIL, [S_RCPT] = &NESTED_MAIL } },
	{ "RCPT", handle_rcpt, ARGS_PARSED, ANYWHERE, .refused = {
	    [S_GREETED] = &MAIL_FIRST, [S_HELLO] = &MAIL_FIRST } },
	{ "DATA", handle_data, ARGS_NONE, LAST_IN_GROUP, .usage = "Syntax: DATA", .refused = {
	    [S_GREETED] = &MAIL_FIRST, [S_HELLO] = &MAIL_FIRST, [S_MAIL] = &NO_RECIPIENTS } },
	{ "BDAT", handle_bdat, ARGS_PARSED, ANYWHERE, .usage = NULL },
	{ "STARTTLS", handle_starttls, ARGS_PARSED, LAST_IN_GROUP, .usage = NULL },
	{ "RSET", handle_rset, ARGS_NONE, ANYWHERE, .usage = "Syntax: RSET" },
	{ "NOOP", NULL, ARGS_IGNORED, LAST_IN_GROUP, .reply = &OK },
	{ "QUIT", handle_quit, ARGS_NONE, LAST_IN_GROUP, .usage = "Syntax: QUIT" },
	{ "VRFY", NULL, ARGS_REQUIRED, LAST_IN_GROUP, .usage = "Syntax: VRFY address",
	    .reply = &CANNOT_VRFY },
	{ "HELP", NULL, ARGS_IGNORED, ANYWHERE, .reply = &HELP_TEXT },
	/* RFC 821 relics and extensions we do not offer. */
	{ "EXPN", NULL, ARGS_IGNORED, LAST_IN_GROUP, .reply = &NOT_IMPLEMENTED },
	{ "SEND", NULL, ARGS_IGNORED, ANYWHERE, .reply = &NOT_IMPLEMENTED },
	{ "SOML", NULL, ARGS_IGNORED, ANYWHERE, .reply = &NOT_IMPLEMENTED },
	{ "SAML", NULL, ARGS_IGNORED, ANYWHERE, .reply = &NOT_IMPLEMENTED },
	{ "TURN", NULL, ARGS_IGNORED, LAST_IN_GROUP, .reply = &NOT_IMPLEMENTED },
	{ "ETRN", NULL, ARGS_IGNORED, ANYWHERE, .reply = &NOT_IMPLEMENTED },
	{ "ATRN", NULL, ARGS_IGNORED, ANYWHERE, .reply = &NOT_IMPLEMENTED },
	{ "AUTH", NULL, ARGS_IGNORED, ANYWHERE, .reply = &NOT_IMPLEMENTED },
};

/* The row's rules, then its handler: exactly one reply either way. */
static void
run_command(struct session *s, const struct command *c)
{
	bool has_arg = s->arg_len > 0;

	s->verb = c->verb;
	if ((c->args == ARGS_NONE && has_arg) || (c->args == ARGS_REQUIRED && !has_arg))
		refuse(s, &(const struct smtp_reply){ 501, "5.5.4", c->usage });
	else if (c->refused[s->state] != NULL)
		refuse(s, c->refused[s->state]);
	else
		answer(s, c->handle != NULL ? c->handle(s) : c->reply);
}

/* Split "VERB args", drop trailing blanks (RFC 5321 4.1.1), find the row. */
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
	s->arg = p + arg;
	s->arg_len = n - arg;
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
		if (strlen(commands[i].verb) == vlen &&
		    strncasecmp(commands[i].verb, p, vlen) == 0) {
			run_command(s, &commands[i]);
			return;
		}
	}
	s->verb = "unknown";
	refuse(s, &UNKNOWN_COMMAND);
}

static void
handle_line(struct session *s, enum read_result r, const struct line *line)
{
	switch (r) {
	case READ_LINE:
		if (memchr(line->bytes, '\0', line->len) != NULL) {
			s->verb = "NUL";
			refuse(s, &NUL_IN_COMMAND);
		} else {
			dispatch(s, line->bytes, line->len);
		}
		break;
	case READ_TOO_LONG:
		s->verb = "too-long";
		refuse(s, &LINE_TOO_LONG);
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

/*
 * A lingering close: after our 421, or with input still unread, the
 * client's kernel would get a reset for the bytes we never read, and may
 * then drop our last reply unread (Windows does). So we send our FIN and
 * read until theirs, a bounded while, as Apache's lingering_close does.
 * Not after 221 with nothing pending: a polite client waits for nothing.
 * Inside TLS, our close_notify goes first (RFC 8446 6.1).
 */
static void
linger(struct session *s)
{
	bool wanted = !s->out.failed && (s->closed_by_us || reader_pending(&s->in));

	if (s->tls != NULL) {	/* close_notify first, not waiting for the client's */
		tls_close(s->tls);
		s->tls = s->in.tls = s->out.tls = NULL;
	}
	if (wanted && reply_shutdown(&s->out) == 0)
		reader_drain(&s->in, LINGER_MS, LINGER_BYTES);
}

int
session_run(const struct session_config *cfg, int in_fd, int out_fd)
{
	/*
	 * 80 KiB of buffers: not on the stack. From a page boundary, a short
	 * session's state and the used starts of its buffers fill 5 pages,
	 * not 7 (bench/RESULTS-shape.md).
	 */
	static _Alignas(4096) struct session s;
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
	reply_init(&s.out, &(struct reply_options){ .fd = out_fd,
	    .timeout_ms = (int)cfg->timeout * 1000,
	    .session_timeout_ms = (int)cfg->session_timeout * 1000, .stop = cfg->stop });
	reader_init(&s.in, &(struct reader_options){ .fd = in_fd,
	    .line_timeout_ms = (int)cfg->timeout * 1000,
	    .session_timeout_ms = (int)cfg->session_timeout * 1000,
	    .read_limit = cfg->read_limit, .stop = cfg->stop,
	    .before_wait = flush_before_wait, .before_wait_arg = &s.out });
	s.verb = "connect";
	log_info("connect peer=%s%s%s", cfg->peer, cfg->proxy != NULL ? " proxy=" : "",
	    cfg->proxy != NULL ? cfg->proxy : "");
	reply_send(&s.out, 220, NULL, "%s ESMTP", cfg->hostname);
	while (s.state != S_CLOSED) {
		if (s.errors >= ERROR_LIMIT) {
			session_close(&s, 421, "4.7.0", "Error: too many errors");
			break;
		}
		handle_line(&s, reader_next(&s.in, &line, SMTP_COMMAND_MAX), &line);
		if (s.out.failed && s.state != S_CLOSED)
			close_not_reading(&s);	/* a flush when the buffer filled */
	}
	reset_transaction(&s);	/* nothing staged is left while we linger */
	free(s.dests);
	linger(&s);
	return s.exit_status;
}
