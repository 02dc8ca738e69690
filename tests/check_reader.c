/* check_reader.c: line reading at buffer edges, limits and deadlines. */
#include <check.h>
#include <signal.h>
#include <string.h>
#include <sys/socket.h>
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

/* Tests run on a pipe and on a socket, which reader.c reads differently. */
static int on_socket;

/* A reader on a pipe holding input; the write end stays open if keep_open. */
static void
open_reader(const char *input, size_t len, size_t read_limit, int line_timeout_ms, int keep_open)
{
	if (on_socket)
		ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, pipefd), 0);
	else
		ck_assert_int_eq(pipe(pipefd), 0);
	ck_assert_int_eq(write(pipefd[1], input, len), (ssize_t)len);
	if (!keep_open)
		close(pipefd[1]);
	reader_init(&r, &(struct reader_options){ .fd = pipefd[0],
	    .line_timeout_ms = line_timeout_ms, .session_timeout_ms = 60000,
	    .read_limit = read_limit, .before_wait = count_wait });
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

	on_socket = _i >> 1;
	open_reader("EHLO x\r\nNOOP\nQUIT\r\n", 20, (size_t)(_i & 1), 1000, 0);
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

	on_socket = _i >> 1;
	memset(input, 'x', 2000);
	memcpy(input + 2000, "\r\nNOOP\r\n", 8);
	open_reader(input, 2008, (size_t)(_i & 1), 1000, 0);
	ck_assert_int_eq(reader_next(&r, &l, 512), READ_TOO_LONG);
	expect_line(512, "NOOP", 1);
	close(pipefd[0]);
}
END_TEST

START_TEST(a_line_of_exactly_the_limit_fits)
{
	char input[600];

	on_socket = _i >> 1;
	memset(input, 'y', 510);
	memcpy(input + 510, "\r\n", 2);
	input[512] = '\0';
	open_reader(input, 512, (size_t)(_i & 1), 1000, 0);
	input[510] = '\0';
	expect_line(512, input, 1);
	close(pipefd[0]);
}
END_TEST

START_TEST(pieces_never_split_crlf)
{
	struct line l;

	on_socket = _i >> 1;
	/* 7 bytes of text then CRLF; pieces of 8 would cut between CR and LF. */
	open_reader("abcdefg\r\nz\r\n", 12, (size_t)(_i & 1), 1000, 0);
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

	on_socket = _i;
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

	on_socket = _i;
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
	static volatile sig_atomic_t stop = 1;
	struct stop_wait w = { .flag = &stop };
	struct line l;

	on_socket = _i;
	open_reader("", 0, 0, 5000, 1);
	sigprocmask(SIG_SETMASK, NULL, &w.mask);
	r.opt.stop = &w;
	ck_assert_int_eq(reader_next(&r, &l, 512), READ_STOPPED);
	close(pipefd[0]);
	close(pipefd[1]);
}
END_TEST

static volatile sig_atomic_t stopped;

static void
on_usr1(int sig)
{
	(void)sig;
	stopped = 1;
}

/*
 * Stop signals are blocked except inside ppoll, and a socket with input
 * waiting is read without ppoll: a client that never pauses must still not
 * hold off a stop (reader.h: READER_STOP_CHECK, 64 KiB).
 */
START_TEST(a_stop_signal_is_taken_under_continuous_input)
{
	static char chunk[4096];
	int big = 1 << 20;
	size_t queued = 0, bytes = 0;
	struct sigaction sa;
	struct stop_wait w = { .flag = &stopped };
	sigset_t block;
	enum read_result res;
	struct line l;
	ssize_t n;

	for (size_t i = 0; i < sizeof(chunk); i++)
		chunk[i] = i % 100 == 98 ? '\r' : i % 100 == 99 ? '\n' : 'x';
	on_socket = 1;
	open_reader("", 0, 0, 60000, 1);
	/* Queue all the input before the first read, so no read would block. */
	setsockopt(pipefd[1], SOL_SOCKET, SO_SNDBUF, &big, sizeof(big));
	while ((n = send(pipefd[1], chunk, sizeof(chunk), MSG_DONTWAIT)) > 0)
		queued += (size_t)n;
	ck_assert_uint_gt(queued, 96 * 1024);
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_usr1;
	ck_assert_int_eq(sigaction(SIGUSR1, &sa, NULL), 0);
	sigemptyset(&block);
	sigaddset(&block, SIGUSR1);
	ck_assert_int_eq(sigprocmask(SIG_BLOCK, &block, &w.mask), 0);
	stopped = 0;
	r.opt.stop = &w;
	ck_assert_int_eq(raise(SIGUSR1), 0);	/* pending until the reader's ppoll */
	while ((res = reader_piece(&r, &l, 8192)) == READ_LINE)
		bytes += l.len + (l.complete ? 1 + l.crlf : 0);
	ck_assert_int_eq(res, READ_STOPPED);
	ck_assert_uint_le(bytes, 64 * 1024 + READER_BUFFER);
	close(pipefd[0]);
	close(pipefd[1]);
}
END_TEST

START_TEST(pending_input_is_seen_held_or_queued)
{
	struct line l;

	on_socket = _i;
	open_reader("NOOP\r\nNO", 8, 0, 100, 1);
	ck_assert(reader_pending(&r));		/* queued, not read yet */
	expect_line(512, "NOOP", 1);
	ck_assert(reader_pending(&r));		/* "NO" held */
	ck_assert_int_eq(reader_next(&r, &l, 512), READ_TIMEOUT);
	ck_assert(reader_pending(&r));
	close(pipefd[1]);
	close(pipefd[0]);
	open_reader("NOOP\r\n", 6, 0, 1000, 1);
	expect_line(512, "NOOP", 1);
	ck_assert(!reader_pending(&r));		/* nothing more: no lingering */
	close(pipefd[0]);
	close(pipefd[1]);
}
END_TEST

/* A lingering close reads to the client's EOF... */
START_TEST(drain_reads_to_eof)
{
	on_socket = _i;
	open_reader("QUIT\r\nNOOP\r\n", 12, 0, 1000, 0);
	reader_drain(&r, 3600 * 1000, 1 << 20);
	ck_assert(r.eof);
	ck_assert(!reader_pending(&r));
	close(pipefd[0]);
}
END_TEST

/* ...but no further than its byte limit from a client that never stops, */
START_TEST(drain_stops_at_its_byte_limit)
{
	static char chunk[4096];
	pid_t pid;

	on_socket = _i;
	open_reader("", 0, 0, 1000, 1);
	pid = fork();
	if (pid == 0) {
		for (;;)
			if (write(pipefd[1], chunk, sizeof(chunk)) < 0)
				_exit(0);
	}
	reader_drain(&r, 3600 * 1000, 64 * 1024);	/* an hour: only the bytes end it */
	ck_assert(!r.eof);
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	close(pipefd[0]);
	close(pipefd[1]);
}
END_TEST

/* ...nor longer than its time from one that sends nothing and never closes. */
START_TEST(drain_stops_at_its_time_limit)
{
	on_socket = _i;
	open_reader("", 0, 0, 1000, 1);
	reader_drain(&r, 100, 1 << 20);
	ck_assert(!r.eof);
	close(pipefd[0]);
	close(pipefd[1]);
}
END_TEST

static Suite *
reader_suite(void)
{
	Suite *s = suite_create("reader");
	TCase *tc = tcase_create("reader");

	/*
	 * _i & 1 is the bytes per read(2): 0 (whole) and 1 (one byte at a
	 * time); _i & 2 (or _i alone, in the two-way loops) runs on a socket.
	 */
	tcase_add_loop_test(tc, lines_report_their_endings, 0, 4);
	tcase_add_loop_test(tc, a_long_line_is_dropped_and_the_next_is_intact, 0, 4);
	tcase_add_loop_test(tc, a_line_of_exactly_the_limit_fits, 0, 4);
	tcase_add_loop_test(tc, pieces_never_split_crlf, 0, 4);
	tcase_add_loop_test(tc, replies_are_flushed_only_before_blocking, 0, 2);
	tcase_add_loop_test(tc, the_deadline_is_per_line_not_per_read, 0, 2);
	tcase_add_loop_test(tc, a_stop_request_ends_the_wait, 0, 2);
	tcase_add_test(tc, a_stop_signal_is_taken_under_continuous_input);
	tcase_add_loop_test(tc, pending_input_is_seen_held_or_queued, 0, 2);
	tcase_add_loop_test(tc, drain_reads_to_eof, 0, 2);
	tcase_add_loop_test(tc, drain_stops_at_its_byte_limit, 0, 2);
	tcase_add_loop_test(tc, drain_stops_at_its_time_limit, 0, 2);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	return harness_run_suite(reader_suite());
}
