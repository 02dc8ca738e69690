/* check_reader.c: line reading at buffer edges, limits and deadlines. */
#include <check.h>
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "reader.h"
#include "harness.h"

static struct reader r;
static int pipefd[2];
static int waits;

static int
count_wait(void *arg)
{
	(void)arg;
	waits++;
	return 0;
}

/* A reader on a pipe holding input; the write end stays open if keep_open. */
static void
open_reader(const char *input, size_t len, size_t read_limit, int line_timeout_ms, int keep_open)
{
	ck_assert_int_eq(pipe(pipefd), 0);
	ck_assert_int_eq(write(pipefd[1], input, len), (ssize_t)len);
	if (!keep_open)
		close(pipefd[1]);
	reader_init(&r, pipefd[0], line_timeout_ms, 60000);
	r.read_limit = read_limit;
	r.before_wait = count_wait;
	waits = 0;
}

static void
expect_line(size_t max, const char *text, int crlf)
{
	struct line l;

	ck_assert_int_eq(reader_next(&r, &l, max), READ_LINE);
	ck_assert_uint_eq(l.len, strlen(text));
	ck_assert_int_eq(memcmp(l.bytes, text, l.len), 0);
	ck_assert_int_eq(l.crlf, crlf);
	ck_assert(l.complete);
}

START_TEST(lines_report_their_endings)
{
	struct line l;

	open_reader("EHLO x\r\nNOOP\nQUIT\r\n", 20, (size_t)_i, 1000, 0);
	expect_line(512, "EHLO x", 1);
	expect_line(512, "NOOP", 0);
	expect_line(512, "QUIT", 1);
	ck_assert_int_eq(reader_next(&r, &l, 512), READ_EOF);
	close(pipefd[0]);
}
END_TEST

START_TEST(a_long_line_is_dropped_and_the_next_is_intact)
{
	char input[3000];
	struct line l;

	memset(input, 'x', 2000);
	memcpy(input + 2000, "\r\nNOOP\r\n", 8);
	open_reader(input, 2008, (size_t)_i, 1000, 0);
	ck_assert_int_eq(reader_next(&r, &l, 512), READ_TOO_LONG);
	expect_line(512, "NOOP", 1);
	close(pipefd[0]);
}
END_TEST

START_TEST(a_line_of_exactly_the_limit_fits)
{
	char input[600];

	memset(input, 'y', 510);
	memcpy(input + 510, "\r\n", 2);
	input[512] = '\0';
	open_reader(input, 512, (size_t)_i, 1000, 0);
	input[510] = '\0';
	expect_line(512, input, 1);
	close(pipefd[0]);
}
END_TEST

START_TEST(pieces_never_split_crlf)
{
	struct line l;

	/* 7 bytes of text then CRLF; pieces of 8 would cut between CR and LF. */
	open_reader("abcdefg\r\nz\r\n", 12, (size_t)_i, 1000, 0);
	ck_assert_int_eq(reader_piece(&r, &l, 8), READ_LINE);
	ck_assert(!l.complete);
	ck_assert_uint_eq(l.len, 7);
	ck_assert_int_eq(reader_piece(&r, &l, 8), READ_LINE);
	ck_assert(l.complete && l.crlf && l.len == 0);
	ck_assert_int_eq(reader_piece(&r, &l, 8), READ_LINE);
	ck_assert(l.complete && l.len == 1 && l.bytes[0] == 'z');
	close(pipefd[0]);
}
END_TEST

START_TEST(replies_are_flushed_only_before_blocking)
{
	struct line l;

	open_reader("NOOP\r\nNOOP\r\nNOOP\r\n", 18, 0, 200, 1);
	expect_line(512, "NOOP", 1);
	expect_line(512, "NOOP", 1);
	expect_line(512, "NOOP", 1);
	ck_assert_int_eq(waits, 0);
	ck_assert_int_eq(reader_next(&r, &l, 512), READ_TIMEOUT);
	ck_assert_int_eq(waits, 1);
	close(pipefd[0]);
	close(pipefd[1]);
}
END_TEST

START_TEST(the_deadline_is_per_line_not_per_read)
{
	struct timespec t0, t1;
	struct line l;
	pid_t pid;

	open_reader("", 0, 0, 500, 1);
	pid = fork();
	if (pid == 0) {
		for (int i = 0; i < 20; i++) {	/* one byte every 100 ms, never a LF */
			if (write(pipefd[1], "x", 1) != 1)
				_exit(0);
			usleep(100000);
		}
		_exit(0);
	}
	clock_gettime(CLOCK_MONOTONIC, &t0);
	ck_assert_int_eq(reader_next(&r, &l, 512), READ_TIMEOUT);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	ck_assert_int_lt((t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000, 1500);
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	close(pipefd[0]);
	close(pipefd[1]);
}
END_TEST

START_TEST(a_stop_request_ends_the_wait)
{
	volatile sig_atomic_t stop = 1;
	struct line l;

	open_reader("", 0, 0, 5000, 1);
	r.stop = &stop;
	ck_assert_int_eq(reader_next(&r, &l, 512), READ_STOPPED);
	close(pipefd[0]);
	close(pipefd[1]);
}
END_TEST

static Suite *
reader_suite(void)
{
	Suite *s = suite_create("reader");
	TCase *tc = tcase_create("reader");

	/* _i is the bytes per read(2): 0 (whole) and 1 (one byte at a time). */
	tcase_add_loop_test(tc, lines_report_their_endings, 0, 2);
	tcase_add_loop_test(tc, a_long_line_is_dropped_and_the_next_is_intact, 0, 2);
	tcase_add_loop_test(tc, a_line_of_exactly_the_limit_fits, 0, 2);
	tcase_add_loop_test(tc, pieces_never_split_crlf, 0, 2);
	tcase_add_test(tc, replies_are_flushed_only_before_blocking);
	tcase_add_test(tc, the_deadline_is_per_line_not_per_read);
	tcase_add_test(tc, a_stop_request_ends_the_wait);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	return harness_run_suite(reader_suite());
}
