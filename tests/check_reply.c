/* check_reply.c: reply formatting, holding, flushing and write timeouts. */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "reply.h"
#include "harness.h"

static struct reply r;
static int pipefd[2];

static void
setup(void)
{
	signal(SIGPIPE, SIG_IGN);
	ck_assert_int_eq(pipe(pipefd), 0);
	fcntl(pipefd[0], F_SETFL, O_NONBLOCK);
	reply_init(&r, &(struct reply_options){ .fd = pipefd[1], .timeout_ms = 200 });
}

static void
teardown(void)
{
	close(pipefd[0]);
	close(pipefd[1]);
}

/* Everything readable from the pipe right now, NUL-terminated. */
static const char *
drain(void)
{
	static char buf[131072];
	ssize_t n = read(pipefd[0], buf, sizeof(buf) - 1);

	buf[n > 0 ? n : 0] = '\0';
	return buf;
}

START_TEST(formats_code_enhanced_code_and_text)
{
	reply_send(&r, 250, "2.1.0", "Ok %d", 7);
	reply_send(&r, 220, NULL, "mx ESMTP");
	ck_assert_int_eq(reply_flush(&r), 0);
	ck_assert_str_eq(drain(), "250 2.1.0 Ok 7\r\n220 mx ESMTP\r\n");
}
END_TEST

START_TEST(multi_line_replies_use_dashes)
{
	reply_send_more(&r, 250, "mx");
	reply_send_more(&r, 250, "PIPELINING");
	reply_send(&r, 250, NULL, "8BITMIME");
	reply_flush(&r);
	ck_assert_str_eq(drain(), "250-mx\r\n250-PIPELINING\r\n250 8BITMIME\r\n");
}
END_TEST

START_TEST(replies_are_held_until_flush)
{
	reply_send(&r, 250, "2.0.0", "Ok");
	ck_assert_str_eq(drain(), "");
	reply_flush(&r);
	ck_assert_str_eq(drain(), "250 2.0.0 Ok\r\n");
}
END_TEST

START_TEST(a_reply_line_never_exceeds_512_octets)
{
	char text[2000];
	const char *out;

	memset(text, 'x', sizeof(text) - 1);
	text[sizeof(text) - 1] = '\0';
	reply_send(&r, 500, "5.5.2", "%s", text);
	reply_flush(&r);
	out = drain();
	ck_assert_uint_eq(strlen(out), 511);
	ck_assert_str_eq(out + 509, "\r\n");
}
END_TEST

START_TEST(a_full_buffer_flushes_in_order)
{
	char expect[32];
	const char *out;
	int i;

	for (i = 0; i < 2000; i++)
		reply_send(&r, 250, "2.1.5", "Ok %04d", i);
	reply_flush(&r);
	out = drain();
	ck_assert_uint_eq(strlen(out), 2000 * 19);
	snprintf(expect, sizeof(expect), "250 2.1.5 Ok %04d\r\n", 1234);
	ck_assert_int_eq(memcmp(out + 1234 * 19, expect, 19), 0);
}
END_TEST

START_TEST(a_client_that_never_reads_times_out)
{
	int i;

	for (i = 0; i < 100000 && !r.failed; i++)
		reply_send(&r, 250, "2.1.5", "Ok");
	ck_assert_int_eq(reply_flush(&r), -1);
	ck_assert(r.failed);
}
END_TEST

START_TEST(a_vanished_client_fails_the_flush)
{
	close(pipefd[0]);
	reply_send(&r, 250, "2.0.0", "Ok");
	ck_assert_int_eq(reply_flush(&r), -1);
	pipefd[0] = open("/dev/null", O_RDONLY);
}
END_TEST

/* Fill the pipe until a write would block. */
static void
fill_pipe(void)
{
	static char junk[4096];

	fcntl(pipefd[1], F_SETFL, O_NONBLOCK);
	while (write(pipefd[1], junk, sizeof(junk)) > 0)
		;
	fcntl(pipefd[1], F_SETFL, 0);
}

static volatile sig_atomic_t stop_flag;

/* A reply on the pipe with a stop already asked for. */
static void
init_stopped(int timeout_ms)
{
	static struct stop_wait w = { .flag = &stop_flag };

	stop_flag = 1;
	sigprocmask(SIG_SETMASK, NULL, &w.mask);
	reply_init(&r, &(struct reply_options){ .fd = pipefd[1], .timeout_ms = timeout_ms,
	    .stop = &w });
}

/* A stop cuts short a wait, never the attempt to write: the 421 must go out. */
START_TEST(a_stop_still_writes_the_last_reply)
{
	init_stopped(200);
	reply_send(&r, 421, "4.3.2", "mx Service shutting down");
	ck_assert_int_eq(reply_flush(&r), 0);
	ck_assert_str_eq(drain(), "421 4.3.2 mx Service shutting down\r\n");
}
END_TEST

/* ...and a client that does not read holds a stop off for a moment only. */
START_TEST(a_stop_shortens_the_wait_for_a_full_pipe)
{
	init_stopped(3600 * 1000);
	fill_pipe();
	reply_send(&r, 421, "4.3.2", "mx Service shutting down");
	ck_assert_int_eq(reply_flush(&r), -1);	/* within REPLY_STOP_GRACE_MS, not an hour */
}
END_TEST

/* The session's end bounds a flush too, whatever is left of the flush timeout. */
START_TEST(the_session_deadline_ends_a_flush)
{
	reply_init(&r, &(struct reply_options){ .fd = pipefd[1], .timeout_ms = 3600 * 1000,
	    .session_timeout_ms = 100 });
	fill_pipe();
	reply_send(&r, 250, "2.0.0", "Ok");
	ck_assert_int_eq(reply_flush(&r), -1);
	ck_assert(r.failed);
}
END_TEST

START_TEST(shutdown_is_for_sockets_only)
{
	ck_assert_int_eq(reply_shutdown(&r), -1);
}
END_TEST

static Suite *
reply_suite(void)
{
	Suite *s = suite_create("reply");
	TCase *tc = tcase_create("reply");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, formats_code_enhanced_code_and_text);
	tcase_add_test(tc, multi_line_replies_use_dashes);
	tcase_add_test(tc, replies_are_held_until_flush);
	tcase_add_test(tc, a_reply_line_never_exceeds_512_octets);
	tcase_add_test(tc, a_full_buffer_flushes_in_order);
	tcase_add_test(tc, a_client_that_never_reads_times_out);
	tcase_add_test(tc, a_vanished_client_fails_the_flush);
	tcase_add_test(tc, a_stop_still_writes_the_last_reply);
	tcase_add_test(tc, a_stop_shortens_the_wait_for_a_full_pipe);
	tcase_add_test(tc, the_session_deadline_ends_a_flush);
	tcase_add_test(tc, shutdown_is_for_sockets_only);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	return harness_run_suite(reply_suite());
}
