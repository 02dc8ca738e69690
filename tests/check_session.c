/* check_session.c: the SMTP state machine, driven over files as a socket. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "harness.h"

#define EHLO "EHLO c.example\r\n"
#define MAIL "MAIL FROM:<a@example.org>\r\n"
#define RCPT "RCPT TO:<b@example.org>\r\n"

static void
run_string(struct harness *h, const char *input)
{
	harness_run(h, input, strlen(input), 0);
}

/* One row: what the client sends, which reply to look at, what it must be. */
struct exchange {
	const char *input;
	size_t	reply;
	const char *expect;
};

static const struct exchange exchanges[] = {
	{ "QUIT\r\n", 0, "220 mx.example ESMTP" },
	{ "QUIT\r\n", 1, "221 2.0.0 Bye" },
	{ EHLO "QUIT\r\n", 1, "250 CHUNKING" },
	{ "HELO c.example\r\nQUIT\r\n", 1, "250 mx.example" },
	{ "ehlo c.example\r\nmail from:<a@example.org>\r\n", 2, "250 2.1.0 Ok" },
	{ "EHLO\r\n", 1, "501 5.5.4 Syntax: EHLO hostname" },
	{ "HELO\r\n", 1, "501 5.5.4 Syntax: HELO hostname" },
	/* Order of commands (RFC 5321 3.3, 4.1.4). */
	{ MAIL, 1, "503 5.5.1 Send HELO/EHLO first" },
	{ EHLO RCPT, 2, "503 5.5.1 MAIL first" },
	{ EHLO "DATA\r\n", 2, "503 5.5.1 MAIL first" },
	{ EHLO MAIL "DATA\r\n", 3, "554 5.5.1 No valid recipients" },
	{ EHLO MAIL MAIL, 3, "503 5.5.1 Nested MAIL command" },
	{ EHLO MAIL RCPT, 3, "250 2.1.5 Ok" },
	{ EHLO MAIL RCPT "DATA\r\n", 4, "354 End data with <CR><LF>.<CR><LF>" },
	{ EHLO MAIL "RSET\r\n" RCPT, 4, "503 5.5.1 MAIL first" },
	{ EHLO MAIL EHLO RCPT, 4, "503 5.5.1 MAIL first" },	/* EHLO resets */
	{ EHLO MAIL "HELO c\r\n" RCPT, 4, "503 5.5.1 MAIL first" },
	{ "RSET\r\n", 1, "250 2.0.0 Ok" },
	{ "NOOP\r\n", 1, "250 2.0.0 Ok" },
	{ "NOOP anything at all\r\n", 1, "250 2.0.0 Ok" },
	{ "RSET x\r\n", 1, "501 5.5.4 Syntax: RSET" },
	{ "QUIT now\r\n", 1, "501 5.5.4 Syntax: QUIT" },
	{ EHLO MAIL RCPT "DATA x\r\n", 4, "501 5.5.4 Syntax: DATA" },
	/* The seed's fourteen commands. */
	{ "VRFY root\r\n", 1, "252 2.5.2 Cannot VRFY user, but will accept message" },
	{ "VRFY\r\n", 1, "501 5.5.4 Syntax: VRFY address" },
	{ "EXPN list\r\n", 1, "502 5.5.1 Command not implemented" },
	{ "SEND FROM:<a@b>\r\n", 1, "502 5.5.1 Command not implemented" },
	{ "SOML FROM:<a@b>\r\n", 1, "502 5.5.1 Command not implemented" },
	{ "SAML FROM:<a@b>\r\n", 1, "502 5.5.1 Command not implemented" },
	{ "TURN\r\n", 1, "502 5.5.1 Command not implemented" },
	{ "HELP\r\n", 1, "214 2.0.0 Commands: HELO EHLO MAIL RCPT DATA BDAT RSET NOOP QUIT VRFY HELP" },
	{ "XYZZY\r\n", 1, "500 5.5.2 Command not recognized" },
	{ "XYZZY\r\nNOOP\r\n", 2, "250 2.0.0 Ok" },
	{ "\r\n", 1, "500 5.5.2 Command not recognized" },
	{ "NO\0OP\r\n", 1, "500 5.5.2 Syntax error: NUL byte in command" },
	/* Arguments. */
	{ EHLO "MAIL FROM:<>\r\n", 2, "250 2.1.0 Ok" },
	{ EHLO "MAIL FROM: <a@example.org>\r\n", 2, "250 2.1.0 Ok" },
	{ EHLO "MAIL FROM:a@example.org\r\n", 2, "501 5.1.7 Bad sender address syntax" },
	{ EHLO "MAIL TO:<a@example.org>\r\n", 2, "501 5.5.4 Syntax: MAIL FROM:<address>" },
	{ EHLO "MAIL FROM:<a@example.org> FOO=BAR\r\n", 2, "555 5.5.4 Unsupported MAIL parameter" },
	{ EHLO "MAIL FROM:<a@example.org> SIZE=1000\r\n", 2, "250 2.1.0 Ok" },
	{ EHLO "MAIL FROM:<a@example.org> SIZE=1048577\r\n", 2,
	    "552 5.3.4 Message size exceeds fixed maximum message size" },
	{ EHLO "MAIL FROM:<a@example.org> SIZE=12x\r\n", 2, "501 5.5.4 Bad MAIL parameter syntax" },
	{ EHLO "MAIL FROM:<a@example.org> SIZE=\r\n", 2, "501 5.5.4 Bad MAIL parameter syntax" },
	{ EHLO "MAIL FROM:<a@example.org> SMTPUTF8=yes\r\n", 2, "501 5.5.4 Bad MAIL parameter syntax" },
	{ EHLO "MAIL FROM:<a@example.org> BODY=8BITMIME\r\n", 2, "250 2.1.0 Ok" },
	{ EHLO "MAIL FROM:<a@example.org> BODY=7bit\r\n", 2, "250 2.1.0 Ok" },
	/* RFC 3030: CHUNKING without BINARYMIME, whose body LF storage would change. */
	{ EHLO "MAIL FROM:<a@example.org> BODY=BINARYMIME\r\n", 2, "555 5.5.4 BODY=BINARYMIME not supported" },
	{ EHLO "MAIL FROM:<j\xc3\xb8rn@example.org>\r\n", 2,
	    "553 5.6.7 Must declare SMTPUTF8 to send a UTF-8 address" },
	{ EHLO "MAIL FROM:<j\xc3\xb8rn@example.org> SMTPUTF8\r\n", 2, "250 2.1.0 Ok" },
	{ EHLO MAIL "RCPT TO:<j\xc3\xb8rn@example.org>\r\n", 3,
	    "553 5.6.7 Must declare SMTPUTF8 to send a UTF-8 address" },
	{ EHLO MAIL "RCPT TO:<postmaster>\r\n", 3, "250 2.1.5 Ok" },
	{ EHLO MAIL "RCPT TO:<PostMaster>\r\n", 3, "250 2.1.5 Ok" },
	{ EHLO MAIL "RCPT TO:<>\r\n", 3, "501 5.1.3 Bad recipient address syntax" },
	{ EHLO MAIL "RCPT TO:<b@example.org> NOTIFY=NEVER\r\n", 3, "555 5.5.4 Unsupported RCPT parameter" },
	{ EHLO MAIL "RCPT TO:<@relay.example:b@example.org>\r\n", 3, "250 2.1.5 Ok" },
	{ EHLO MAIL "RCPT FROM:<b@example.org>\r\n", 3, "501 5.5.4 Syntax: RCPT TO:<address>" },
	/* Lines over 512 octets (RFC 5321 4.5.3.1.4) and the session stays in step. */
	{ "NOOP 01234567890123456789012345678901234567890123456789012345678901234567890123456789"
	  "01234567890123456789012345678901234567890123456789012345678901234567890123456789"
	  "01234567890123456789012345678901234567890123456789012345678901234567890123456789"
	  "01234567890123456789012345678901234567890123456789012345678901234567890123456789"
	  "01234567890123456789012345678901234567890123456789012345678901234567890123456789"
	  "01234567890123456789012345678901234567890123456789012345678901234567890123456789"
	  "0123456789012345678901234567890123456789\r\nNOOP\r\n", 1, "500 5.5.2 Line too long" },
	{ "NOOP 01234567890123456789012345678901234567890123456789012345678901234567890123456789"
	  "01234567890123456789012345678901234567890123456789012345678901234567890123456789"
	  "01234567890123456789012345678901234567890123456789012345678901234567890123456789"
	  "01234567890123456789012345678901234567890123456789012345678901234567890123456789"
	  "01234567890123456789012345678901234567890123456789012345678901234567890123456789"
	  "01234567890123456789012345678901234567890123456789012345678901234567890123456789"
	  "0123456789012345678901234567890123456789\r\nNOOP\r\n", 2, "250 2.0.0 Ok" },
	/* Trailing blanks are tolerated (RFC 5321 4.1.1). */
	{ "NOOP \t \r\nQUIT  \r\n", 2, "221 2.0.0 Bye" },
	/* Bare LF still ends a command line, like Postfix. */
	{ "NOOP\nQUIT\n", 2, "221 2.0.0 Bye" },
	/* A pipelined whole transaction: every reply, in order. */
	{ EHLO MAIL RCPT "DATA\r\nhi\r\n.\r\nQUIT\r\n", 6, "221 2.0.0 Bye" },
	/* A bare-LF DATA line still counts as the CRLF before an empty message's dot. */
	{ EHLO MAIL RCPT "DATA\n.\r\nQUIT\r\n", 6, "221 2.0.0 Bye" },
	/* Commands after a group-ending one are answered normally. */
	{ "NOOP\r\nNOOP\r\nQUIT\r\n", 2, "250 2.0.0 Ok" },
	{ EHLO "NOOP\r\n" "VRFY x\r\n", 3, "252 2.5.2 Cannot VRFY user, but will accept message" },
	/* BDAT (RFC 3030): exactly SIZE octets follow, never read as commands. */
	{ EHLO MAIL RCPT "BDAT 6\r\nNOOP\r\nNOOP\r\n", 4, "250 2.0.0 6 octets received" },
	{ EHLO MAIL RCPT "BDAT 6\r\nNOOP\r\nNOOP\r\n", 5, "250 2.0.0 Ok" },
	{ EHLO MAIL RCPT "BDAT 6\r\nNOOP\r\nNOOP\r\n", 6, "" },
	{ EHLO MAIL RCPT "BDAT 6 LAST\r\nQUIT\r\nNOOP\r\n", 5, "250 2.0.0 Ok" },
	{ EHLO MAIL RCPT "bdat 0 last\r\nNOOP\r\n", 5, "250 2.0.0 Ok" },
	/* A refused chunk is consumed all the same. */
	{ EHLO "BDAT 6\r\nQUIT\r\nNOOP\r\n", 2, "503 5.5.1 MAIL first" },
	{ EHLO "BDAT 6\r\nQUIT\r\nNOOP\r\n", 3, "250 2.0.0 Ok" },
	{ EHLO MAIL "BDAT 6\r\nQUIT\r\n", 3, "554 5.5.1 No valid recipients" },
	{ EHLO MAIL "BDAT 6\r\nQUIT\r\nBDAT 6 LAST\r\nQUIT\r\nNOOP\r\n", 4,
	    "503 5.5.1 Chunk discarded after an earlier error" },
	{ EHLO MAIL "BDAT 6\r\nQUIT\r\nBDAT 6 LAST\r\nQUIT\r\nNOOP\r\n", 5, "250 2.0.0 Ok" },
	/* Inside a BDAT transaction. */
	{ EHLO MAIL RCPT "BDAT 1\r\nxDATA\r\n", 5, "503 5.5.1 DATA after BDAT" },
	{ EHLO MAIL RCPT "BDAT 1\r\nxRCPT TO:<c@example.org>\r\n", 5, "503 5.5.1 RCPT after BDAT" },
	{ EHLO MAIL RCPT "BDAT 1\r\nx" MAIL, 5, "503 5.5.1 Nested MAIL command" },
	{ EHLO MAIL RCPT "BDAT 1\r\nxRSET\r\nBDAT 1 LAST\r\nx", 6, "503 5.5.1 MAIL first" },
	/* A size that cannot be read: where the next command starts is unknown. */
	{ EHLO MAIL RCPT "BDAT 1x\r\nNOOP\r\n", 4, "501 5.5.4 Syntax: BDAT size [LAST]" },
	{ EHLO MAIL RCPT "BDAT 1x\r\nNOOP\r\n", 5, "421 4.7.0 mx.example Error: BDAT chunk size unknown" },
	{ EHLO MAIL RCPT "BDAT 1x\r\nNOOP\r\n", 6, "" },
};

/* Every exchange twice: input whole, then one byte per read(2). */
START_TEST(exchange_table)
{
	const struct exchange *x = &exchanges[_i / 2];
	size_t len = strlen(x->input);
	struct harness h;

	if (strncmp(x->input, "NO\0OP", 6) == 0)
		len = 7;
	harness_init(&h);
	routes_finish(&h.routes);
	harness_run(&h, x->input, len, _i % 2 ? 1 : 0);
	ck_assert_msg(strcmp(harness_reply(&h, x->reply), x->expect) == 0,
	    "input %zu (%s): reply %zu is \"%s\", want \"%s\"", (size_t)_i / 2,
	    _i % 2 ? "bytewise" : "whole", x->reply, harness_reply(&h, x->reply), x->expect);
	harness_finish(&h);
}
END_TEST

START_TEST(ehlo_lists_what_we_implement)
{
	struct harness h;

	harness_start(&h, EHLO "QUIT\r\n");
	ck_assert_ptr_nonnull(strstr(h.out, "250-mx.example\r\n250-PIPELINING\r\n250-SIZE 1048576\r\n"
	    "250-8BITMIME\r\n250-ENHANCEDSTATUSCODES\r\n250-SMTPUTF8\r\n250 CHUNKING\r\n"));
	harness_finish(&h);
}
END_TEST

START_TEST(delivers_one_message)
{
	struct harness h;
	char *m;

	harness_start(&h, EHLO MAIL RCPT "DATA\r\nSubject: hi\r\n\r\nbody\r\n.\r\nQUIT\r\n");
	ck_assert_int_eq(h.status, 0);
	ck_assert_int_eq(harness_count(&h, "new"), 1);
	ck_assert_int_eq(harness_count(&h, "tmp"), 0);
	m = harness_message(&h, NULL, NULL);
	ck_assert_ptr_nonnull(m);
	ck_assert_msg(strncmp(m, "Return-Path: <a@example.org>\nReceived: from c.example ([192.0.2.7])\n"
	    "\tby mx.example with ESMTP id ", 96) == 0, "headers: %s", m);
	ck_assert_ptr_nonnull(strstr(m, "\n\tfor <b@example.org>; "));
	ck_assert_ptr_nonnull(strstr(m, "\nSubject: hi\n\nbody\n"));
	ck_assert_str_eq(m + strlen(m) - 18, "Subject: hi\n\nbody\n");
	ck_assert_msg(strncmp(harness_reply(&h, 5), "250 2.0.0 ", 10) == 0, "%s", harness_reply(&h, 5));
	/* The id in the reply is the id in Received. */
	ck_assert_ptr_nonnull(strstr(m, harness_reply(&h, 5) + 10));
	free(m);
	harness_finish(&h);
}
END_TEST

START_TEST(received_has_no_for_with_two_recipients)
{
	struct harness h;
	char *m;

	harness_start(&h, EHLO MAIL RCPT "RCPT TO:<c@example.org>\r\nDATA\r\nx\r\n.\r\n");
	m = harness_message(&h, NULL, NULL);
	ck_assert_ptr_nonnull(m);
	ck_assert_ptr_null(strstr(m, "for <"));
	ck_assert_int_eq(harness_count(&h, "new"), 1);	/* one copy per Maildir */
	free(m);
	harness_finish(&h);
}
END_TEST

START_TEST(helo_gives_smtp_and_null_sender)
{
	struct harness h;
	char *m;

	harness_start(&h, "HELO c(x)\r\nMAIL FROM:<>\r\n" RCPT "DATA\r\nx\r\n.\r\n");
	m = harness_message(&h, NULL, NULL);
	ck_assert_ptr_nonnull(m);
	ck_assert_msg(strncmp(m, "Return-Path: <>\nReceived: from c?x? ([192.0.2.7])\n\tby mx.example with SMTP id ",
	    78) == 0, "%s", m);
	free(m);
	harness_finish(&h);
}
END_TEST

START_TEST(smtputf8_is_recorded)
{
	struct harness h;
	char *m;

	harness_start(&h, EHLO "MAIL FROM:<j\xc3\xb8rn@example.org> SMTPUTF8\r\n"
	    "RCPT TO:<\xc3\xa5se@example.org>\r\nDATA\r\nx\r\n.\r\n");
	m = harness_message(&h, NULL, NULL);
	ck_assert_ptr_nonnull(m);
	ck_assert_ptr_nonnull(strstr(m, "Return-Path: <j\xc3\xb8rn@example.org>\n"));
	ck_assert_ptr_nonnull(strstr(m, " with UTF8SMTP id "));
	free(m);
	harness_finish(&h);
}
END_TEST

/* RFC 5321 4.5.2 and 4.1.1.4: only CRLF.CRLF ends data; one dot comes off. */
struct data_case {
	const char *data;	/* after DATA\r\n, through the final dot */
	size_t	data_len;
	const char *body;	/* stored after the trace headers */
	size_t	body_len;
};
#define D(data, body) { data, sizeof(data) - 1, body, sizeof(body) - 1 }

static const struct data_case data_cases[] = {
	D(".\r\n", ""),
	D("a\r\n.\r\n", "a\n"),
	D("..\r\n.\r\n", ".\n"),
	D("..x\r\n.x\r\n.\r\n", ".x\nx\n"),
	/* A first line led by a blank would extend our Received field: it becomes body. */
	D(". \r\n.\r\n", "\n \n"),
	D("\t(forged)\r\nSubject: x\r\n.\r\n", "\n\t(forged)\nSubject: x\n"),
	D("Subject: x\r\n\tfolded\r\n.\r\n", "Subject: x\n\tfolded\n"),
	D("a\nb\r\n.\r\n", "a\nb\n"),		/* bare LF ends a stored line */
	D("a\rb\r\n.\r\n", "a\rb\n"),		/* bare CR is kept */
	D("8bit \xe9\xff\x01\r\n.\r\n", "8bit \xe9\xff\x01\n"),
	/* SMTP smuggling sequences 1-10 of doc/smuggling.md: none of these ends the data. */
	D("a\n.\nMAIL FROM:<s@x>\r\n.\r\n", "a\n.\nMAIL FROM:<s@x>\n"),
	D("a\n.\r\nMAIL FROM:<s@x>\r\n.\r\n", "a\n.\nMAIL FROM:<s@x>\n"),
	D("a\r\n.\nMAIL FROM:<s@x>\r\n.\r\n", "a\n.\nMAIL FROM:<s@x>\n"),
	D("a\r.\rMAIL FROM:<s@x>\r\n.\r\n", "a\r.\rMAIL FROM:<s@x>\n"),
	D("a\r.\nMAIL FROM:<s@x>\r\n.\r\n", "a\r.\nMAIL FROM:<s@x>\n"),
	D("a\n.\rMAIL FROM:<s@x>\r\n.\r\n", "a\n\rMAIL FROM:<s@x>\n"),
	D("a\r.\r\nMAIL FROM:<s@x>\r\n.\r\n", "a\r.\nMAIL FROM:<s@x>\n"),
	D("a\r\n.\rX\r\n.\r\n", "a\n\rX\n"),
	D("a\r\n.\r\r\nMAIL FROM:<s@x>\r\n.\r\n", "a\n\r\nMAIL FROM:<s@x>\n"),
	D("a\r\r\n.\r\r\nMAIL FROM:<s@x>\r\n.\r\n", "a\r\n\r\nMAIL FROM:<s@x>\n"),
	D("a\r\n\0.\r\nMAIL FROM:<s@x>\r\n.\r\n", "a\n\0.\nMAIL FROM:<s@x>\n"),
	D("a\r\n.\0\r\nMAIL FROM:<s@x>\r\n.\r\n", "a\n\0\nMAIL FROM:<s@x>\n"),
};

START_TEST(data_transparency)
{
	const struct data_case *c = &data_cases[_i / 2];
	static const char head[] = EHLO MAIL RCPT "DATA\r\n";
	char input[512], *m, *body;
	size_t n = sizeof(head) - 1, len;
	struct harness h;

	memcpy(input, head, n);
	memcpy(input + n, c->data, c->data_len);
	n += c->data_len;
	memcpy(input + n, "QUIT\r\n", 6);
	n += 6;
	harness_init(&h);
	routes_finish(&h.routes);
	harness_run(&h, input, n, _i % 2);
	ck_assert_msg(strncmp(harness_reply(&h, 5), "250 2.0.0 ", 10) == 0, "case %d: %s",
	    _i / 2, harness_reply(&h, 5));
	ck_assert_str_eq(harness_reply(&h, 6), "221 2.0.0 Bye");
	ck_assert_uint_eq(h.nreplies, 7);	/* nothing smuggled was answered */
	ck_assert_int_eq(harness_count(&h, "new"), 1);
	m = harness_message(&h, NULL, &len);
	ck_assert_ptr_nonnull(m);
	body = strchr(strstr(m, "; "), '\n') + 1;
	ck_assert_msg(len - (size_t)(body - m) == c->body_len &&
	    memcmp(body, c->body, c->body_len) == 0, "case %d: stored body differs", _i / 2);
	free(m);
	harness_finish(&h);
}
END_TEST

START_TEST(oversized_data_is_read_to_the_end_then_refused)
{
	struct harness h;
	char *input = malloc(4096 * 1024);
	size_t n;

	n = (size_t)snprintf(input, 200, EHLO MAIL RCPT "DATA\r\n");
	for (int i = 0; i < 20000; i++) {
		memcpy(input + n, "0123456789012345678901234567890123456789012345678901234567890123456789\r\n", 72);
		n += 72;
	}
	memcpy(input + n, ".\r\nNOOP\r\n", 9);
	n += 9;
	harness_init(&h);
	routes_finish(&h.routes);
	harness_run(&h, input, n, 0);
	ck_assert_str_eq(harness_reply(&h, 5), "552 5.3.4 Message size exceeds fixed maximum message size");
	ck_assert_str_eq(harness_reply(&h, 6), "250 2.0.0 Ok");
	ck_assert_int_eq(harness_count(&h, "new"), 0);
	ck_assert_int_eq(harness_count(&h, "tmp"), 0);
	free(input);
	harness_finish(&h);
}
END_TEST

START_TEST(long_data_lines_pass_whole)
{
	struct harness h;
	static char input[40000];
	size_t n = (size_t)snprintf(input, 200, EHLO MAIL RCPT "DATA\r\n");
	char *m;

	memset(input + n, 'x', 30000);
	n += 30000;
	memcpy(input + n, "\r\n.\r\n", 5);
	n += 5;
	harness_init(&h);
	routes_finish(&h.routes);
	harness_run(&h, input, n, 0);
	m = harness_message(&h, NULL, NULL);
	ck_assert_ptr_nonnull(m);
	ck_assert_uint_eq(strspn(strstr(m, "xxx"), "x"), 30000);
	free(m);
	harness_finish(&h);
}
END_TEST

/* Run input in a session that takes at most max recipients per transaction. */
static void
run_max_rcpt(struct harness *h, const char *input, size_t n, unsigned max)
{
	harness_init(h);
	h->cfg.max_recipients = max;
	routes_finish(&h->routes);
	harness_run(h, input, n, 0);
}

START_TEST(too_many_recipients_refuses_only_the_excess)
{
	struct harness h;
	char input[4096];
	size_t n = (size_t)snprintf(input, sizeof(input), EHLO MAIL);

	for (int i = 0; i < 25; i++)
		n += (size_t)snprintf(input + n, sizeof(input) - n, "RCPT TO:<r%d@example.org>\r\n", i);
	n += (size_t)snprintf(input + n, sizeof(input) - n, "DATA\r\nx\r\n.\r\n");
	run_max_rcpt(&h, input, n, 3);
	ck_assert_str_eq(harness_reply(&h, 5), "250 2.1.5 Ok");
	ck_assert_str_eq(harness_reply(&h, 6), "452 4.5.3 Too many recipients");
	/* 22 excess 452s do not count as errors: the session goes on. */
	ck_assert_str_eq(harness_reply(&h, 28), "354 End data with <CR><LF>.<CR><LF>");
	ck_assert_int_eq(harness_count(&h, "new"), 1);
	harness_finish(&h);
}
END_TEST

/* 452s for excess recipients: one log line per transaction, the count in its delivery line. */
START_TEST(excess_recipients_are_logged_once_per_transaction)
{
	struct harness h;
	char input[4096];
	size_t n = (size_t)snprintf(input, sizeof(input), EHLO);

	for (int t = 0; t < 2; t++) {
		n += (size_t)snprintf(input + n, sizeof(input) - n, MAIL RCPT);
		for (int i = 0; i < 5 - 2 * t; i++)
			n += (size_t)snprintf(input + n, sizeof(input) - n, "RCPT TO:<r%d@example.org>\r\n", i);
		n += (size_t)snprintf(input + n, sizeof(input) - n, "DATA\r\nx\r\n.\r\n");
	}
	n += (size_t)snprintf(input + n, sizeof(input) - n, MAIL RCPT "DATA\r\nx\r\n.\r\n");
	run_max_rcpt(&h, input, n, 1);
	ck_assert_str_eq(harness_reply(&h, 8), "452 4.5.3 Too many recipients");
	ck_assert_str_eq(harness_reply(&h, 9), "354 End data with <CR><LF>.<CR><LF>");
	ck_assert_uint_eq(harness_log_count("reply=\"452 4.5.3 Too many recipients\""), 2);
	ck_assert_uint_eq(harness_log_count("delivered "), 3);
	ck_assert_uint_eq(harness_log_count(" nrcpt=1 "), 3);
	ck_assert_uint_eq(harness_log_count(" excess-rcpt=5"), 1);
	ck_assert_uint_eq(harness_log_count(" excess-rcpt=3"), 1);
	ck_assert_uint_eq(harness_log_count(" excess-rcpt=0"), 1);
	harness_finish(&h);
}
END_TEST

/*
 * Past 1,000 excess recipients (Postfix's smtpd_recipient_overshoot_limit)
 * each one is an error: 1,019 leave the session open, 1,020 end it.
 */
START_TEST(recipient_overshoot_ends_the_session)
{
	size_t excess = _i ? 1020 : 1019, n;
	char *input = malloc(64 * 1024);
	struct harness h;

	n = (size_t)snprintf(input, 200, EHLO MAIL RCPT);
	for (size_t i = 0; i < excess; i++)
		n += (size_t)snprintf(input + n, 64, "RCPT TO:<r%zu@example.org>\r\n", i);
	n += (size_t)snprintf(input + n, 64, "NOOP\r\n");
	run_max_rcpt(&h, input, n, 1);
	ck_assert_str_eq(harness_reply(&h, 3), "250 2.1.5 Ok");
	for (size_t i = 4; i < 4 + excess; i++)
		ck_assert_str_eq(harness_reply(&h, i), "452 4.5.3 Too many recipients");
	ck_assert_str_eq(harness_reply(&h, 4 + excess), _i ? "421 4.7.0 mx.example Error: too many errors" :
	    "250 2.0.0 Ok");
	ck_assert_uint_eq(h.nreplies, 5 + excess);
	ck_assert_uint_eq(harness_log_count("reply=\"452 "), 1);
	free(input);
	harness_finish(&h);
}
END_TEST

START_TEST(too_many_errors_end_the_session)
{
	struct harness h;
	char input[2048] = "";

	for (int i = 0; i < 30; i++)
		strncat(input, "BOGUS\r\n", sizeof(input) - strlen(input) - 1);
	harness_start(&h, input);
	ck_assert_str_eq(harness_reply(&h, 20), "500 5.5.2 Command not recognized");
	ck_assert_str_eq(harness_reply(&h, 21), "421 4.7.0 mx.example Error: too many errors");
	ck_assert_uint_eq(h.nreplies, 22);
	ck_assert_int_eq(h.status, 1);
	harness_finish(&h);
}
END_TEST

START_TEST(eof_mid_data_delivers_nothing)
{
	struct harness h;

	harness_start(&h, EHLO MAIL RCPT "DATA\r\npartial\r\n");
	ck_assert_int_eq(harness_count(&h, "new"), 0);
	ck_assert_int_eq(harness_count(&h, "tmp"), 0);
	ck_assert_int_eq(h.status, 0);
	harness_finish(&h);
}
END_TEST

START_TEST(several_messages_get_their_own_files)
{
	struct harness h;

	harness_start(&h, EHLO MAIL RCPT "DATA\r\none\r\n.\r\n" MAIL RCPT "DATA\r\ntwo\r\n.\r\n"
	    MAIL RCPT "DATA\r\nthree\r\n.\r\nQUIT\r\n");
	ck_assert_int_eq(harness_count(&h, "new"), 3);
	ck_assert_str_ne(harness_reply(&h, 5), harness_reply(&h, 9));
	harness_finish(&h);
}
END_TEST

START_TEST(routing_sends_each_maildir_one_copy)
{
	struct harness h;
	char a[256], b[256];
	char *ma, *mb;

	harness_init(&h);
	snprintf(a, sizeof(a), "%s/a", h.dir);
	snprintf(b, sizeof(b), "%s/b", h.dir);
	routes_add_domain(&h.routes, "example.org");
	routes_add_mailbox(&h.routes, "a@example.org", a, 1);
	routes_add_mailbox(&h.routes, "b@example.org", b, 2);
	routes_add_mailbox(&h.routes, "B2@example.org", b, 3);
	ck_assert_int_eq(routes_set_maildir(&h.routes, NULL), 0);
	routes_finish(&h.routes);
	run_string(&h, EHLO MAIL "RCPT TO:<a@example.org>\r\nRCPT TO:<b@example.org>\r\n"
	    "RCPT TO:<b2@EXAMPLE.org>\r\nRCPT TO:<nobody@example.org>\r\n"
	    "RCPT TO:<x@elsewhere.example>\r\nDATA\r\nhello\r\n.\r\n");
	ck_assert_str_eq(harness_reply(&h, 6), "550 5.1.1 User unknown");
	ck_assert_str_eq(harness_reply(&h, 7), "550 5.7.1 Relay access denied");
	ma = harness_message(&h, a, NULL);
	mb = harness_message(&h, b, NULL);
	ck_assert_ptr_nonnull(ma);
	ck_assert_ptr_nonnull(mb);
	ck_assert_str_eq(ma, mb);
	free(ma);
	free(mb);
	harness_finish(&h);
}
END_TEST

START_TEST(unwritable_maildir_gets_451_and_the_session_goes_on)
{
	struct harness h;

	harness_init(&h);
	ck_assert_int_eq(routes_set_maildir(&h.routes, "/proc/self/no-such-maildir"), 0);
	routes_finish(&h.routes);
	run_string(&h, EHLO MAIL RCPT "DATA\r\nNOOP\r\n");
	ck_assert_str_eq(harness_reply(&h, 4), "451 4.3.0 Local error staging the message; try again later");
	ck_assert_str_eq(harness_reply(&h, 5), "250 2.0.0 Ok");
	harness_finish(&h);
}
END_TEST

START_TEST(mail_loop_is_refused)
{
	struct harness h;
	char input[8192];
	size_t n = (size_t)snprintf(input, sizeof(input), EHLO MAIL RCPT "DATA\r\n");

	for (int i = 0; i < 100; i++)
		n += (size_t)snprintf(input + n, sizeof(input) - n, "Received: from x by y\r\n");
	n += (size_t)snprintf(input + n, sizeof(input) - n, "\r\nbody\r\n.\r\n");
	harness_init(&h);
	routes_finish(&h.routes);
	harness_run(&h, input, n, 0);
	ck_assert_str_eq(harness_reply(&h, 5), "554 5.4.6 Too many hops: mail loop?");
	ck_assert_int_eq(harness_count(&h, "new"), 0);
	harness_finish(&h);
}
END_TEST

/*
 * The command table's rules: a command in a state where it is not allowed,
 * with an argument it does not take or without one it needs. Each is one
 * reply, one log line and exactly one error: 19 leave the session open,
 * the 20th makes the next command get 421 (ERROR_LIMIT).
 */
struct rule_case {
	const char *before;	/* brings the session to the state; no errors */
	const char *command;
	const char *reply;
};

static const struct rule_case rule_cases[] = {
	{ "", MAIL, "503 5.5.1 Send HELO/EHLO first" },
	{ EHLO MAIL, MAIL, "503 5.5.1 Nested MAIL command" },
	{ EHLO MAIL RCPT, MAIL, "503 5.5.1 Nested MAIL command" },
	{ EHLO, RCPT, "503 5.5.1 MAIL first" },
	{ EHLO, "DATA\r\n", "503 5.5.1 MAIL first" },
	{ EHLO MAIL, "DATA\r\n", "554 5.5.1 No valid recipients" },
	{ EHLO MAIL RCPT, "DATA now\r\n", "501 5.5.4 Syntax: DATA" },
	{ EHLO, "RSET now\r\n", "501 5.5.4 Syntax: RSET" },
	{ "", "QUIT now\r\n", "501 5.5.4 Syntax: QUIT" },
	{ "", "HELO\r\n", "501 5.5.4 Syntax: HELO hostname" },
	{ EHLO, "EHLO \r\n", "501 5.5.4 Syntax: EHLO hostname" },
	{ "", "VRFY\r\n", "501 5.5.4 Syntax: VRFY address" },
};

START_TEST(table_rules_count_one_error_each)
{
	const struct rule_case *c = &rule_cases[_i / 2];
	size_t times = _i % 2 ? 20 : 19, first = 1, n;
	char input[4096], verb[16];
	struct harness h;

	n = (size_t)snprintf(input, sizeof(input), "%s", c->before);
	for (const char *p = c->before; (p = strstr(p, "\r\n")) != NULL; p += 2)
		first++;	/* the greeting, then one reply per line before */
	for (size_t i = 0; i < times; i++)
		n += (size_t)snprintf(input + n, sizeof(input) - n, "%s", c->command);
	n += (size_t)snprintf(input + n, sizeof(input) - n, "NOOP\r\n");
	harness_init(&h);
	routes_finish(&h.routes);
	harness_run(&h, input, n, 0);
	for (size_t i = first; i < first + times; i++)
		ck_assert_str_eq(harness_reply(&h, i), c->reply);
	snprintf(verb, sizeof(verb), "cmd=%.4s ", c->command);
	ck_assert_uint_eq(harness_log_count("refused "), times);
	ck_assert_uint_eq(harness_log_count(verb), times);
	ck_assert_str_eq(harness_reply(&h, first + times), times == 19 ? "250 2.0.0 Ok" :
	    "421 4.7.0 mx.example Error: too many errors");
	ck_assert_uint_eq(h.nreplies, first + times + 1);
	harness_finish(&h);
}
END_TEST

/*
 * Storage at chunk boundaries (RFC 3030): the message cut in two at every
 * position (of a CRLF, right after a bare CR, inside a UTF-8 sequence),
 * read whole and one byte per read, is stored as if sent in one piece.
 */
static const char cut_text[] = "Subject: cut\r\n\r\na\r\nb\rc\r\r\n\xc3\xa9\xe2\x82\xac\r\n.\r\n";
static const char cut_stored[] = "Subject: cut\n\na\nb\rc\r\n\xc3\xa9\xe2\x82\xac\n.\n";

START_TEST(bdat_cut_anywhere_is_stored_as_sent)
{
	size_t cut = (size_t)_i / 2 + 1, len = sizeof(cut_text) - 1;
	char input[512], want[64], *m;
	struct harness h;
	int n;

	n = snprintf(input, sizeof(input), EHLO MAIL RCPT "BDAT %zu\r\n%.*sBDAT %zu LAST\r\n%s",
	    cut, (int)cut, cut_text, len - cut, cut_text + cut);
	ck_assert(n > 0 && (size_t)n < sizeof(input));
	harness_init(&h);
	routes_finish(&h.routes);
	harness_run(&h, input, (size_t)n, _i % 2 ? 1 : 0);
	snprintf(want, sizeof(want), "250 2.0.0 %zu octets received", cut);
	ck_assert_str_eq(harness_reply(&h, 4), want);
	ck_assert_msg(strncmp(harness_reply(&h, 5), "250 2.0.0 ", 10) == 0, "%s", harness_reply(&h, 5));
	ck_assert_str_eq(harness_reply(&h, 6), "");	/* nothing in the chunks answered */
	m = harness_message(&h, NULL, NULL);
	ck_assert_msg(m != NULL, "cut at %zu: replies %s / %s", cut, harness_reply(&h, 4),
	    harness_reply(&h, 5));
	ck_assert_msg(strstr(m, "\nSubject: cut\n") != NULL &&
	    strcmp(strstr(m, "\nSubject: cut\n") + 1, cut_stored) == 0, "cut at %zu: %s", cut, m);
	free(m);
	harness_finish(&h);
}
END_TEST

/* RFC 5321 6.3 on BDAT: 100 Received lines, one cut inside "Received:". */
START_TEST(bdat_mail_loop_is_refused)
{
	struct harness h;
	char head[8192], input[8400];
	size_t n = 0;
	int k;

	for (int i = 0; i < 100; i++)
		n += (size_t)snprintf(head + n, sizeof(head) - n, "Received: from x by y\r\n");
	n += (size_t)snprintf(head + n, sizeof(head) - n, "\r\nbody\r\n");
	k = snprintf(input, sizeof(input), EHLO MAIL RCPT "BDAT 30\r\n%.30sBDAT %zu LAST\r\n%s",
	    head, n - 30, head + 30);
	ck_assert(k > 0 && (size_t)k < sizeof(input));
	harness_init(&h);
	routes_finish(&h.routes);
	harness_run(&h, input, (size_t)k, (size_t)_i);
	ck_assert_str_eq(harness_reply(&h, 4), "250 2.0.0 30 octets received");
	ck_assert_str_eq(harness_reply(&h, 5), "554 5.4.6 Too many hops: mail loop?");
	ck_assert_int_eq(harness_count(&h, "new"), 0);
	ck_assert_int_eq(harness_count(&h, "tmp"), 0);
	harness_finish(&h);
}
END_TEST

/*
 * Content filters: a sh script in the test's directory ($D),
 * run by the session as smtpd runs it, for every message of the run.
 */
static char filter_path[128];
static char *filter_argv[] = { filter_path, NULL };

static void
use_filter(struct harness *h, const char *body)
{
	char script[2048];
	int n = snprintf(script, sizeof(script), "#!/bin/sh\nD=%s\n%s\n", h->dir, body);
	FILE *f;

	ck_assert(n > 0 && (size_t)n < sizeof(script));
	snprintf(filter_path, sizeof(filter_path), "%s/filter", h->dir);
	f = fopen(filter_path, "w");
	ck_assert_ptr_nonnull(f);
	ck_assert_uint_eq(fwrite(script, 1, (size_t)n, f), (size_t)n);
	ck_assert_int_eq(fclose(f), 0);
	ck_assert_int_eq(chmod(filter_path, 0755), 0);
	h->cfg.filter = filter_argv;
	h->cfg.filter_timeout = 30;
}

/* A session on input with the sh filter body. */
static void
run_filtered(struct harness *h, const char *body, const char *input)
{
	harness_init(h);
	use_filter(h, body);
	routes_finish(&h->routes);
	run_string(h, input);
}

/* dir/name, NUL-terminated (a static buffer), or NULL. */
static const char *
read_in(const struct harness *h, const char *name)
{
	static char buf[8192];
	char path[256];
	FILE *f;
	size_t n;

	snprintf(path, sizeof(path), "%s/%s", h->dir, name);
	if ((f = fopen(path, "r")) == NULL)
		return NULL;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	return buf;
}

START_TEST(filter_fields_follow_our_received_line)
{
	struct harness h;
	char *m, seen[8192];
	const char *field = "X-Spam-Status: No, score=0.1\n\tfolded\n", *at;
	size_t len, k;

	run_filtered(&h, "cat >$D/seen\nprintf 'X-Spam-Status: No, score=0.1\\r\\n\\tfolded\\n'",
	    EHLO MAIL RCPT "DATA\r\nSubject: hi\r\n\r\nbody\r\n.\r\nQUIT\r\n");
	ck_assert_msg(strncmp(harness_reply(&h, 5), "250 2.0.0 ", 10) == 0, "%s",
	    harness_reply(&h, 5));
	ck_assert_ptr_nonnull(read_in(&h, "seen"));
	snprintf(seen, sizeof(seen), "%s", read_in(&h, "seen"));
	m = harness_message(&h, NULL, &len);
	ck_assert_ptr_nonnull(m);
	/* Stored = what the filter read, with its fields between Received and Subject. */
	ck_assert_uint_eq(len, strlen(seen) + strlen(field));
	at = strstr(m, field);
	ck_assert_ptr_nonnull(at);
	k = (size_t)(at - m);
	ck_assert(memcmp(m, seen, k) == 0 && strcmp(m + k + strlen(field), seen + k) == 0);
	ck_assert_ptr_nonnull(strstr(seen, "\nReceived: from c.example"));
	ck_assert_msg(strncmp(seen + k - 1, "\nSubject: hi\n\nbody\n", 19) == 0, "%s", m);
	ck_assert_int_eq(harness_count(&h, "tmp"), 0);
	free(m);
	harness_finish(&h);
}
END_TEST

START_TEST(filter_environment_describes_the_transaction)
{
	struct harness h;
	const char *env;
	char want[128];

	run_filtered(&h, "env >$D/env\nwc -c >$D/size",
	    "HELO c(x)\r\nMAIL FROM:<>\r\n" RCPT "RCPT TO:<C@example.org>\r\nDATA\r\nhi\r\n.\r\n");
	ck_assert_msg(strncmp(harness_reply(&h, 6), "250 2.0.0 ", 10) == 0, "%s",
	    harness_reply(&h, 6));
	env = read_in(&h, "env");
	ck_assert_ptr_nonnull(env);
	ck_assert_ptr_nonnull(strstr(env, "SMTPD_FROM=<>\n"));
	ck_assert_ptr_nonnull(strstr(env, "SMTPD_RCPTS=<b@example.org>\n<C@example.org>\n"));
	ck_assert_ptr_nonnull(strstr(env, "SMTPD_HELO=c?x?\n"));
	ck_assert_ptr_nonnull(strstr(env, "SMTPD_PEER=192.0.2.7\n"));
	snprintf(want, sizeof(want), "SMTPD_ID=%s\n", harness_reply(&h, 6) + 10);
	ck_assert_ptr_nonnull(strstr(env, want));
	ck_assert_ptr_null(strstr(env, "SMTPD_TLS="));
	snprintf(want, sizeof(want), "SMTPD_SIZE=%ld\n", atol(read_in(&h, "size")));
	ck_assert_ptr_nonnull(strstr(read_in(&h, "env"), want));
	harness_finish(&h);
}
END_TEST

START_TEST(filter_refusal_is_554_with_its_text)
{
	struct harness h;

	run_filtered(&h, "echo 'Spam \"score\" 9.9'\necho second line\nexit 100",
	    EHLO MAIL RCPT "DATA\r\nbuy\r\n.\r\n" MAIL RCPT "DATA\r\nbuy\r\n.\r\nQUIT\r\n");
	ck_assert_str_eq(harness_reply(&h, 5), "554 5.7.1 Spam \"score\" 9.9");
	ck_assert_str_eq(harness_reply(&h, 9), "554 5.7.1 Spam \"score\" 9.9");
	ck_assert_str_eq(harness_reply(&h, 10), "221 2.0.0 Bye");
	ck_assert_int_eq(harness_count(&h, "new"), 0);
	ck_assert_int_eq(harness_count(&h, "tmp"), 0);
	/* Logged like a delivery, with the reply; not a client error, not "refused". */
	ck_assert_uint_eq(harness_log_count("filtered peer=192.0.2.7 id="), 2);
	ck_assert_uint_eq(harness_log_count(
	    "reply=\"554 5.7.1 Spam \\x22score\\x22 9.9\" filter=\"exit 100\"\n"), 2);
	ck_assert_uint_eq(harness_log_count("refused "), 0);
	harness_finish(&h);
}
END_TEST

START_TEST(filter_exit_111_is_451_and_nothing_stored)
{
	struct harness h;

	run_filtered(&h, "cat >/dev/null\necho 'X-Spam: no'\nexit 111",
	    EHLO MAIL RCPT "DATA\r\nhi\r\n.\r\nQUIT\r\n");
	ck_assert_str_eq(harness_reply(&h, 5), "451 4.7.1 Service unavailable - try again later");
	ck_assert_int_eq(harness_count(&h, "new"), 0);
	ck_assert_int_eq(harness_count(&h, "tmp"), 0);
	ck_assert_uint_eq(harness_log_count(
	    "reply=\"451 4.7.1 Service unavailable - try again later\" filter=\"exit 111\""), 1);
	harness_finish(&h);
}
END_TEST

START_TEST(filter_bad_output_is_451_4_3_0)
{
	static const char *const bodies[] = {
		"echo 'not a header field'",
		"printf 'X-Injected: a\\r\\rX-Evil: b\\n'",		/* a bare CR */
		"printf 'X-Unended: a'",
		"printf 'X-A: a\\n\\nbody\\n'",				/* would end the header */
		"head -c 200000 /dev/zero | tr '\\0' x",		/* past 64 KiB */
	};

	for (size_t i = 0; i < sizeof(bodies) / sizeof(bodies[0]); i++) {
		struct harness h;

		run_filtered(&h, bodies[i], EHLO MAIL RCPT "DATA\r\nhi\r\n.\r\nQUIT\r\n");
		ck_assert_msg(strcmp(harness_reply(&h, 5),
		    "451 4.3.0 Error in content filter; try again later") == 0, "%s: %s", bodies[i],
		    harness_reply(&h, 5));
		ck_assert_int_eq(harness_count(&h, "new"), 0);
		ck_assert_int_eq(harness_count(&h, "tmp"), 0);
		ck_assert_uint_eq(harness_log_count("filtered "), 1);
		harness_finish(&h);
	}
}
END_TEST

START_TEST(filter_that_cannot_start_is_451_4_7_1)
{
	struct harness h;

	harness_init(&h);
	use_filter(&h, "exit 0");
	ck_assert_int_eq(chmod(filter_path, 0644), 0);
	routes_finish(&h.routes);
	run_string(&h, EHLO MAIL RCPT "DATA\r\nhi\r\n.\r\nQUIT\r\n");
	ck_assert_str_eq(harness_reply(&h, 5), "451 4.7.1 Service unavailable - try again later");
	ck_assert_int_eq(harness_count(&h, "new"), 0);
	ck_assert_int_eq(harness_count(&h, "tmp"), 0);
	ck_assert_uint_eq(harness_log_count("filter=\"cannot execute "), 1);
	harness_finish(&h);
}
END_TEST

/* BDAT LAST ends a message as the final dot does: filtered too. */
START_TEST(filter_judges_bdat_messages)
{
	struct harness h;
	char *m;

	run_filtered(&h, "if grep -q spam; then echo Refused; exit 100; fi\necho 'X-Checked: yes'",
	    EHLO MAIL RCPT "BDAT 5\r\nham\r\nBDAT 0 LAST\r\n"
	    MAIL RCPT "BDAT 6 LAST\r\nspam\r\n" "QUIT\r\n");
	ck_assert_str_eq(harness_reply(&h, 4), "250 2.0.0 5 octets received");
	ck_assert_msg(strncmp(harness_reply(&h, 5), "250 2.0.0 ", 10) == 0 &&
	    strstr(harness_reply(&h, 5), "octets") == NULL, "%s", harness_reply(&h, 5));
	ck_assert_str_eq(harness_reply(&h, 8), "554 5.7.1 Refused");
	ck_assert_int_eq(harness_count(&h, "new"), 1);
	m = harness_message(&h, NULL, NULL);
	ck_assert_ptr_nonnull(m);
	ck_assert_ptr_nonnull(strstr(m, "\nX-Checked: yes\nham\n"));
	free(m);
	harness_finish(&h);
}
END_TEST

/* One run per message, whatever the number of recipients and Maildirs. */
START_TEST(filter_runs_once_per_message)
{
	struct harness h;
	char a[256], b[256];
	char *ma, *mb;

	harness_init(&h);
	use_filter(&h, "echo run >>$D/runs\necho 'X-Checked: yes'");
	snprintf(a, sizeof(a), "%s/a", h.dir);
	snprintf(b, sizeof(b), "%s/b", h.dir);
	routes_add_mailbox(&h.routes, "a@example.org", a, 1);
	routes_add_mailbox(&h.routes, "b@example.org", b, 2);
	routes_add_mailbox(&h.routes, "c@example.org", b, 3);
	routes_finish(&h.routes);
	run_string(&h, EHLO MAIL "RCPT TO:<a@example.org>\r\nRCPT TO:<b@example.org>\r\n"
	    "RCPT TO:<c@example.org>\r\nDATA\r\nhello\r\n.\r\n"
	    MAIL "RCPT TO:<a@example.org>\r\nDATA\r\nagain\r\n.\r\n");
	ck_assert_str_eq(read_in(&h, "runs"), "run\nrun\n");
	mb = harness_message(&h, b, NULL);
	ck_assert_ptr_nonnull(mb);
	ck_assert_ptr_nonnull(strstr(mb, "\nX-Checked: yes\nhello\n"));
	ma = harness_message(&h, a, NULL);
	ck_assert_ptr_null(ma);	/* two messages there */
	ck_assert_int_eq(harness_count(&h, "new"), 0);
	free(mb);
	harness_finish(&h);
}
END_TEST

static Suite *
session_suite(void)
{
	Suite *s = suite_create("session");
	TCase *tc = tcase_create("session");

	tcase_set_timeout(tc, 30);
	tcase_add_loop_test(tc, exchange_table, 0, 2 * (int)(sizeof(exchanges) / sizeof(exchanges[0])));
	tcase_add_loop_test(tc, data_transparency, 0, 2 * (int)(sizeof(data_cases) / sizeof(data_cases[0])));
	tcase_add_loop_test(tc, table_rules_count_one_error_each, 0,
	    2 * (int)(sizeof(rule_cases) / sizeof(rule_cases[0])));
	tcase_add_test(tc, ehlo_lists_what_we_implement);
	tcase_add_test(tc, delivers_one_message);
	tcase_add_test(tc, received_has_no_for_with_two_recipients);
	tcase_add_test(tc, helo_gives_smtp_and_null_sender);
	tcase_add_test(tc, smtputf8_is_recorded);
	tcase_add_test(tc, oversized_data_is_read_to_the_end_then_refused);
	tcase_add_test(tc, long_data_lines_pass_whole);
	tcase_add_test(tc, too_many_recipients_refuses_only_the_excess);
	tcase_add_test(tc, excess_recipients_are_logged_once_per_transaction);
	tcase_add_loop_test(tc, recipient_overshoot_ends_the_session, 0, 2);
	tcase_add_test(tc, too_many_errors_end_the_session);
	tcase_add_test(tc, eof_mid_data_delivers_nothing);
	tcase_add_test(tc, several_messages_get_their_own_files);
	tcase_add_test(tc, routing_sends_each_maildir_one_copy);
	tcase_add_test(tc, unwritable_maildir_gets_451_and_the_session_goes_on);
	tcase_add_test(tc, mail_loop_is_refused);
	tcase_add_loop_test(tc, bdat_cut_anywhere_is_stored_as_sent, 0,
	    2 * (int)(sizeof(cut_text) - 2));
	tcase_add_loop_test(tc, bdat_mail_loop_is_refused, 0, 2);
	tcase_add_test(tc, filter_fields_follow_our_received_line);
	tcase_add_test(tc, filter_environment_describes_the_transaction);
	tcase_add_test(tc, filter_refusal_is_554_with_its_text);
	tcase_add_test(tc, filter_exit_111_is_451_and_nothing_stored);
	tcase_add_test(tc, filter_bad_output_is_451_4_3_0);
	tcase_add_test(tc, filter_that_cannot_start_is_451_4_7_1);
	tcase_add_test(tc, filter_judges_bdat_messages);
	tcase_add_test(tc, filter_runs_once_per_message);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	return harness_run_suite(session_suite());
}
