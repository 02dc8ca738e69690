/*
 * filter.c: run a content filter over one staged message.
 *
 * Promises: the program runs without a shell, in its own process group,
 * with the message file as stdin, pipes as stdout and stderr, no other
 * descriptor of ours and an environment of SMTPD_* variables and PATH
 * only. It never outlives filter_run: at the deadline, or once the filter
 * itself has exited, its whole process group gets SIGKILL. Nothing it
 * prints is trusted: stdout is bounded and checked as header fields,
 * stderr reaches the log only through log_quote. The verdict follows the
 * exit status, as qmail's QMAILQUEUE and qmail-spp programs do: 0 accept,
 * 100 refuse, anything else try later. What the session answers and
 * stores is left to it.
 */
#define _GNU_SOURCE	/* ppoll, pipe2 */
#include "filter.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "log.h"

#define EXIT_ACCEPT	0
#define EXIT_REJECT	100
#define STDERR_SHOWN	200	/* bytes of one stderr line in the log */
#define ENV_VARS	8	/* SMTPD_ID ... SMTPD_TLS, PATH */

static const char reject_text[] = "Message rejected by content filter";

/* The state of one run, between fork and verdict. */
struct run {
	pid_t	pid;
	int	out_fd, err_fd;	/* -1 once at end of file */
	bool	exited, overflow, timed_out, stopped;
	int	status;		/* waitpid's, once exited */
	size_t	out_len;	/* stdout bytes in result->headers */
	char	err_line[STDERR_SHOWN];
	size_t	err_len;
	bool	err_skip;	/* the rest of a line too long to show */
	unsigned err_lines;	/* stderr lines seen */
	const char *id;	/* the message's, for the stderr lines */
};

/* "KEY=value" in a new allocation, or NULL. */
static char *
env_entry(const char *key, const char *value)
{
	size_t n = strlen(key) + strlen(value) + 2;
	char *p = malloc(n);
	int w;

	if (p == NULL)
		return NULL;
	w = snprintf(p, n, "%s=%s", key, value);
	if (w < 0 || (size_t)w >= n) {
		free(p);
		return NULL;
	}
	return p;
}

/* The recipients, one per line: "SMTPD_RCPTS=a\nb". */
static char *
env_rcpts(const struct filter_env *env)
{
	size_t n = sizeof("SMTPD_RCPTS=");
	char *p, *o;

	for (size_t i = 0; i < env->nrcpts; i++)
		n += strlen(env->rcpts[i]) + 1;
	if ((p = malloc(n)) == NULL)
		return NULL;
	memcpy(p, "SMTPD_RCPTS=", sizeof("SMTPD_RCPTS=") - 1);
	o = p + sizeof("SMTPD_RCPTS=") - 1;
	for (size_t i = 0; i < env->nrcpts; i++) {
		size_t k = strlen(env->rcpts[i]);

		if (i > 0)
			*o++ = '\n';
		memcpy(o, env->rcpts[i], k);
		o += k;
	}
	*o = '\0';
	return p;
}

static void
env_free(char **envp)
{
	for (size_t i = 0; i < ENV_VARS; i++)
		free(envp[i]);
}

/* The filter's whole environment, built before fork. -1 out of memory. */
static int
env_build(const struct filter_env *env, char **envp)
{
	char size[32];
	size_t n = 0;

	memset(envp, 0, (ENV_VARS + 1) * sizeof(*envp));
	snprintf(size, sizeof(size), "%llu", env->size);
	envp[n++] = env_entry("SMTPD_ID", env->id);
	envp[n++] = env_entry("SMTPD_PEER", env->peer);
	envp[n++] = env_entry("SMTPD_HELO", env->helo);
	envp[n++] = env_entry("SMTPD_FROM", env->from);
	envp[n++] = env_rcpts(env);
	envp[n++] = env_entry("SMTPD_SIZE", size);
	envp[n++] = env_entry("PATH", "/usr/bin:/bin");
	if (env->tls != NULL)
		envp[n++] = env_entry("SMTPD_TLS", env->tls);
	for (size_t i = 0; i < n; i++) {
		if (envp[i] == NULL) {
			env_free(envp);
			return -1;
		}
	}
	return 0;
}

/*
 * In the child: descriptors 0, 1, 2 and the exec status pipe as 3 (closed
 * by a successful exec), nothing else; default signal dispositions (an
 * ignored SIGPIPE would be inherited through exec) and an empty mask.
 */
static void __attribute__((noreturn))
exec_child(char *const *argv, char *const *envp, const int from[4])
{
	int moved[4], err;
	sigset_t none;

	if (setpgid(0, 0) == -1)
		goto fail;
	/* Move everything above 3 first: a source may sit on a target number. */
	for (int i = 0; i < 4; i++)
		if ((moved[i] = fcntl(from[i], F_DUPFD_CLOEXEC, 4)) == -1)
			goto fail;
	for (int i = 0; i < 4; i++)
		if (dup2(moved[i], i) == -1)
			goto fail;
	if (fcntl(3, F_SETFD, FD_CLOEXEC) == -1)
		goto fail;
	closefrom(4);
	for (int sig = 1; sig < NSIG; sig++)
		if (sig != SIGKILL && sig != SIGSTOP)
			signal(sig, SIG_DFL);
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	execve(argv[0], argv, envp);
fail:
	err = errno;
	(void)!write(3, &err, sizeof(err));
	_exit(127);
}

/* The exec status: 0 once the program runs, else the child's errno. */
static int
exec_status(int fd)
{
	int err = 0;
	ssize_t n;

	do
		n = read(fd, &err, sizeof(err));
	while (n == -1 && errno == EINTR);
	return n == (ssize_t)sizeof(err) ? err : n == 0 ? 0 : EIO;
}

static void
close_pair(int p[2])
{
	for (int i = 0; i < 2; i++)
		if (p[i] != -1)
			close(p[i]);
	p[0] = p[1] = -1;
}

/* fork and exec; on failure out->reason says why and nothing is left running. */
static int
spawn(struct run *r, char *const *argv, char *const *envp, int message_fd,
    struct filter_result *out)
{
	int po[2] = { -1, -1 }, pe[2] = { -1, -1 }, ps[2] = { -1, -1 }, err;

	if (pipe2(po, O_CLOEXEC) == -1 || pipe2(pe, O_CLOEXEC) == -1 ||
	    pipe2(ps, O_CLOEXEC) == -1 || (r->pid = fork()) == -1) {
		snprintf(out->reason, sizeof(out->reason), "cannot start: %s", strerror(errno));
		close_pair(po);
		close_pair(pe);
		close_pair(ps);
		return -1;
	}
	if (r->pid == 0)
		exec_child(argv, envp, (const int[4]){ message_fd, po[1], pe[1], ps[1] });
	close(po[1]);
	close(pe[1]);
	close(ps[1]);
	err = exec_status(ps[0]);
	close(ps[0]);
	r->out_fd = po[0];
	r->err_fd = pe[0];
	if (err != 0) {
		snprintf(out->reason, sizeof(out->reason), "cannot execute %s: %s",
		    log_quote(argv[0], strlen(argv[0])), strerror(err));
		close(po[0]);
		close(pe[0]);
		while (waitpid(r->pid, NULL, 0) == -1 && errno == EINTR)
			;
		return -1;
	}
	fcntl(po[0], F_SETFL, O_NONBLOCK);
	fcntl(pe[0], F_SETFL, O_NONBLOCK);
	return 0;
}

static void
log_stderr_line(struct run *r)
{
	if (++r->err_lines <= FILTER_STDERR_LINES)
		log_info("filter-stderr id=%s text=%s", log_quote(r->id, strlen(r->id)),
		    log_quote(r->err_line, r->err_len));
	r->err_len = 0;
}

/* Cut stderr into lines; log the first few, count the rest. */
static void
take_stderr(struct run *r, const char *p, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (p[i] == '\n') {
			if (!r->err_skip)
				log_stderr_line(r);
			r->err_skip = false;
		} else if (!r->err_skip) {
			r->err_line[r->err_len++] = p[i];
			if (r->err_len == sizeof(r->err_line)) {
				log_stderr_line(r);
				r->err_skip = true;
			}
		}
	}
}

/* End of stderr: the last unterminated line, and how many went unlogged. */
static void
finish_stderr(struct run *r)
{
	if (r->err_len > 0)
		log_stderr_line(r);
	if (r->err_lines > FILTER_STDERR_LINES)
		log_info("filter-stderr id=%s more=%u", log_quote(r->id, strlen(r->id)),
		    r->err_lines - FILTER_STDERR_LINES);
}

/* Read what is there; close the descriptor at end of file or on error. */
static void
drain(struct run *r, int *fd, struct filter_result *out)
{
	char scratch[4096];

	for (;;) {
		bool to_out = fd == &r->out_fd && r->out_len < sizeof(out->headers);
		char *buf = to_out ? out->headers + r->out_len : scratch;
		size_t room = to_out ? sizeof(out->headers) - r->out_len : sizeof(scratch);
		ssize_t n = read(*fd, buf, room);

		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1 && errno == EAGAIN)
			return;
		if (n > 0 && fd == &r->err_fd) {
			take_stderr(r, buf, (size_t)n);
			continue;
		}
		if (n > 0 && to_out) {
			r->out_len += (size_t)n;
			continue;
		}
		if (n > 0) {	/* stdout past FILTER_HEADER_MAX: no valid verdict */
			r->overflow = true;
			return;
		}
		close(*fd);
		*fd = -1;
		return;
	}
}

/*
 * The filter has exited: kill what it left in its group while the
 * zombie still holds the group's id (a reaped id can be reused), then reap.
 */
static void
reap(struct run *r, bool force)
{
	siginfo_t si;

	if (r->exited)
		return;
	if (!force) {
		memset(&si, 0, sizeof(si));
		if (waitid(P_PID, (id_t)r->pid, &si, WEXITED | WNOHANG | WNOWAIT) == -1 ||
		    si.si_pid != r->pid)
			return;
	}
	kill(-r->pid, SIGKILL);
	while (waitpid(r->pid, &r->status, 0) == -1 && errno == EINTR)
		;
	r->exited = true;
}

/*
 * Until the filter has exited and both pipes are at end of file, or the
 * deadline. SIGCHLD is blocked except inside ppoll, so an exit between
 * the check and the wait still ends the wait.
 */
static void
collect(struct run *r, const struct filter_spec *spec, const sigset_t *wait_mask,
    struct filter_result *out)
{
	long long deadline = now_ms() + spec->timeout * 1000LL;

	for (;;) {
		struct pollfd pfd[2];
		struct timespec ts;
		long long left;
		nfds_t n = 0;

		reap(r, false);
		if (r->overflow || (r->exited && r->out_fd == -1 && r->err_fd == -1))
			break;
		if (spec->stop != NULL && *spec->stop) {
			r->stopped = true;
			break;
		}
		if ((left = deadline - now_ms()) <= 0) {
			r->timed_out = true;
			break;
		}
		if (r->out_fd != -1)
			pfd[n++] = (struct pollfd){ .fd = r->out_fd, .events = POLLIN };
		if (r->err_fd != -1)
			pfd[n++] = (struct pollfd){ .fd = r->err_fd, .events = POLLIN };
		ts.tv_sec = left / 1000;
		ts.tv_nsec = (left % 1000) * 1000000;
		if (ppoll(pfd, n, &ts, wait_mask) <= 0)
			continue;	/* EINTR (SIGCHLD, a stop), or the deadline: checked above */
		for (nfds_t i = 0; i < n; i++)
			if (pfd[i].revents != 0)
				drain(r, pfd[i].fd == r->out_fd ? &r->out_fd : &r->err_fd, out);
	}
	reap(r, true);
	if (r->out_fd != -1)
		close(r->out_fd);
	if (r->err_fd != -1)
		close(r->err_fd);
	finish_stderr(r);
}

/* Exit 100: the first line as the reply text when it is safe, else ours. */
static void
take_reject_text(struct filter_result *out, size_t len)
{
	const char *nl = memchr(out->headers, '\n', len);
	size_t n = nl != NULL ? (size_t)(nl - out->headers) : len;
	bool ok = n > 0 && n <= FILTER_TEXT_MAX;

	for (size_t i = 0; ok && i < n; i++)
		ok = out->headers[i] >= 32 && out->headers[i] <= 126;
	if (ok)
		memcpy(out->text, out->headers, n);
	else
		memcpy(out->text, reject_text, (n = sizeof(reject_text) - 1));
	out->text[n] = '\0';
}

/* The verdict of a run that was started. */
static enum filter_verdict
judge(const struct run *r, struct filter_result *out)
{
	char why[96];
	long n;

	if (r->overflow) {
		snprintf(out->reason, sizeof(out->reason), "more than %d bytes on stdout",
		    FILTER_HEADER_MAX);
		return FILTER_BAD_OUTPUT;
	}
	if (r->stopped) {
		snprintf(out->reason, sizeof(out->reason), "stopped, process group killed");
		return FILTER_TEMPFAIL;
	}
	if (r->timed_out) {
		snprintf(out->reason, sizeof(out->reason), "timed out, process group killed");
		return FILTER_TEMPFAIL;
	}
	if (WIFSIGNALED(r->status)) {
		snprintf(out->reason, sizeof(out->reason), "killed by signal %d", WTERMSIG(r->status));
		return FILTER_TEMPFAIL;
	}
	switch (WEXITSTATUS(r->status)) {
	case EXIT_ACCEPT:
		if ((n = filter_check_headers(out->headers, r->out_len, why, sizeof(why))) == -1) {
			snprintf(out->reason, sizeof(out->reason), "exit 0, bad header output: %s", why);
			return FILTER_BAD_OUTPUT;
		}
		out->headers_len = (size_t)n;
		snprintf(out->reason, sizeof(out->reason), "exit 0, %zu bytes of header fields",
		    out->headers_len);
		return FILTER_ACCEPT;
	case EXIT_REJECT:
		take_reject_text(out, r->out_len);
		snprintf(out->reason, sizeof(out->reason), "exit 100");
		return FILTER_REJECT;
	default:
		snprintf(out->reason, sizeof(out->reason), "exit %d", WEXITSTATUS(r->status));
		return FILTER_TEMPFAIL;
	}
}

/* One line of output: empty, too long, a byte outside RFC 5322 text, or its start. */
static const char *
line_fault(const char *q, size_t len, bool first)
{
	size_t i;

	if (len == 0)
		return "empty line (would end the header)";
	if (len > FILTER_LINE_MAX)
		return "line longer than 998 octets";
	for (i = 0; i < len; i++)
		if ((q[i] < 32 || q[i] > 126) && q[i] != '\t')
			return "byte outside printable ASCII, SP and HTAB (CR, NUL, 8-bit)";
	if (q[0] == ' ' || q[0] == '\t') {
		if (first)
			return "continuation line before any field";
		for (i = 0; i < len && (q[i] == ' ' || q[i] == '\t'); i++)
			;
		/* RFC 5322 3.2.2: a line of only WSP must not be generated. */
		return i == len ? "line of only white space" : NULL;
	}
	/* RFC 5322 3.6.8: field-name is 1*ftext, %d33-57 / %d59-126. */
	for (i = 0; i < len && q[i] > 32 && q[i] < 127 && q[i] != ':'; i++)
		;
	if (i == 0 || i == len || q[i] != ':')
		return "not a field (name, then colon)";
	return NULL;
}

long
filter_check_headers(char *p, size_t n, char *why, size_t size)
{
	size_t o = 0, lineno = 0;

	for (size_t i = 0; i < n; ) {
		const char *nl = memchr(p + i, '\n', n - i), *fault;
		size_t len;

		lineno++;
		if (nl == NULL) {
			snprintf(why, size, "line %zu: no line ending", lineno);
			return -1;
		}
		len = (size_t)(nl - (p + i));
		if (len > 0 && p[i + len - 1] == '\r')
			len--;	/* CRLF ending; any other CR is refused below */
		if ((fault = line_fault(p + i, len, lineno == 1)) != NULL) {
			snprintf(why, size, "line %zu: %s", lineno, fault);
			return -1;
		}
		memmove(p + o, p + i, len);
		o += len;
		p[o++] = '\n';
		i = (size_t)(nl - p) + 1;
	}
	return (long)o;
}

static void
on_sigchld(int sig)
{
	(void)sig;	/* only to end ppoll with EINTR */
}

enum filter_verdict
filter_run(const struct filter_spec *spec, int message_fd, const struct filter_env *env,
    struct filter_result *out)
{
	struct sigaction sa, old_sa;
	sigset_t chld, old_mask, wait_mask;
	char *envp[ENV_VARS + 1];
	struct run r;
	enum filter_verdict v = FILTER_TEMPFAIL;

	memset(&r, 0, sizeof(r));
	r.id = env->id;
	out->headers_len = 0;
	out->text[0] = '\0';
	if (env_build(env, envp) == -1) {
		snprintf(out->reason, sizeof(out->reason), "cannot start: out of memory");
		return FILTER_TEMPFAIL;
	}
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_sigchld;
	sa.sa_flags = SA_NOCLDSTOP;
	sigemptyset(&sa.sa_mask);
	sigemptyset(&chld);
	sigaddset(&chld, SIGCHLD);
	sigprocmask(SIG_BLOCK, &chld, &old_mask);
	sigaction(SIGCHLD, &sa, &old_sa);
	wait_mask = spec->wait_mask != NULL ? *spec->wait_mask : old_mask;
	sigdelset(&wait_mask, SIGCHLD);
	if (spawn(&r, spec->argv, envp, message_fd, out) == 0) {
		collect(&r, spec, &wait_mask, out);
		v = judge(&r, out);
	}
	sigaction(SIGCHLD, &old_sa, NULL);
	sigprocmask(SIG_SETMASK, &old_mask, NULL);
	env_free(envp);
	return v;
}
