/*
 * bench/tlsload.c: connections per second through STARTTLS.
 *
 *     bench/tlsload [-n N] [-c C] [-r] [-2] [-s SIZE] [-h HELO] HOST PORT
 *
 * Opens N connections (default 100) to HOST PORT (a numeric address: no
 * DNS), C at a time (default 1: one after another), each in one of C
 * worker processes. Each connection: greeting, EHLO, STARTTLS, the
 * handshake, EHLO, MAIL, RCPT, DATA with a message of about SIZE bytes
 * (default a few: -s 4096 is W1's message of bench/RESULTS.md), QUIT; every reply
 * is checked. -r offers the session (ticket) of a worker's previous
 * connection on the next, as a returning sender would: the server resumes
 * it if it can. -2 holds the client to TLS 1.2. The certificate is not
 * verified: this measures the server, not the PKI. Nagle is off, as the
 * TLS client writes its Finished and the EHLO in two small writes, and the
 * second would wait for the server's delayed ACK (40 ms). Prints the connections
 * per second, how many handshakes resumed, and how many connections failed.
 */
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "measure.h"

#define WORKERS_MAX	256
#define IO_TIMEOUT_S	30	/* a stuck server fails a connection, never the run */

#define SIZE_MAX_BYTES	(1024 * 1024)

struct options {
	long	n, c, size;
	int	resume, tls12;
	const char *helo, *host, *port;
	char	*message;	/* the data, dot line included */
};

/* One connection: plain until ssl is set, then through it. */
struct conn {
	int	fd;
	SSL	*ssl;
	char	buf[4096];
	size_t	len;
};

struct tally {
	long	ok, resumed, failed;
};

static int
conn_write(struct conn *c, const char *text)
{
	size_t n = strlen(text);

	if (c->ssl != NULL)
		return SSL_write(c->ssl, text, (int)n) == (int)n ? 0 : -1;
	return write(c->fd, text, n) == (ssize_t)n ? 0 : -1;
}

static int
conn_fill(struct conn *c)
{
	size_t room = sizeof(c->buf) - 1 - c->len;
	ssize_t n;

	if (room == 0)
		return -1;
	if (c->ssl != NULL)
		n = SSL_read(c->ssl, c->buf + c->len, (int)room);
	else
		n = read(c->fd, c->buf + c->len, room);
	if (n <= 0)
		return -1;
	c->len += (size_t)n;
	c->buf[c->len] = '\0';
	return 0;
}

/*
 * The code of the next complete reply (its last line is "NNN "), or -1.
 * With has_starttls, *has_starttls says whether a line offered STARTTLS.
 */
static int
conn_reply(struct conn *c, int *has_starttls)
{
	for (;;) {
		char *line = c->buf, *end;

		while ((end = strstr(line, "\r\n")) != NULL) {
			int code = atoi(line);
			int last = end - line >= 4 && line[3] == ' ';

			if (has_starttls != NULL && strncmp(line + 4, "STARTTLS", 8) == 0)
				*has_starttls = 1;
			line = end + 2;
			if (last) {
				c->len -= (size_t)(line - c->buf);
				memmove(c->buf, line, c->len + 1);
				return code;
			}
		}
		if (conn_fill(c) == -1)
			return -1;
	}
}

/* Send text (if any) and expect a reply with this code. */
static int
step(struct conn *c, const char *text, int want)
{
	return (text == NULL || conn_write(c, text) == 0) && conn_reply(c, NULL) == want ? 0 : -1;
}

static int
connect_to(const struct options *o)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICHOST },
	    *res;
	struct timeval tv = { .tv_sec = IO_TIMEOUT_S };
	int fd, one = 1;

	if (getaddrinfo(o->host, o->port, &hints, &res) != 0)
		return -1;
	fd = socket(res->ai_family, res->ai_socktype, 0);
	if (fd != -1 && (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) == -1 ||
	    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) == -1 ||
	    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) == -1 ||
	    connect(fd, res->ai_addr, res->ai_addrlen) == -1)) {
		close(fd);
		fd = -1;
	}
	freeaddrinfo(res);
	return fd;
}

/* The plain part up to the handshake. */
static int
start_tls(struct conn *c, SSL_CTX *ctx, SSL_SESSION *sess, const char *ehlo)
{
	int starttls = 0;

	if (step(c, NULL, 220) == -1 || conn_write(c, ehlo) == -1 ||
	    conn_reply(c, &starttls) != 250 || !starttls || step(c, "STARTTLS\r\n", 220) == -1)
		return -1;
	if (c->len != 0 || (c->ssl = SSL_new(ctx)) == NULL)
		return -1;	/* bytes after 220 before the handshake: a broken server */
	SSL_set_fd(c->ssl, c->fd);
	if (sess != NULL)
		SSL_set_session(c->ssl, sess);
	return SSL_connect(c->ssl) == 1 ? 0 : -1;
}

/* One whole connection; the session to offer next time, if resuming. */
static int
one_connection(const struct options *o, SSL_CTX *ctx, SSL_SESSION **sess, int *resumed)
{
	char ehlo[300];
	struct conn c = { .fd = connect_to(o) };
	int res = -1;

	snprintf(ehlo, sizeof(ehlo), "EHLO %s\r\n", o->helo);
	if (c.fd == -1)
		return -1;
	if (start_tls(&c, ctx, *sess, ehlo) == 0 &&
	    step(&c, ehlo, 250) == 0 &&
	    step(&c, "MAIL FROM:<load@bench.example>\r\n", 250) == 0 &&
	    step(&c, "RCPT TO:<b@bench.example>\r\n", 250) == 0 &&
	    step(&c, "DATA\r\n", 354) == 0 &&
	    step(&c, o->message, 250) == 0 &&
	    step(&c, "QUIT\r\n", 221) == 0) {
		res = 0;
		*resumed = SSL_session_reused(c.ssl);
		if (o->resume) {
			SSL_SESSION_free(*sess);
			*sess = SSL_get1_session(c.ssl);	/* tickets came before 221 */
		}
	}
	if (c.ssl != NULL) {
		SSL_shutdown(c.ssl);
		SSL_free(c.ssl);
	}
	close(c.fd);
	return res;
}

/* A worker: n connections one after another; its tally on fd. */
static void
worker(const struct options *o, long n, int fd)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
	SSL_SESSION *sess = NULL;
	struct tally t = { 0, 0, 0 };

	if (ctx == NULL)
		_exit(1);
	SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
	if (o->tls12)
		SSL_CTX_set_max_proto_version(ctx, TLS1_2_VERSION);
	for (long i = 0; i < n; i++) {
		int resumed = 0;

		errno = 0;
		if (one_connection(o, ctx, &sess, &resumed) == 0) {
			t.ok++;
			t.resumed += resumed;
		} else {
			if (t.failed++ == 0)	/* the first reason only: a broken server repeats it */
				fprintf(stderr, "tlsload: a connection failed: %s\n",
				    ERR_peek_error() != 0 ? ERR_error_string(ERR_get_error(), NULL) :
				    errno != 0 ? strerror(errno) : "unexpected reply");
			ERR_clear_error();
		}
	}
	_exit(write(fd, &t, sizeof(t)) == (ssize_t)sizeof(t) ? 0 : 1);
}

/* A header, then lines of 76 x's up to about size bytes, then the dot. */
static char *
make_message(long size)
{
	static const char head[] = "Subject: tlsload\r\n\r\nhello\r\n";
	size_t lines = size > (long)sizeof(head) ? ((size_t)size - sizeof(head)) / 78 : 0;
	char *m = malloc(sizeof(head) + lines * 78 + 4), *p;

	if (m == NULL)
		return NULL;
	memcpy(m, head, sizeof(head) - 1);
	p = m + sizeof(head) - 1;
	for (size_t i = 0; i < lines; i++, p += 78) {
		memset(p, 'x', 76);
		memcpy(p + 76, "\r\n", 2);
	}
	memcpy(p, ".\r\n", 4);	/* with the NUL */
	return m;
}

static int
parse(struct options *o, int argc, char **argv)
{
	int ch;

	*o = (struct options){ .n = 100, .c = 1, .helo = "client.bench.example" };
	while ((ch = getopt(argc, argv, "n:c:r2s:h:")) != -1) {
		switch (ch) {
		case 'n': o->n = strtol(optarg, NULL, 10); break;
		case 's': o->size = strtol(optarg, NULL, 10); break;
		case 'c': o->c = strtol(optarg, NULL, 10); break;
		case 'r': o->resume = 1; break;
		case '2': o->tls12 = 1; break;
		case 'h': o->helo = optarg; break;
		default: return -1;
		}
	}
	if (argc - optind != 2 || o->n < 1 || o->c < 1 || o->c > WORKERS_MAX || o->c > o->n ||
	    strlen(o->helo) > 255 || o->size < 0 || o->size > SIZE_MAX_BYTES ||
	    (o->message = make_message(o->size)) == NULL)
		return -1;
	o->host = argv[optind];
	o->port = argv[optind + 1];
	return 0;
}

int
main(int argc, char **argv)
{
	struct options o;
	struct tally all = { 0, 0, 0 };
	int p[2], status;
	long long start, ns;

	if (parse(&o, argc, argv) == -1) {
		fprintf(stderr, "usage: tlsload [-n N] [-c C] [-r] [-2] [-s SIZE] [-h HELO] HOST PORT\n");
		return 2;
	}
	if (pipe(p) == -1)
		return 1;
	start = now_ns();
	for (long w = 0; w < o.c; w++) {
		pid_t pid = fork();

		if (pid == -1)
			return 1;
		if (pid == 0)
			worker(&o, o.n / o.c + (w < o.n % o.c), p[1]);
	}
	close(p[1]);
	for (long w = 0; w < o.c; w++) {
		struct tally t;

		if (read(p[0], &t, sizeof(t)) != (ssize_t)sizeof(t))
			break;
		all.ok += t.ok;
		all.resumed += t.resumed;
		all.failed += t.failed;
	}
	while (wait(&status) > 0)
		;
	ns = now_ns() - start;
	printf("%ld connections (%ld at once) in %.3f s: %.1f connections/s; "
	    "%ld resumed, %ld failed\n", o.n, o.c, ns / 1e9, all.ok / (ns / 1e9),
	    all.resumed, all.failed);
	return all.failed == 0 && all.ok == o.n ? 0 : 1;
}
