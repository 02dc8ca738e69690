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
 * least one per such reply. Promise 4: every reply line is "DDD" then
 * space or hyphen, printable ASCII, CRLF, at most 512 bytes (RFC 5321
 * 4.5.3.1.5), so no client byte reaches a reply raw; every log line
 * (vsyslog is replaced here) is printable ASCII. RFC 3207: after a failed
 * or timed-out handshake, "220 2.0.0 Ready to start TLS" is the last thing
 * written (no plain-text word after it). A breach aborts, which libFuzzer
 * reports as a crash.
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

/* Remove every file in dir/sub; returns how many there were. */
static int
empty_dir(const char *dir, const char *sub)
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
		if (strcmp(sub, "new") == 0 && !ends_in_newline(file))
			abort();	/* a partial message in new/ */
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

/* Promise 1: a finished session leaves nothing in tmp/. */
static int
check_maildir(const char *dir)
{
	if (empty_dir(dir, "tmp") != 0)
		abort();
	return empty_dir(dir, "new");
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

/*
 * Check every reply line; return how many are "250 2.0.0 <id>", the
 * answer to a delivered message. failed_tls: a STARTTLS handshake fails.
 */
static size_t
check_replies(bool failed_tls)
{
	static char out[1 << 22];
	ssize_t n = pread(output_fd, out, sizeof(out), 0);
	size_t count = 0, start = 0;

	if (n < 0 || n == (ssize_t)sizeof(out))
		abort();
	for (size_t i = 0; i < (size_t)n; i++) {
		if (out[i] != '\n')
			continue;
		if (!good_reply_line(out + start, i + 1 - start))
			abort();
		if (strncmp(out + start, "250 2.0.0 ", 10) == 0 &&
		    strncmp(out + start + 10, "Ok\r\n", 4) != 0)
			count++;
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
	cfg.max_message_size = 2048;	/* small, so size limits are reached */
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
	delivered = check_replies(verdict == TLS_STUB_FAILED || verdict == TLS_STUB_TIMEOUT);
	files = check_maildir(maildir_default) + check_maildir(maildir_a) +
	    check_maildir(maildir_b);
	if ((delivered == 0) != (files == 0) || (size_t)files < delivered)
		abort();
	return 0;
}
