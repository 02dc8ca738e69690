/*
 * floor.c: the least a per-connection SMTP receiver can do, as a yardstick.
 *
 * Serve mode (the default) answers one connection on stdin/stdout, or on
 * fd 3 when LISTEN_FDS=1 says systemd passed it: 220, then 250 to every
 * line, 354 to DATA, 221 to QUIT. Message data goes to MAILDIR/tmp, is
 * fsynced, renamed into new/ and new/ is fsynced before the 250, so it
 * keeps the same durability promise as smtpd and nothing more: no grammar,
 * no limits, no logging, no dot-unstuffing, no timeouts. Only for benchmarks.
 *
 * Disk mode (-d MAILDIR COUNT SIZE PROCS) times COUNT such deliveries of
 * SIZE bytes spread over PROCS processes and prints deliveries per second:
 * the disk's fsync+rename rate, the limit beneath every server.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define IO_BUFFER	65536

struct spool {
	const char *maildir;
	char	tmp[4096];
	char	new[4096];
	int	fd;
	unsigned serial;
	size_t	len;
	char	buf[IO_BUFFER];
};

static int
write_all(int fd, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = write(fd, p, n);

		if (w == -1 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

static int
sync_path(const char *dir)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY);
	int rc;

	if (fd == -1)
		return -1;
	rc = fsync(fd);
	close(fd);
	return rc;
}

static int
spool_open(struct spool *sp)
{
	struct timespec ts;
	char name[128];
	int n;

	clock_gettime(CLOCK_REALTIME, &ts);
	n = snprintf(name, sizeof(name), "%lld.M%ldP%ldQ%u.floor", (long long)ts.tv_sec,
	    ts.tv_nsec / 1000, (long)getpid(), ++sp->serial);
	if (n < 0 || (size_t)n >= sizeof(name))
		return -1;
	n = snprintf(sp->tmp, sizeof(sp->tmp), "%s/tmp/%s", sp->maildir, name);
	if (n < 0 || (size_t)n >= sizeof(sp->tmp))
		return -1;
	n = snprintf(sp->new, sizeof(sp->new), "%s/new/%s", sp->maildir, name);
	if (n < 0 || (size_t)n >= sizeof(sp->new))
		return -1;
	sp->len = 0;
	sp->fd = open(sp->tmp, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0600);
	return sp->fd == -1 ? -1 : 0;
}

static int
spool_write(struct spool *sp, const char *p, size_t n)
{
	if (sp->len + n > sizeof(sp->buf)) {
		if (write_all(sp->fd, sp->buf, sp->len) == -1)
			return -1;
		sp->len = 0;
	}
	if (n > sizeof(sp->buf))
		return write_all(sp->fd, p, n);
	memcpy(sp->buf + sp->len, p, n);
	sp->len += n;
	return 0;
}

/* fsync the file, rename it into new/, fsync new/: what a 250 must mean. */
static int
spool_commit(struct spool *sp)
{
	char dir[4096];
	int rc = 0;

	if (write_all(sp->fd, sp->buf, sp->len) == -1 || fsync(sp->fd) == -1)
		rc = -1;
	if (close(sp->fd) == -1)
		rc = -1;
	sp->fd = -1;
	if (rc == 0 && rename(sp->tmp, sp->new) == -1)
		rc = -1;
	if (rc == 0 && snprintf(dir, sizeof(dir), "%s/new", sp->maildir) < (int)sizeof(dir))
		rc = sync_path(dir);
	if (rc == -1)
		unlink(sp->tmp);
	return rc;
}

static int
say(int fd, const char *text)
{
	return write_all(fd, text, strlen(text));
}

static int
serve(const char *maildir)
{
	static struct spool sp;
	static char in[IO_BUFFER];
	size_t start = 0, end = 0;
	const char *env = getenv("LISTEN_FDS");
	int fd_in = 0, fd_out = 1, in_data = 0;

	if (env != NULL && strcmp(env, "1") == 0)
		fd_in = fd_out = 3;
	sp.maildir = maildir;
	sp.fd = -1;
	if (say(fd_out, "220 floor\r\n") == -1)
		return 1;
	for (;;) {
		char *lf = memchr(in + start, '\n', end - start);
		size_t n;

		if (lf == NULL) {
			ssize_t r;

			if (start == end) {
				start = end = 0;
			} else if (end == sizeof(in)) {
				memmove(in, in + start, end - start);
				end -= start;
				start = 0;
			}
			if (end == sizeof(in))
				return 1;	/* a line longer than the buffer: not a floor's job */
			r = read(fd_in, in + end, sizeof(in) - end);
			if (r == -1 && errno == EINTR)
				continue;
			if (r <= 0)
				return 0;
			end += (size_t)r;
			continue;
		}
		n = (size_t)(lf - (in + start)) + 1;
		if (in_data) {
			if (n == 3 && memcmp(in + start, ".\r\n", 3) == 0) {
				in_data = 0;
				if (say(fd_out, spool_commit(&sp) == 0 ? "250 ok\r\n" :
				    "451 failed\r\n") == -1)
					return 1;
			} else if (spool_write(&sp, in + start, n) == -1) {
				return 1;
			}
		} else if (n >= 4 && strncasecmp(in + start, "DATA", 4) == 0) {
			if (spool_open(&sp) == -1)
				return 1;
			in_data = 1;
			if (say(fd_out, "354 go\r\n") == -1)
				return 1;
		} else if (n >= 4 && strncasecmp(in + start, "QUIT", 4) == 0) {
			say(fd_out, "221 bye\r\n");
			return 0;
		} else if (say(fd_out, "250 ok\r\n") == -1) {
			return 1;
		}
		start += n;
	}
}

static double
now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* COUNT deliveries of SIZE bytes in PROCS processes; prints the rate. */
static int
disk(const char *maildir, long count, long size, long procs)
{
	static struct spool sp;
	static char block[IO_BUFFER];
	double t0 = now_s();
	int failed = 0;

	memset(block, 'x', sizeof(block));
	sp.maildir = maildir;
	for (long p = 0; p < procs; p++) {
		pid_t pid = fork();

		if (pid == -1)
			return 1;
		if (pid > 0)
			continue;
		for (long i = p; i < count; i += procs) {
			if (spool_open(&sp) == -1)
				_exit(1);
			for (long left = size; left > 0; left -= IO_BUFFER)
				if (spool_write(&sp, block, left < IO_BUFFER ? (size_t)left :
				    IO_BUFFER) == -1)
					_exit(1);
			if (spool_commit(&sp) == -1)
				_exit(1);
		}
		_exit(0);
	}
	for (long p = 0; p < procs; p++) {
		int status;

		if (wait(&status) == -1 || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
			failed = 1;
	}
	if (failed) {
		fprintf(stderr, "floor: a disk writer failed\n");
		return 1;
	}
	printf("%.1f\n", (double)count / (now_s() - t0));
	return 0;
}

int
main(int argc, char **argv)
{
	if (argc == 6 && strcmp(argv[1], "-d") == 0)
		return disk(argv[2], atol(argv[3]), atol(argv[4]), atol(argv[5]));
	if (argc == 2)
		return serve(argv[1]);
	fprintf(stderr, "usage: floor MAILDIR | floor -d MAILDIR COUNT SIZE PROCS\n");
	return 64;
}
