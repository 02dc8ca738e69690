/*
 * tls_stub.c: tls.h for the fuzzer, without OpenSSL. A fuzz input is a
 * client byte stream, which no handshake would survive; here the handshake
 * is a verdict the harness sets per input (tls_stub_set), and the "TLS"
 * after it passes bytes through unchanged. So the input reaches every state
 * change of STARTTLS in session.c (454, a failed or timed-out handshake,
 * the session starting over, 503 inside TLS, close_notify at the end)
 * with the real session, reader and reply code around it.
 */
#include "tls.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "tls_stub.h"

struct tls {
	int	in_fd, out_fd;
};

static enum tls_stub_verdict verdict;
static size_t read_limit;

void
tls_stub_set(enum tls_stub_verdict v, size_t limit)
{
	verdict = v;
	read_limit = limit;
}

int
tls_resolve_file(const char *name, char *path, size_t size, char *err, size_t errlen)
{
	int n = snprintf(path, size, "%s", name);

	if (n < 0 || (size_t)n >= size) {
		snprintf(err, errlen, "name too long");
		return -1;
	}
	return 0;
}

struct tls *
tls_accept(const struct tls_config *cfg, int in_fd, int out_fd, char *err, size_t errlen)
{
	struct tls *t;

	(void)cfg;
	err[0] = '\0';
	if (verdict == TLS_STUB_NO_KEY || (t = malloc(sizeof(*t))) == NULL) {
		snprintf(err, errlen, "stub: the key cannot be read");
		return NULL;
	}
	t->in_fd = in_fd;
	t->out_fd = out_fd;
	return t;
}

enum tls_result
tls_handshake(struct tls *t, long long deadline_ms, const volatile sig_atomic_t *stop,
    const sigset_t *wait_mask)
{
	(void)t;
	(void)deadline_ms;
	(void)wait_mask;
	if (stop != NULL && *stop)
		return TLS_STOPPED;
	switch (verdict) {
	case TLS_STUB_FAILED:
		return TLS_FAILED;
	case TLS_STUB_TIMEOUT:
		return TLS_TIMEOUT;
	default:
		return TLS_OK;
	}
}

/* The harness's bytes-per-read limit holds inside "TLS" too. */
ssize_t
tls_read(struct tls *t, void *buf, size_t len)
{
	return read(t->in_fd, buf, read_limit > 0 && len > read_limit ? read_limit : len);
}

ssize_t
tls_write(struct tls *t, const void *buf, size_t len)
{
	return write(t->out_fd, buf, len);
}

struct pollfd
tls_pollfd(const struct tls *t)
{
	return (struct pollfd){ .fd = t->in_fd, .events = POLLIN };
}

size_t
tls_pending(const struct tls *t)
{
	(void)t;
	return 0;
}

const char *
tls_error(const struct tls *t)
{
	(void)t;
	return "stub: handshake failed";
}

const char *
tls_version(const struct tls *t)
{
	(void)t;
	return "TLSv1.3";
}

const char *
tls_cipher(const struct tls *t)
{
	(void)t;
	return "TLS_AES_256_GCM_SHA384";
}

bool
tls_resumed(const struct tls *t)
{
	(void)t;
	return false;
}

void
tls_close(struct tls *t)
{
	free(t);
}

int
tls_check_pair(const char *cert_file, const char *key_file, char *err, size_t errlen)
{
	(void)cert_file;
	(void)key_file;
	(void)err;
	(void)errlen;
	return 0;
}

int
tls_rotate_ticket_keys(const char *path, char *err, size_t errlen)
{
	(void)path;
	snprintf(err, errlen, "stub: no ticket keys");
	return -1;
}
