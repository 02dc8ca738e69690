/* check_filter.c: content filters that behave, and ones that do not. */
#define _GNU_SOURCE	/* pidfd_open through syscall(2) */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "filter.h"
#include "harness.h"

static const char message[] =
    "Return-Path: <a@example.org>\n"
    "Received: from c.example ([192.0.2.1])\n\tby mx.example with ESMTP id 1M2P3Q4\n"
    "Subject: hello\n\nbody\n";

static char dir[64];
static int msg_fd = -1;
static struct filter_result res;
static const char *rcpts[] = { "<b@example.org>", "<c@example.net>" };
static const struct filter_env env = {
	.id = "1M2P3Q4", .peer = "192.0.2.1", .helo = "c.example",
	.from = "<a@example.org>", .rcpts = rcpts, .nrcpts = 2, .size = sizeof(message) - 1,
};

static void
path_in(char *buf, size_t size, const char *name)
{
	ck_assert_int_lt(snprintf(buf, size, "%s/%s", dir, name), (int)size);
}

static void
write_file(const char *name, const char *p, size_t n, mode_t mode)
{
	char path[128];
	int fd;

	path_in(path, sizeof(path), name);
	fd = open(path, O_CREAT | O_TRUNC | O_WRONLY, mode);
	ck_assert_int_ne(fd, -1);
	ck_assert_int_eq(write(fd, p, n), (ssize_t)n);
	ck_assert_int_eq(close(fd), 0);
}

/* Contents of dir/name, NUL-terminated; length in *len. */
static char *
read_back(const char *name, size_t *len)
{
	static char buf[8192];
	char path[128];
	ssize_t n;
	int fd;

	path_in(path, sizeof(path), name);
	if ((fd = open(path, O_RDONLY)) == -1)
		return NULL;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	ck_assert_int_ge(n, 0);
	buf[n] = '\0';
	if (len != NULL)
		*len = (size_t)n;
	return buf;
}

static void
setup(void)
{
	char path[128];

	snprintf(dir, sizeof(dir), "/tmp/smtpd-filter.XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(dir));
	write_file("msg", message, sizeof(message) - 1, 0600);
	path_in(path, sizeof(path), "msg");
	msg_fd = open(path, O_RDONLY | O_CLOEXEC);
	ck_assert_int_ne(msg_fd, -1);
	memset(&res, 0, sizeof(res));
}

static void
teardown(void)
{
	char cmd[128];

	close(msg_fd);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	ck_assert_int_eq(system(cmd), 0);
}

/* A sh filter with this body ($D is the test directory), run with a timeout. */
static enum filter_verdict
run_sh(const char *body, unsigned timeout)
{
	char script[4096], path[128];
	char *argv[] = { path, NULL };
	struct filter_spec spec = { .argv = argv, .timeout = timeout };
	int n = snprintf(script, sizeof(script), "#!/bin/sh\nD=%s\n%s\n", dir, body);

	ck_assert(n > 0 && (size_t)n < sizeof(script));
	write_file("filter", script, (size_t)n, 0755);
	path_in(path, sizeof(path), "filter");
	return filter_run(&spec, msg_fd, &env, &res);
}

static enum filter_verdict
run(const char *body)
{
	return run_sh(body, 30);
}

/* The process is gone (or a zombie): waits for it to die, never for long after SIGKILL. */
static void
assert_dead(pid_t pid)
{
	int fd = (int)syscall(SYS_pidfd_open, pid, 0);
	struct pollfd p;

	if (fd == -1) {
		ck_assert_int_eq(errno, ESRCH);
		return;
	}
	p.fd = fd;
	p.events = POLLIN;
	ck_assert_msg(poll(&p, 1, 10000) == 1, "process %ld still alive", (long)pid);
	close(fd);
}

static pid_t
pid_from(const char *name)
{
	char *s = read_back(name, NULL);

	ck_assert_ptr_nonnull(s);
	return (pid_t)atol(s);
}

START_TEST(accept_with_header_fields_normalised_to_lf)
{
	ck_assert_int_eq(run("cat >/dev/null\n"
	    "printf 'X-Spam-Status: No, score=1.0\\r\\n\\trequired=5.0\\r\\nX-Spam-Score: 1.0\\n'"),
	    FILTER_ACCEPT);
	ck_assert_uint_eq(res.headers_len, 61);
	ck_assert(memcmp(res.headers, "X-Spam-Status: No, score=1.0\n\trequired=5.0\n"
	    "X-Spam-Score: 1.0\n", 61) == 0);
}
END_TEST

START_TEST(accept_without_output_or_reading_stdin)
{
	ck_assert_int_eq(run("exit 0"), FILTER_ACCEPT);
	ck_assert_uint_eq(res.headers_len, 0);
}
END_TEST

START_TEST(accept_after_closing_stdin_early)
{
	ck_assert_int_eq(run("head -c 5 >/dev/null\nexec 0<&-\necho 'X-Seen: 5'"), FILTER_ACCEPT);
	ck_assert_uint_eq(res.headers_len, 10);
}
END_TEST

/* stdin is the message, byte for byte, from its start, and cannot be written. */
START_TEST(stdin_is_the_staged_message_read_only)
{
	size_t n;
	char *seen;

	ck_assert_int_eq(run("cat > \"$D/seen\"\nif printf x >&0 2>/dev/null; then exit 3; fi"),
	    FILTER_ACCEPT);
	seen = read_back("seen", &n);
	ck_assert_ptr_nonnull(seen);
	ck_assert_uint_eq(n, sizeof(message) - 1);
	ck_assert(memcmp(seen, message, n) == 0);
}
END_TEST

START_TEST(reject_uses_the_first_line_as_text)
{
	ck_assert_int_eq(run("echo 'Spam, score 12.3 over 5.0'\necho second line\nexit 100"),
	    FILTER_REJECT);
	ck_assert_str_eq(res.text, "Spam, score 12.3 over 5.0");
}
END_TEST

/* CR, LF tricks, 8-bit, control bytes, empty or too long: our own text. */
START_TEST(reject_with_unsafe_text_gets_the_fixed_text)
{
	static const char *const bodies[] = {
		"printf 'bad\\r\\n250 fake\\n'",
		"printf 'bad\\rinjected\\n'",
		"printf 'caf\\303\\251\\n'",
		"printf 'tab\\there\\n'",
		"printf 'nul\\000here\\n'",
		"printf '\\n'",
		"true",
		"printf '%0201d\\n' 0",
	};
	char body[128];

	for (size_t i = 0; i < sizeof(bodies) / sizeof(bodies[0]); i++) {
		snprintf(body, sizeof(body), "%s\nexit 100", bodies[i]);
		ck_assert_int_eq(run(body), FILTER_REJECT);
		ck_assert_str_eq(res.text, "Message rejected by content filter");
	}
	ck_assert_int_eq(run("printf '%0200d' 0\nexit 100"), FILTER_REJECT);
	ck_assert_uint_eq(strlen(res.text), 200);	/* 200 octets is still allowed */
}
END_TEST

START_TEST(exit_111_and_others_are_tempfail)
{
	ck_assert_int_eq(run("echo 'X-A: b'\nexit 111"), FILTER_TEMPFAIL);
	ck_assert_str_eq(res.reason, "exit 111");
	ck_assert_int_eq(run("exit 3"), FILTER_TEMPFAIL);
	ck_assert_str_eq(res.reason, "exit 3");
	ck_assert_int_eq(run("exit 1"), FILTER_TEMPFAIL);
}
END_TEST

START_TEST(killed_by_a_signal_is_tempfail)
{
	ck_assert_int_eq(run("kill -SEGV $$"), FILTER_TEMPFAIL);
	ck_assert_str_eq(res.reason, "killed by signal 11");
}
END_TEST

/*
 * A filter that hangs is killed at the deadline with the child it started.
 * Should the machine be so slow that the deadline came before the child
 * was even started, the test tries again with a longer one.
 */
START_TEST(hang_is_killed_at_the_timeout_with_its_children)
{
	char path[128];
	unsigned t;

	path_in(path, sizeof(path), "child");
	for (t = 1; t <= 16; t *= 2) {
		unlink(path);
		ck_assert_int_eq(run_sh("sleep 1000 &\necho $! > \"$D/child.new\"\n"
		    "mv \"$D/child.new\" \"$D/child\"\nwait", t), FILTER_TEMPFAIL);
		ck_assert_str_eq(res.reason, "timed out, process group killed");
		if (access(path, F_OK) == 0)
			break;
	}
	ck_assert_uint_le(t, 16);
	assert_dead(pid_from("child"));
}
END_TEST

/* The filter exits 0 at once; what it left in its process group is killed. */
START_TEST(child_that_lives_on_is_killed)
{
	ck_assert_int_eq(run("sleep 1000 &\necho $! > \"$D/child\"\necho 'X-A: b'"), FILTER_ACCEPT);
	ck_assert_uint_eq(res.headers_len, 7);
	assert_dead(pid_from("child"));
}
END_TEST

START_TEST(megabytes_on_stdout_are_bad_output)
{
	ck_assert_int_eq(run("yes 'X-A: b'\nexit 0"), FILTER_BAD_OUTPUT);
	ck_assert_str_eq(res.reason, "more than 65536 bytes on stdout");
	ck_assert_int_eq(run("yes 'Spam'\nexit 100"), FILTER_BAD_OUTPUT);
}
END_TEST

/* 128 lines of 512 bytes is exactly FILTER_HEADER_MAX; one byte more is not. */
START_TEST(output_is_bounded_at_64_kib)
{
	static char out[FILTER_HEADER_MAX + 2];

	for (size_t i = 0; i < 128; i++) {
		memset(out + i * 512, 'a', 511);
		memcpy(out + i * 512, "X-Pad: ", 7);
		out[i * 512 + 511] = '\n';
	}
	write_file("out", out, FILTER_HEADER_MAX, 0600);
	ck_assert_int_eq(run("cat \"$D/out\""), FILTER_ACCEPT);
	ck_assert_uint_eq(res.headers_len, FILTER_HEADER_MAX);
	memcpy(out + FILTER_HEADER_MAX, "X", 1);
	write_file("out", out, FILTER_HEADER_MAX + 1, 0600);
	ck_assert_int_eq(run("cat \"$D/out\""), FILTER_BAD_OUTPUT);
}
END_TEST

START_TEST(header_injection_is_bad_output)
{
	ck_assert_int_eq(run("printf 'X-A: b\\rX-Injected: c\\n'"), FILTER_BAD_OUTPUT);
	ck_assert_str_eq(res.reason, "exit 0, bad header output: line 1: "
	    "byte outside printable ASCII, SP and HTAB (CR, NUL, 8-bit)");
	ck_assert_int_eq(run("printf 'X-A: b\\n\\nFake body\\n'"), FILTER_BAD_OUTPUT);
	ck_assert_int_eq(run("printf 'X A: b\\n'"), FILTER_BAD_OUTPUT);
	ck_assert_int_eq(run("printf 'not a header\\n'"), FILTER_BAD_OUTPUT);
}
END_TEST

/* The syntax check itself, one case per line. */
START_TEST(header_syntax)
{
	static const struct { const char *in; long len; } cases[] = {
		{ "A: b\n", 5 },
		{ "A:\n", 3 },
		{ "A:b\r\n\t c\r\n", 8 },
		{ "X-\x21~:1\n", 7 },
		{ "", 0 },
		{ "A: b", -1 },		/* no line ending */
		{ "A: b\r", -1 },	/* CR alone */
		{ "A: b\n\n", -1 },	/* empty line */
		{ "A: b\r\n\r\n", -1 },
		{ " A: b\n", -1 },	/* continuation first */
		{ "A: b\n \t\n", -1 },	/* white space only */
		{ ": b\n", -1 },	/* empty name */
		{ "A b: c\n", -1 },	/* space in name */
		{ "A : b\n", -1 },	/* obsolete space before colon */
		{ "A\n", -1 },
		{ "A: \x80\n", -1 },
		{ "A: \x7f\n", -1 },
		{ "A: \x01\n", -1 },
		{ "\xc3\xa9: b\n", -1 },
	};
	char buf[64], why[96];

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		size_t n = strlen(cases[i].in);

		memcpy(buf, cases[i].in, n);
		ck_assert_msg(filter_check_headers(buf, n, why, sizeof(why)) == cases[i].len,
		    "case %zu", i);
	}
	memcpy(buf, "A: \0\n", 5);
	ck_assert_int_eq(filter_check_headers(buf, 5, why, sizeof(why)), -1);
}
END_TEST

/* RFC 5322 2.1.1: 998 octets a line, the ending not counted. */
START_TEST(header_lines_up_to_998_octets)
{
	static char buf[1100];
	char why[96];

	memset(buf, 'a', sizeof(buf));
	memcpy(buf, "X: ", 3);
	buf[998] = '\n';
	ck_assert_int_eq(filter_check_headers(buf, 999, why, sizeof(why)), 999);
	buf[998] = 'a';
	buf[999] = '\n';
	ck_assert_int_eq(filter_check_headers(buf, 1000, why, sizeof(why)), -1);
	ck_assert_str_eq(why, "line 1: line longer than 998 octets");
}
END_TEST

START_TEST(not_executable_is_tempfail)
{
	char path[128];
	char *argv[] = { path, NULL };
	struct filter_spec spec = { .argv = argv, .timeout = 30 };

	write_file("plain", "#!/bin/sh\nexit 0\n", 17, 0644);
	path_in(path, sizeof(path), "plain");
	ck_assert_int_eq(filter_run(&spec, msg_fd, &env, &res), FILTER_TEMPFAIL);
	ck_assert_ptr_nonnull(strstr(res.reason, "cannot execute"));
	ck_assert_ptr_nonnull(strstr(res.reason, "Permission denied"));
	path_in(path, sizeof(path), "missing");
	ck_assert_int_eq(filter_run(&spec, msg_fd, &env, &res), FILTER_TEMPFAIL);
	ck_assert_ptr_nonnull(strstr(res.reason, "No such file"));
}
END_TEST

/* Arguments reach the program as given, with no shell between. */
START_TEST(arguments_pass_without_a_shell)
{
	char script[128], path[128];
	char *argv[] = { path, "a b", "$HOME;x", "", NULL };
	struct filter_spec spec = { .argv = argv, .timeout = 30 };
	int n = snprintf(script, sizeof(script),
	    "#!/bin/sh\nprintf '%%s|' \"$#\" \"$@\" > %s/args\n", dir);

	write_file("filter", script, (size_t)n, 0755);
	path_in(path, sizeof(path), "filter");
	ck_assert_int_eq(filter_run(&spec, msg_fd, &env, &res), FILTER_ACCEPT);
	ck_assert_str_eq(read_back("args", NULL), "3|a b|$HOME;x||");
}
END_TEST

/* Exactly the SMTPD_* variables and PATH: nothing of ours leaks. */
START_TEST(environment_has_only_smtpd_variables_and_path)
{
	char size[32];
	const char *const want[] = {
		"SMTPD_ID=1M2P3Q4", "SMTPD_PEER=192.0.2.1", "SMTPD_HELO=c.example",
		"SMTPD_FROM=<a@example.org>", "SMTPD_RCPTS=<b@example.org>\n<c@example.net>",
		size, "PATH=/usr/bin:/bin",
	};
	size_t n, off = 0, count = 0;
	char *all;

	snprintf(size, sizeof(size), "SMTPD_SIZE=%zu", sizeof(message) - 1);
	setenv("SMTPD_SECRET", "leak", 1);
	ck_assert_int_eq(run("cat /proc/$$/environ > \"$D/env\""), FILTER_ACCEPT);
	all = read_back("env", &n);
	ck_assert_ptr_nonnull(all);
	while (off < n) {
		const char *var = all + off;
		size_t i;

		for (i = 0; i < sizeof(want) / sizeof(want[0]); i++)
			if (strcmp(var, want[i]) == 0)
				break;
		ck_assert_msg(i < sizeof(want) / sizeof(want[0]), "unexpected %s", var);
		count++;
		off += strlen(var) + 1;
	}
	ck_assert_uint_eq(count, sizeof(want) / sizeof(want[0]));
}
END_TEST

START_TEST(tls_variable_when_given)
{
	struct filter_env e = env;
	char path[128];
	char *argv[] = { path, NULL };
	struct filter_spec spec = { .argv = argv, .timeout = 30 };
	int n;
	char script[128];

	e.tls = "TLSv1.3 TLS_AES_256_GCM_SHA384";
	n = snprintf(script, sizeof(script), "#!/bin/sh\nprintf %%s \"$SMTPD_TLS\" > %s/tls\n", dir);
	write_file("filter", script, (size_t)n, 0755);
	path_in(path, sizeof(path), "filter");
	ck_assert_int_eq(filter_run(&spec, msg_fd, &e, &res), FILTER_ACCEPT);
	ck_assert_str_eq(read_back("tls", NULL), "TLSv1.3 TLS_AES_256_GCM_SHA384");
}
END_TEST

/*
 * Only 0, 1 and 2 reach the filter, whatever the caller has open. ls
 * opens the directory it lists itself: 3 is its own.
 */
START_TEST(only_stdin_stdout_stderr_are_open)
{
	int extra = open("/dev/null", O_RDONLY);	/* not close-on-exec */

	ck_assert_int_ne(extra, -1);
	ck_assert_int_eq(run("exec ls /proc/self/fd > \"$D/fds\""), FILTER_ACCEPT);
	ck_assert_str_eq(read_back("fds", NULL), "0\n1\n2\n3\n");
	close(extra);
}
END_TEST

/* Its own process group, so killing it never reaches us. */
START_TEST(runs_in_its_own_process_group)
{
	char ours[32];

	snprintf(ours, sizeof(ours), "%ld", (long)getpgrp());
	ck_assert_int_eq(run("cut -d' ' -f5 /proc/$$/stat | tr -d '\\n' > \"$D/pgid\"\n"
	    "echo $$ > \"$D/pid\""), FILTER_ACCEPT);
	ck_assert_str_ne(read_back("pgid", NULL), ours);
	ck_assert_int_eq(atol(read_back("pgid", NULL)), pid_from("pid"));
}
END_TEST

/* Megabytes on stderr never block the filter; the log gets a few lines. */
START_TEST(stderr_is_read_to_its_end)
{
	ck_assert_int_eq(run("head -c 3000000 /dev/zero | tr '\\0' 'e' | fold -w 100 >&2\n"
	    "echo 'X-Done: yes'"), FILTER_ACCEPT);
	ck_assert_uint_eq(res.headers_len, 12);
}
END_TEST

static volatile sig_atomic_t stop_flag;

static void
on_usr1(int sig)
{
	(void)sig;
	stop_flag = 1;
}

/*
 * A stop signal, blocked but for the wait (as the session blocks SIGTERM),
 * ends a hanging filter at once. The filter sends it to us itself, so the
 * signal comes only once the filter runs.
 */
START_TEST(a_stop_signal_ends_the_wait)
{
	char path[128];
	char *argv[] = { path, NULL };
	sigset_t usr1, wait_mask;
	struct filter_spec spec = { .argv = argv, .timeout = 600, .stop = &stop_flag,
	    .wait_mask = &wait_mask };
	struct sigaction sa;
	char script[256];
	int n;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_usr1;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGUSR1, &sa, NULL);
	sigemptyset(&usr1);
	sigaddset(&usr1, SIGUSR1);
	sigprocmask(SIG_BLOCK, &usr1, &wait_mask);
	sigdelset(&wait_mask, SIGUSR1);
	n = snprintf(script, sizeof(script), "#!/bin/sh\nsleep 1000 &\necho $! > %s/child\n"
	    "kill -USR1 $PPID\nwait\n", dir);
	write_file("filter", script, (size_t)n, 0755);
	path_in(path, sizeof(path), "filter");
	ck_assert_int_eq(filter_run(&spec, msg_fd, &env, &res), FILTER_TEMPFAIL);
	ck_assert_str_eq(res.reason, "stopped, process group killed");
	ck_assert_int_eq(stop_flag, 1);
	assert_dead(pid_from("child"));
}
END_TEST

/* The caller's SIGCHLD disposition and signal mask come back unchanged. */
START_TEST(signal_state_is_restored)
{
	struct sigaction sa;
	sigset_t before, after;

	sigemptyset(&before);
	sigaddset(&before, SIGTERM);
	sigprocmask(SIG_SETMASK, &before, NULL);
	ck_assert_int_eq(run("exit 0"), FILTER_ACCEPT);
	sigprocmask(SIG_SETMASK, NULL, &after);
	ck_assert(sigismember(&after, SIGTERM));
	ck_assert(!sigismember(&after, SIGCHLD));
	sigaction(SIGCHLD, NULL, &sa);
	ck_assert(sa.sa_handler == SIG_DFL);
}
END_TEST

static Suite *
filter_suite(void)
{
	Suite *s = suite_create("filter");
	TCase *tc = tcase_create("filter");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 120);	/* the hang test waits for its deadlines */
	tcase_add_test(tc, accept_with_header_fields_normalised_to_lf);
	tcase_add_test(tc, accept_without_output_or_reading_stdin);
	tcase_add_test(tc, accept_after_closing_stdin_early);
	tcase_add_test(tc, stdin_is_the_staged_message_read_only);
	tcase_add_test(tc, reject_uses_the_first_line_as_text);
	tcase_add_test(tc, reject_with_unsafe_text_gets_the_fixed_text);
	tcase_add_test(tc, exit_111_and_others_are_tempfail);
	tcase_add_test(tc, killed_by_a_signal_is_tempfail);
	tcase_add_test(tc, hang_is_killed_at_the_timeout_with_its_children);
	tcase_add_test(tc, child_that_lives_on_is_killed);
	tcase_add_test(tc, megabytes_on_stdout_are_bad_output);
	tcase_add_test(tc, output_is_bounded_at_64_kib);
	tcase_add_test(tc, header_injection_is_bad_output);
	tcase_add_test(tc, header_syntax);
	tcase_add_test(tc, header_lines_up_to_998_octets);
	tcase_add_test(tc, not_executable_is_tempfail);
	tcase_add_test(tc, arguments_pass_without_a_shell);
	tcase_add_test(tc, environment_has_only_smtpd_variables_and_path);
	tcase_add_test(tc, tls_variable_when_given);
	tcase_add_test(tc, only_stdin_stdout_stderr_are_open);
	tcase_add_test(tc, runs_in_its_own_process_group);
	tcase_add_test(tc, stderr_is_read_to_its_end);
	tcase_add_test(tc, signal_state_is_restored);
	tcase_add_test(tc, a_stop_signal_ends_the_wait);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	return harness_run_suite(filter_suite());
}
