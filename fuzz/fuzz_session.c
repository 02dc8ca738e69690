/*
 * fuzz_session.c: libFuzzer harness for the whole receive path.
 *
 * Each input is one client byte stream, fed through the real session_run()
 * from a temporary file (so nothing blocks), its replies thrown away, its
 * messages delivered into a throw-away Maildir on tmpfs. The first byte
 * picks how many bytes each read(2) returns (bits 0-2; 0 = as many as fit),
 * so line and CRLF boundaries fall anywhere, and how STARTTLS goes: bits
 * 3-4 the verdict of tls_stub.c (handshake done, key unreadable, handshake
 * failed, timed out), bit 5 require-tls, bit 6 no TLS configured. The stub
 * passes bytes through after a "handshake", so the rest of the input is
 * the session inside TLS. After every run promise 1 is checked:
 * nothing is left in tmp/ of any Maildir; every file in new/ ends with a
 * newline (the stored form of the CRLF before the final dot); there are
 * messages in new/ exactly when some data got "250 2.0.0 <id>", and at
 * least one per such reply. Chunk accounting (BDAT, RFC 3030): the sizes
 * in "250 2.0.0 N octets received" add up to no more than the input; no
 * stored body (a file less our trace lines) is longer than the message
 * size limit plus the LF that may end an unterminated last line, and the
 * bodies in one Maildir add up to no more than the input plus one octet
 * a message: nothing is stored twice or from outside the input. Promise
 * 4: every reply line is "DDD" then space or hyphen, printable ASCII,
 * CRLF, at most 512 bytes (RFC 5321 4.5.3.1.5), so no client byte
 * reaches a reply raw; every log line (vsyslog is replaced here) is
 * printable ASCII. RFC 3207: after a failed or timed-out handshake, "220
 * 2.0.0 Ready to start TLS" is the last thing written (no plain-text word
 * after it). A breach aborts, which libFuzzer reports as a crash.
 */
#define _GNU_SOURCE	/* memmem */
#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <unistd.h>

#include "route.h"
#include "session.h"
#include "tls_stub.h"

/* Every log line comes here instead of syslog: it must be one clean line. */
void
vsyslog(int priority, const char *fmt, va_list ap)
{
	char line[8192];
	int n = vsnprintf(line, sizeof(line), fmt, ap);

	(void)priority;
	if (n < 0)
		abort();
	for (int i = 0; i < n && i < (int)sizeof(line) - 1; i++)
		if ((unsigned char)line[i] < 0x20 || (unsigned char)line[i] > 0x7e)
			abort();	/* a raw client byte in a log line */
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_MESSAGE_SIZE	2048	/* small, so size limits are reached */

static char top[64];
static char maildir_default[128], maildir_a[128], maildir_b[128];
static struct routes routes;
static int input_fd, output_fd;

/* Does the file end in a newline? */
static int
ends_in_newline(const char *file)
{
	int fd = open(file, O_RDONLY);
	off_t size;
	char c = 0;

	if (fd == -1)
		return 0;
	size = lseek(fd, 0, SEEK_END);
	if (size <= 0 || pread(fd, &c, 1, size - 1) != 1)
		c = 0;
	close(fd);
	return c == '\n';
}

/*
 * The length of a stored message less our Return-Path and Received lines,
 * which end at the first line break after "Received: " not followed by a
 * tab (no address or HELO name in them holds a line break).
 */
static off_t
body_size(const char *file)
{
	char head[4096];
	int fd = open(file, O_RDONLY);
	ssize_t n;
	off_t size;
	const char *p, *end;

	if (fd == -1)
		abort();
	size = lseek(fd, 0, SEEK_END);
	n = pread(fd, head, sizeof(head), 0);
	close(fd);
	if (n <= 0 || (p = memmem(head, (size_t)n, "\nReceived: ", 11)) == NULL)
		abort();	/* a message without our trace lines */
	end = head + n;
	while ((p = memchr(p + 1, '\n', (size_t)(end - p - 1))) != NULL && p + 1 < end &&
	    p[1] == '\t')
		;
	if (p == NULL)
		abort();
	return size - (off_t)(p + 1 - head);	/* 0 for an empty message */
}

/*
 * Remove every file in dir/sub; returns how many there were. For new/, the
 * body sizes are checked against the limit and added to *bodies.
 */
static int
empty_dir(const char *dir, const char *sub, off_t *bodies)
{
	char path[PATH_MAX], file[PATH_MAX];
	struct dirent *e;
	DIR *d;
	int n = 0;

	snprintf(path, sizeof(path), "%s/%s", dir, sub);
	if ((d = opendir(path)) == NULL)
		return 0;
	while ((e = readdir(d)) != NULL) {
		if (e->d_name[0] == '.')
			continue;
		n++;
		if (snprintf(file, sizeof(file), "%s/%s", path, e->d_name) >= (int)sizeof(file))
			abort();
		if (strcmp(sub, "new") == 0) {
			off_t body = body_size(file);

			if (!ends_in_newline(file))
				abort();	/* a partial message in new/ */
			if (body > MAX_MESSAGE_SIZE + 1)
				abort();	/* over the limit, yet stored */
			*bodies += body;
		}
		unlink(file);
	}
	closedir(d);
	return n;
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	const char *base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
	char path[128];

	(void)argc;
	(void)argv;
	snprintf(top, sizeof(top), "%s/smtpd-fuzz.XXXXXX", base);
	if (mkdtemp(top) == NULL)
		abort();
	snprintf(maildir_default, sizeof(maildir_default), "%s/Maildir", top);
	snprintf(maildir_a, sizeof(maildir_a), "%s/a/Maildir", top);
	snprintf(maildir_b, sizeof(maildir_b), "%s/b/Maildir", top);
	if (routes_set_maildir(&routes, maildir_default) == -1)
		abort();
	if (routes_add_domain(&routes, "example.org") == -1 ||
	    routes_add_mailbox(&routes, "a@example.org", maildir_a, 1) == -1 ||
	    routes_add_mailbox(&routes, "b@example.org", maildir_b, 2) == -1 ||
	    routes_add_mailbox(&routes, "@example.net", maildir_b, 3) == -1)
		abort();
	routes_finish(&routes);
	snprintf(path, sizeof(path), "%s/input", top);
	if ((input_fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600)) == -1)
		abort();
	unlink(path);
	snprintf(path, sizeof(path), "%s/output", top);
	if ((output_fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600)) == -1)
		abort();
	unlink(path);
	return 0;
}

/*
 * Promise 1: a finished session leaves nothing in tmp/. What is in new/
 * came from the input, once: input octets plus an LF a message at most.
 */
static int
check_maildir(const char *dir, size_t input)
{
	off_t bodies = 0;
	int n;

	if (empty_dir(dir, "tmp", &bodies) != 0)
		abort();
	n = empty_dir(dir, "new", &bodies);
	if (bodies > (off_t)input + n)
		abort();
	return n;
}

/* Is out[0..n) a well-formed reply line "DDD[ -]text" ending in CRLF? */
static int
good_reply_line(const char *p, size_t n)
{
	if (n < 6 || n > 512 || p[n - 2] != '\r' || p[n - 1] != '\n')
		return 0;
	if (p[0] < '2' || p[0] > '5' || p[1] < '0' || p[1] > '9' || p[2] < '0' ||
	    p[2] > '9' || (p[3] != ' ' && p[3] != '-'))
		return 0;
	for (size_t i = 0; i < n - 2; i++)
		if ((unsigned char)p[i] < 0x20 || (unsigned char)p[i] > 0x7e)
			return 0;
	return 1;
}

/* RFC 3207: nothing follows the 220 of a STARTTLS whose handshake failed. */
static void
check_failed_handshake(const char *out, size_t n)
{
	static const char ready[] = "220 2.0.0 Ready to start TLS\r\n";
	const char *p = memmem(out, n, ready, sizeof(ready) - 1);

	if (p != NULL && (size_t)(p - out) + sizeof(ready) - 1 != n)
		abort();
}

/* "250 2.0.0 N octets received": N, else -1. */
static long long
chunk_size(const char *p, size_t n)
{
	static const char tail[] = " octets received\r\n";
	long long size = 0;
	size_t i = 10;

	if (n < 10 || strncmp(p, "250 2.0.0 ", 10) != 0)
		return -1;
	for (; i < n && p[i] >= '0' && p[i] <= '9' && i < 28; i++)
		size = size * 10 + (p[i] - '0');
	if (i == 10 || n - i != sizeof(tail) - 1 || memcmp(p + i, tail, n - i) != 0)
		return -1;
	return size;
}

/*
 * Check every reply line; return how many are "250 2.0.0 <id>", the
 * answer to a delivered message. The chunks acknowledged add up to no
 * more than the input. failed_tls: a STARTTLS handshake fails.
 */
static size_t
check_replies(size_t input, bool failed_tls)
{
	static char out[1 << 22];
	ssize_t n = pread(output_fd, out, sizeof(out), 0);
	size_t count = 0, start = 0;
	long long chunks = 0, c;

	if (n < 0 || n == (ssize_t)sizeof(out))
		abort();
	for (size_t i = 0; i < (size_t)n; i++) {
		if (out[i] != '\n')
			continue;
		if (!good_reply_line(out + start, i + 1 - start))
			abort();
		if ((c = chunk_size(out + start, i + 1 - start)) >= 0) {
			if ((chunks += c) > (long long)input)
				abort();	/* acknowledged octets never sent */
		} else if (strncmp(out + start, "250 2.0.0 ", 10) == 0 &&
		    strncmp(out + start + 10, "Ok\r\n", 4) != 0) {
			count++;
		}
		start = i + 1;
	}
	if (start != (size_t)n)
		abort();	/* a reply cut short */
	if (failed_tls)
		check_failed_handshake(out, (size_t)n);
	return count;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct session_config cfg;
	enum tls_stub_verdict verdict;
	size_t delivered;
	int files;

	if (size == 0)
		return 0;
	if (ftruncate(output_fd, 0) == -1 || ftruncate(input_fd, 0) == -1 ||
	    pwrite(input_fd, data + 1, size - 1, 0) != (ssize_t)(size - 1) ||
	    lseek(input_fd, 0, SEEK_SET) == -1 || lseek(output_fd, 0, SEEK_SET) == -1)
		abort();
	memset(&cfg, 0, sizeof(cfg));
	cfg.hostname = "mx.example";
	cfg.max_message_size = MAX_MESSAGE_SIZE;
	cfg.max_recipients = 4;
	cfg.timeout = 10;
	cfg.session_timeout = 60;
	cfg.routes = &routes;
	cfg.peer = "192.0.2.7";
	cfg.peer_literal = "[192.0.2.7]";
	cfg.read_limit = data[0] % 8;
	verdict = (enum tls_stub_verdict)((data[0] >> 3) % 4);
	tls_stub_set(verdict, cfg.read_limit);
	cfg.require_tls = (data[0] & 0x20) != 0;
	if ((data[0] & 0x40) == 0) {
		cfg.tls.cert_file = "cert.pem";	/* tls_stub.c reads neither */
		cfg.tls.key_file = "key.pem";
	}
	session_run(&cfg, input_fd, output_fd);
	delivered = check_replies(size - 1,
	    verdict == TLS_STUB_FAILED || verdict == TLS_STUB_TIMEOUT);
	files = check_maildir(maildir_default, size - 1) + check_maildir(maildir_a, size - 1) +
	    check_maildir(maildir_b, size - 1);
	if ((delivered == 0) != (files == 0) || (size_t)files < delivered)
		abort();
	return 0;
}
