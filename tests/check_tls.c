/*
 * check_tls.c: the TLS layer of STARTTLS. Each server runs tls.c in a
 * child process of its own over a socketpair, so a ticket that resumes in
 * a second server was opened by another process; the client is this
 * process, with OpenSSL linked, verifying against a throw-away CA made by
 * tests/make-test-ca. Every server reports what it saw through a pipe.
 */
#define _GNU_SOURCE	/* ppoll */
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "harness.h"
#include "tls.h"
#include "clock.h"

#define NAME		"mx.test"
#define BIG		(1 << 20)	/* more than a socketpair holds: writes must wait */
#define SAFETY_MS	20000		/* a hung server fails the test instead of hanging it */

static char ca_dir[64];		/* the CA, made once for the whole run */
static char work[64];		/* per test: key files, ticket keys */

/* What a server child saw, written to the pipe once at its end. */
struct report {
	int	accepted;		/* tls_accept returned a struct tls */
	enum tls_result handshake;
	int	resumed;
	int	end;			/* the last tls_read: 0 (EOF) or -1 */
	int	end_errno;
	char	version[16], cipher[64];
	char	reason[256];		/* tls_accept's err, or tls_error() */
};

struct server {
	pid_t	pid;
	int	fd;			/* the client's end of the socketpair */
	int	report_fd;
};

static const char *
in(const char *dir, const char *name)
{
	static char buf[8][256];
	static unsigned next;
	char *p = buf[next++ % 8];

	snprintf(p, 256, "%s/%s", dir, name);
	return p;
}

static void
make_ca(void)
{
	char cmd[256];

	snprintf(ca_dir, sizeof(ca_dir), "/tmp/smtpd-tls-ca.XXXXXX");
	if (mkdtemp(ca_dir) == NULL)
		abort();
	snprintf(cmd, sizeof(cmd), "tests/make-test-ca %s %s", ca_dir, NAME);
	if (system(cmd) != 0)
		abort();
}

static void
remove_dir(const char *dir)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	if (system(cmd) != 0)
		abort();
}

static void
remove_ca(void)
{
	remove_dir(ca_dir);
}

static void
setup(void)
{
	signal(SIGPIPE, SIG_IGN);
	unsetenv("CREDENTIALS_DIRECTORY");
	snprintf(work, sizeof(work), "/tmp/smtpd-tls.XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(work));
}

static void
teardown(void)
{
	remove_dir(work);
}

/* The CA's files of one kind; one configuration at a time. */
static struct tls_config
config(const char *kind, const char *ticket_keys)
{
	static char cert[128], key[128];
	struct tls_config cfg = { cert, key, ticket_keys };

	snprintf(cert, sizeof(cert), "%s/%s.pem", ca_dir, kind);
	snprintf(key, sizeof(key), "%s/%s.key", ca_dir, kind);
	return cfg;
}

/* Wait for what tls_read or tls_write asked for; 0, or -1 after SAFETY_MS. */
static int
server_wait(struct tls *t, long long deadline)
{
	struct pollfd pfd = tls_pollfd(t);
	long long left = deadline - now_ms();

	return left > 0 && poll(&pfd, 1, (int)left) == 1 ? 0 : -1;
}

static int
server_write(struct tls *t, const char *p, size_t n, long long deadline)
{
	while (n > 0) {
		ssize_t w = tls_write(t, p, n);

		if (w == -1 && (errno != EAGAIN || server_wait(t, deadline) == -1))
			return -1;
		if (w > 0) {
			p += w;
			n -= (size_t)w;
		}
	}
	return 0;
}

/*
 * Answer lines until the client goes: "BIG" gets BIG bytes of 'x' and
 * CRLF, any other line "echo " and itself.
 */
static void
serve_lines(struct tls *t, struct report *rep)
{
	long long deadline = now_ms() + SAFETY_MS;
	char line[256], out[300];
	size_t len = 0;
	ssize_t n;

	for (;;) {
		n = tls_read(t, line + len, sizeof(line) - 1 - len);
		if (n == -1 && errno == EAGAIN) {
			if (server_wait(t, deadline) == -1)
				break;
			continue;
		}
		rep->end = n > 0 ? 0 : (int)n;
		rep->end_errno = n == -1 ? errno : 0;
		if (n <= 0)
			break;
		len += (size_t)n;
		line[len] = '\0';
		if (strchr(line, '\n') == NULL)
			continue;
		if (strcmp(line, "BIG\r\n") == 0) {
			char *big = malloc(BIG + 2);

			memset(big, 'x', BIG);
			memcpy(big + BIG, "\r\n", 2);
			server_write(t, big, BIG + 2, deadline);
			free(big);
		} else {
			snprintf(out, sizeof(out), "echo %s", line);
			server_write(t, out, strlen(out), deadline);
		}
		len = 0;
	}
	if (rep->end == -1)
		snprintf(rep->reason, sizeof(rep->reason), "%s", tls_error(t));
}

/* The child: one TLS server on fd (and a dup of it for writing, if split). */
static void
serve(const struct tls_config *cfg, int fd, bool split, int timeout_ms, int report_fd)
{
	struct report rep;
	struct tls *t;

	memset(&rep, 0, sizeof(rep));
	t = tls_accept(cfg, fd, split ? dup(fd) : fd, rep.reason, sizeof(rep.reason));
	if (t != NULL) {
		rep.accepted = 1;
		rep.handshake = tls_handshake(t, now_ms() + timeout_ms, NULL, NULL);
		if (rep.handshake == TLS_OK) {
			rep.resumed = tls_resumed(t);
			snprintf(rep.version, sizeof(rep.version), "%s", tls_version(t));
			snprintf(rep.cipher, sizeof(rep.cipher), "%s", tls_cipher(t));
			serve_lines(t, &rep);
		} else {
			snprintf(rep.reason, sizeof(rep.reason), "%s", tls_error(t));
		}
		tls_close(t);
	}
	_exit(write(report_fd, &rep, sizeof(rep)) == (ssize_t)sizeof(rep) ? 0 : 1);
}

static void
server_start(struct server *s, const struct tls_config *cfg, bool split, int timeout_ms)
{
	int sv[2], p[2];

	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	ck_assert_int_eq(pipe(p), 0);
	ck_assert_int_ne(s->pid = fork(), -1);
	if (s->pid == 0) {
		close(sv[0]);
		close(p[0]);
		serve(cfg, sv[1], split, timeout_ms, p[1]);
	}
	close(sv[1]);
	close(p[1]);
	s->fd = sv[0];
	s->report_fd = p[0];
}

/* The server's report, once it has exited; closes the client's end. */
static struct report
server_finish(struct server *s)
{
	struct report rep;
	int status;

	ck_assert_int_eq(read(s->report_fd, &rep, sizeof(rep)), sizeof(rep));
	ck_assert_int_eq(waitpid(s->pid, &status, 0), s->pid);
	ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	close(s->report_fd);
	close(s->fd);
	return rep;
}

static SSL_CTX *
client_context(int max_version)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());

	ck_assert_ptr_nonnull(ctx);
	ck_assert_int_eq(SSL_CTX_load_verify_locations(ctx, in(ca_dir, "ca.pem"), NULL), 1);
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	if (max_version != 0)
		SSL_CTX_set_max_proto_version(ctx, max_version);
	return ctx;
}

/* A verified TLS connection to the server, resuming sess if given. */
static SSL *
client_connect(SSL_CTX *ctx, int fd, SSL_SESSION *sess)
{
	SSL *ssl = SSL_new(ctx);

	ck_assert_ptr_nonnull(ssl);
	SSL_set_fd(ssl, fd);
	SSL_set_tlsext_host_name(ssl, NAME);
	SSL_set1_host(ssl, NAME);
	if (sess != NULL)
		SSL_set_session(ssl, sess);
	ck_assert_msg(SSL_connect(ssl) == 1, "client handshake: %s",
	    ERR_error_string(ERR_get_error(), NULL));
	return ssl;
}

static void
client_send(SSL *ssl, const char *text)
{
	ck_assert_int_eq(SSL_write(ssl, text, (int)strlen(text)), (int)strlen(text));
}

/* Read exactly n bytes into buf (NUL-terminated). */
static void
client_read(SSL *ssl, char *buf, size_t n)
{
	size_t got = 0;

	while (got < n) {
		int r = SSL_read(ssl, buf + got, (int)(n - got));

		ck_assert_msg(r > 0, "client read: SSL error %d", SSL_get_error(ssl, r));
		got += (size_t)r;
	}
	buf[n] = '\0';
}

/* One line echoed: after it, TLS 1.3 tickets have been read too. */
static void
client_echo(SSL *ssl)
{
	char buf[32];

	client_send(ssl, "hello\r\n");
	client_read(ssl, buf, strlen("echo hello\r\n"));
	ck_assert_str_eq(buf, "echo hello\r\n");
}

/* close_notify both ways: ours, then the server's in answer. */
static void
client_close(SSL *ssl)
{
	char c;

	ck_assert_int_ge(SSL_shutdown(ssl), 0);
	ck_assert_int_eq(SSL_read(ssl, &c, 1), 0);
	ck_assert_int_eq(SSL_get_error(ssl, 0), SSL_ERROR_ZERO_RETURN);
	SSL_free(ssl);
}

static bool
safe_text(const char *s)
{
	return s[0] != '\0' && strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	    "0123456789.-_") == strlen(s);
}

/* The peer's public key type: EVP_PKEY_EC or EVP_PKEY_RSA. */
static int
peer_key_type(SSL *ssl)
{
	X509 *cert = SSL_get1_peer_certificate(ssl);
	int type;

	ck_assert_ptr_nonnull(cert);
	type = EVP_PKEY_get_base_id(X509_get0_pubkey(cert));
	X509_free(cert);
	return type;
}

/* ECDSA on one socket, RSA on two descriptors (inetd's stdin and stdout). */
START_TEST(handshake_data_both_ways_and_close_notify)
{
	const char *kind = _i == 0 ? "ecdsa" : "rsa";
	struct tls_config cfg = config(kind, NULL);
	SSL_CTX *ctx = client_context(0);
	struct server s;
	struct report rep;
	char *big = malloc(BIG + 3);
	SSL *ssl;

	server_start(&s, &cfg, _i == 1, SAFETY_MS);
	ssl = client_connect(ctx, s.fd, NULL);
	ck_assert_int_eq(peer_key_type(ssl), _i == 0 ? EVP_PKEY_EC : EVP_PKEY_RSA);
	client_echo(ssl);
	client_send(ssl, "BIG\r\n");
	client_read(ssl, big, BIG + 2);
	ck_assert(big[0] == 'x' && big[BIG - 1] == 'x' && strcmp(big + BIG, "\r\n") == 0);
	client_close(ssl);
	rep = server_finish(&s);
	ck_assert_int_eq(rep.handshake, TLS_OK);
	ck_assert_str_eq(rep.version, "TLSv1.3");
	ck_assert_msg(safe_text(rep.cipher), "cipher %s", rep.cipher);
	ck_assert_int_eq(rep.end, 0);
	ck_assert_int_eq(rep.resumed, 0);
	free(big);
	SSL_CTX_free(ctx);
}
END_TEST

START_TEST(tls_1_2_is_served)
{
	struct tls_config cfg = config("ecdsa", NULL);
	SSL_CTX *ctx = client_context(TLS1_2_VERSION);
	struct server s;
	struct report rep;
	SSL *ssl;

	server_start(&s, &cfg, false, SAFETY_MS);
	ssl = client_connect(ctx, s.fd, NULL);
	client_echo(ssl);
	client_close(ssl);
	rep = server_finish(&s);
	ck_assert_int_eq(rep.handshake, TLS_OK);
	ck_assert_str_eq(rep.version, "TLSv1.2");
	ck_assert_msg(safe_text(rep.cipher), "cipher %s", rep.cipher);
	SSL_CTX_free(ctx);
}
END_TEST

START_TEST(tls_1_1_is_refused)
{
	struct tls_config cfg = config("ecdsa", NULL);
	SSL_CTX *ctx = client_context(TLS1_1_VERSION);
	struct server s;
	struct report rep;
	SSL *ssl;

	/* Security level 0, or the client itself would not offer TLS 1.1. */
	SSL_CTX_set_cipher_list(ctx, "DEFAULT@SECLEVEL=0");
	server_start(&s, &cfg, false, SAFETY_MS);
	ssl = SSL_new(ctx);
	SSL_set_fd(ssl, s.fd);
	ck_assert_int_ne(SSL_connect(ssl), 1);
	SSL_free(ssl);
	rep = server_finish(&s);
	ck_assert_int_eq(rep.handshake, TLS_FAILED);
	ck_assert_msg(strstr(rep.reason, "protocol") != NULL, "reason %s", rep.reason);
	SSL_CTX_free(ctx);
}
END_TEST

START_TEST(check_pair_accepts_matches_and_refuses_mismatches)
{
	char err[256] = "";

	ck_assert_int_eq(tls_check_pair(in(ca_dir, "ecdsa.pem"), in(ca_dir, "ecdsa.key"),
	    err, sizeof(err)), 0);
	ck_assert_int_eq(tls_check_pair(in(ca_dir, "rsa.pem"), in(ca_dir, "rsa.key"),
	    err, sizeof(err)), 0);
	ck_assert_int_eq(tls_check_pair(in(ca_dir, "ecdsa.pem"), in(ca_dir, "rsa.key"),
	    err, sizeof(err)), -1);
	ck_assert_msg(strstr(err, "does not match") != NULL, "reason %s", err);
	ck_assert_int_eq(tls_check_pair(in(ca_dir, "rsa.pem"), in(ca_dir, "ecdsa.key"),
	    err, sizeof(err)), -1);
	ck_assert_msg(strstr(err, "does not match") != NULL, "reason %s", err);
	/* A private key is not a certificate. */
	ck_assert_int_eq(tls_check_pair(in(ca_dir, "rsa.key"), in(ca_dir, "rsa.key"),
	    err, sizeof(err)), -1);
	ck_assert_msg(strstr(err, "certificate") != NULL, "reason %s", err);
}
END_TEST

/* 454 4.7.0 follows: the connection must be as it was, still blocking. */
START_TEST(missing_key_gives_no_tls_and_a_reason)
{
	struct tls_config cfg = config("ecdsa", NULL);
	char err[256] = "";
	int sv[2];

	cfg.key_file = in(work, "gone.key");
	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	ck_assert_ptr_null(tls_accept(&cfg, sv[0], sv[0], err, sizeof(err)));
	ck_assert_msg(strstr(err, in(work, "gone.key")) != NULL, "reason %s", err);
	ck_assert_int_eq(fcntl(sv[0], F_GETFL) & O_NONBLOCK, 0);
	cfg.key_file = "tls-key";	/* a credential, but no $CREDENTIALS_DIRECTORY */
	ck_assert_ptr_null(tls_accept(&cfg, sv[0], sv[0], err, sizeof(err)));
	ck_assert_msg(strstr(err, "CREDENTIALS_DIRECTORY") != NULL, "reason %s", err);
	close(sv[0]);
	close(sv[1]);
}
END_TEST

START_TEST(silent_client_times_out_at_the_deadline)
{
	struct tls_config cfg = config("ecdsa", NULL);
	struct server s;
	struct report rep;

	server_start(&s, &cfg, false, 100);
	rep = server_finish(&s);	/* the client never speaks */
	ck_assert_int_eq(rep.accepted, 1);
	ck_assert_int_eq(rep.handshake, TLS_TIMEOUT);
}
END_TEST

static volatile sig_atomic_t stop;

static void
on_usr1(int sig)
{
	(void)sig;
	stop = 1;
}

/* A stop signal, blocked but for the wait as in the session, ends the handshake. */
START_TEST(stop_signal_ends_the_handshake)
{
	struct tls_config cfg = config("ecdsa", NULL);
	sigset_t block, wait_mask;
	char err[256];
	struct tls *t;
	int sv[2];

	signal(SIGUSR1, on_usr1);
	sigemptyset(&block);
	sigaddset(&block, SIGUSR1);
	sigprocmask(SIG_BLOCK, &block, &wait_mask);
	sigdelset(&wait_mask, SIGUSR1);
	raise(SIGUSR1);		/* pending until ppoll lets it in */
	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	ck_assert_ptr_nonnull(t = tls_accept(&cfg, sv[0], sv[0], err, sizeof(err)));
	ck_assert_int_eq(stop, 0);
	ck_assert_int_eq(tls_handshake(t, now_ms() + SAFETY_MS, &stop, &wait_mask), TLS_STOPPED);
	ck_assert_int_eq(stop, 1);
	tls_close(t);
	close(sv[0]);
	close(sv[1]);
}
END_TEST

/* A ClientHello cut short by the client closing: FAILED, with OpenSSL's reason. */
START_TEST(client_closing_mid_handshake_fails_it)
{
	static const char hello_start[] = "\x16\x03\x01\x00\xc8\x01\x00\x00\xc4\x03\x03";
	struct tls_config cfg = config("ecdsa", NULL);
	struct server s;
	struct report rep;

	server_start(&s, &cfg, false, SAFETY_MS);
	ck_assert_int_eq(write(s.fd, hello_start, sizeof(hello_start) - 1),
	    sizeof(hello_start) - 1);
	shutdown(s.fd, SHUT_WR);
	rep = server_finish(&s);
	ck_assert_int_eq(rep.handshake, TLS_FAILED);
	ck_assert_msg(strstr(rep.reason, "handshake: ") == rep.reason && strlen(rep.reason) > 12,
	    "reason %s", rep.reason);
}
END_TEST

START_TEST(plain_text_instead_of_a_hello_fails_it)
{
	struct tls_config cfg = config("ecdsa", NULL);
	struct server s;
	struct report rep;

	server_start(&s, &cfg, false, SAFETY_MS);
	ck_assert_int_eq(write(s.fd, "RSET\r\n", 6), 6);
	rep = server_finish(&s);
	ck_assert_int_eq(rep.handshake, TLS_FAILED);
}
END_TEST

/*
 * How a TLS connection ends, seen by tls_read: 0 at the client's EOF
 * between records; -1 EIO on a record that does not decrypt or is cut short.
 */
START_TEST(ends_eof_bad_record_truncated_record)
{
	static const char *raw[] = {
		NULL,					/* no more bytes: plain EOF */
		"\x17\x03\x03\x00\x20" "0123456789abcdef0123456789abcdef",	/* bad MAC */
		"\x17\x03\x03",				/* a record header cut short */
	};
	struct tls_config cfg = config("ecdsa", NULL);
	SSL_CTX *ctx = client_context(0);
	struct server s;
	struct report rep;
	SSL *ssl;

	server_start(&s, &cfg, false, SAFETY_MS);
	ssl = client_connect(ctx, s.fd, NULL);
	client_echo(ssl);
	if (raw[_i] != NULL)
		ck_assert_int_eq(write(s.fd, raw[_i], strlen(raw[_i])), (ssize_t)strlen(raw[_i]));
	shutdown(s.fd, SHUT_WR);
	rep = server_finish(&s);
	SSL_free(ssl);
	ck_assert_int_eq(rep.end, _i == 0 ? 0 : -1);
	ck_assert_int_eq(rep.end_errno, _i == 0 ? 0 : EIO);
	if (_i != 0)
		ck_assert_msg(strncmp(rep.reason, "read: ", 6) == 0, "reason %s", rep.reason);
	SSL_CTX_free(ctx);
}
END_TEST

/* One connection with a fresh server process; the session it ends with. */
static SSL_SESSION *
connect_once(const struct tls_config *cfg, SSL_CTX *ctx, SSL_SESSION *sess, struct report *rep,
    int *key_type)
{
	SSL_SESSION *got;
	struct server s;
	int reused;
	SSL *ssl;

	server_start(&s, cfg, false, SAFETY_MS);
	ssl = client_connect(ctx, s.fd, sess);
	if (key_type != NULL)
		*key_type = peer_key_type(ssl);
	client_echo(ssl);
	reused = SSL_session_reused(ssl);
	got = SSL_get1_session(ssl);
	client_close(ssl);
	*rep = server_finish(&s);
	ck_assert_int_eq(rep->handshake, TLS_OK);
	ck_assert_int_eq(rep->resumed, reused);	/* both sides agree */
	return got;
}

static int tickets_received;

static int
count_ticket(SSL *ssl, SSL_SESSION *sess)
{
	(void)ssl, (void)sess;
	tickets_received++;
	return 0;	/* not kept: SSL_get1_session gives the one we use */
}

START_TEST(ticket_resumes_in_another_process_until_three_rotations)
{
	char err[256];
	const char *keys = in(work, "ticket-keys");
	struct tls_config cfg = config("ecdsa", keys);
	SSL_CTX *ctx = client_context(_i == 0 ? 0 : TLS1_2_VERSION);
	SSL_SESSION *first, *later;
	struct report rep;

	ck_assert_int_eq(tls_rotate_ticket_keys(keys, err, sizeof(err)), 0);
	first = connect_once(&cfg, ctx, NULL, &rep, NULL);
	ck_assert_int_eq(rep.resumed, 0);
	ck_assert_int_eq(SSL_SESSION_is_resumable(first), 1);
	/* Issued under the newest key; then it is the second, then the third. */
	for (int rotations = 0; rotations < 3; rotations++) {
		later = connect_once(&cfg, ctx, first, &rep, NULL);
		ck_assert_msg(rep.resumed == 1, "not resumed after %d rotations", rotations);
		SSL_SESSION_free(later);
		ck_assert_int_eq(tls_rotate_ticket_keys(keys, err, sizeof(err)), 0);
	}
	later = connect_once(&cfg, ctx, first, &rep, NULL);
	ck_assert_msg(rep.resumed == 0, "resumed after three rotations");
	SSL_SESSION_free(later);
	SSL_SESSION_free(first);
	SSL_CTX_free(ctx);
}
END_TEST

/* TLS 1.3: one ticket per handshake, not OpenSSL's two: one is all an MTA keeps. */
START_TEST(one_ticket_per_handshake)
{
	char err[256];
	const char *keys = in(work, "ticket-keys");
	struct tls_config cfg = config("ecdsa", keys);
	SSL_CTX *ctx = client_context(0);
	struct report rep;

	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL);
	SSL_CTX_sess_set_new_cb(ctx, count_ticket);
	ck_assert_int_eq(tls_rotate_ticket_keys(keys, err, sizeof(err)), 0);
	SSL_SESSION_free(connect_once(&cfg, ctx, NULL, &rep, NULL));
	ck_assert_int_eq(tickets_received, 1);
	SSL_CTX_free(ctx);
}
END_TEST

/*
 * Without a key file (or with a bad one), no ticket: none could come back.
 * Bit 0 of _i: a bad file; bit 1: TLS 1.2.
 */
START_TEST(no_ticket_without_a_key_file)
{
	const char *bad = in(work, "not-keys");
	struct tls_config cfg = config("ecdsa", (_i & 1) == 0 ? NULL : bad);
	SSL_CTX *ctx = client_context((_i & 2) == 0 ? 0 : TLS1_2_VERSION);
	SSL_SESSION *sess;
	struct report rep;
	FILE *f = fopen(bad, "w");

	ck_assert_ptr_nonnull(f);
	fputs("not ticket keys\n", f);
	fclose(f);
	sess = connect_once(&cfg, ctx, NULL, &rep, NULL);
	ck_assert_int_eq(SSL_SESSION_is_resumable(sess), 0);
	if ((_i & 1) != 0)
		ck_assert_msg(strstr(rep.reason, "session tickets off") != NULL, "%s", rep.reason);
	SSL_SESSION_free(sess);
	SSL_CTX_free(ctx);
}
END_TEST

static void
copy_file(const char *from, const char *to)
{
	char cmd[512];

	snprintf(cmd, sizeof(cmd), "cp %s %s.new && mv %s.new %s", from, to, to, to);
	ck_assert_int_eq(system(cmd), 0);
}

/* Each connection reads the files; named as systemd credentials here. */
START_TEST(renewed_certificate_serves_from_the_next_connection)
{
	struct tls_config cfg = { "tls-cert", "tls-key", NULL };
	SSL_CTX *ctx = client_context(0);
	struct report rep;
	int type;

	setenv("CREDENTIALS_DIRECTORY", work, 1);
	copy_file(in(ca_dir, "ecdsa.pem"), in(work, "tls-cert"));
	copy_file(in(ca_dir, "ecdsa.key"), in(work, "tls-key"));
	SSL_SESSION_free(connect_once(&cfg, ctx, NULL, &rep, &type));
	ck_assert_int_eq(type, EVP_PKEY_EC);
	copy_file(in(ca_dir, "rsa.pem"), in(work, "tls-cert"));
	copy_file(in(ca_dir, "rsa.key"), in(work, "tls-key"));
	SSL_SESSION_free(connect_once(&cfg, ctx, NULL, &rep, &type));
	ck_assert_int_eq(type, EVP_PKEY_RSA);
	SSL_CTX_free(ctx);
}
END_TEST

/* A copy of the CA's cert of kind and of key_kind's key in work; cfg names them. */
static struct tls_config
pair_in_work(const char *kind, const char *key_kind, const char *ticket_keys)
{
	static char cert[128], key[128];
	struct tls_config cfg = { cert, key, ticket_keys };
	char from[128];

	snprintf(cert, sizeof(cert), "%s/cert.pem", work);
	snprintf(key, sizeof(key), "%s/key.pem", work);
	snprintf(from, sizeof(from), "%s/%s.pem", ca_dir, kind);
	copy_file(from, cert);
	snprintf(from, sizeof(from), "%s/%s.key", ca_dir, key_kind);
	copy_file(from, key);
	return cfg;
}

/*
 * The pair is parsed only when a full handshake needs it: a session
 * resumed from a ticket (TLS 1.3, then 1.2) takes neither file, so it
 * resumes even when the key no longer matches the certificate.
 */
START_TEST(resumed_session_parses_neither_file)
{
	char err[256], keys[128];
	struct tls_config cfg;
	SSL_CTX *ctx = client_context(_i == 0 ? 0 : TLS1_2_VERSION);
	SSL_SESSION *first, *later;
	struct report rep;

	snprintf(keys, sizeof(keys), "%s/ticket-keys", work);
	ck_assert_int_eq(tls_rotate_ticket_keys(keys, err, sizeof(err)), 0);
	cfg = pair_in_work("ecdsa", "ecdsa", keys);
	first = connect_once(&cfg, ctx, NULL, &rep, NULL);
	ck_assert_int_eq(rep.resumed, 0);
	cfg = pair_in_work("ecdsa", "rsa", keys);
	later = connect_once(&cfg, ctx, first, &rep, NULL);
	ck_assert_int_eq(rep.resumed, 1);
	ck_assert_str_eq(rep.reason, "");
	SSL_SESSION_free(later);
	SSL_SESSION_free(first);
	SSL_CTX_free(ctx);
}
END_TEST

/*
 * Every way a key file may hold the key serves a full handshake, whether
 * smtpd decodes it as the certificate's type or the whole way: traditional
 * EC and RSA blocks, EC PARAMETERS first (openssl ecparam -genkey), the
 * certificate and the key in one file, a public key block first.
 */
START_TEST(key_formats_serve_a_full_handshake)
{
	static const char *const make[] = {	/* each writes the new key file on stdout */
		"openssl pkey -in $K -traditional",
		"openssl ecparam -name prime256v1 && openssl pkey -in $K -traditional",
		"cat $C $K",
		"openssl pkey -in $K -traditional",
		"openssl pkey -in $K -pubout && cat $K",
	};
	const char *kind = _i == 3 ? "rsa" : "ecdsa";
	struct tls_config cfg = pair_in_work(kind, kind, NULL);
	SSL_CTX *ctx = client_context(0);
	char cmd[512];
	struct report rep;
	int type;

	ck_assert_int_lt(snprintf(cmd, sizeof(cmd), "K=%s C=%s; (%s) >$K.new && mv $K.new $K",
	    cfg.key_file, cfg.cert_file, make[_i]), (int)sizeof(cmd));
	ck_assert_int_eq(system(cmd), 0);
	SSL_SESSION_free(connect_once(&cfg, ctx, NULL, &rep, &type));
	ck_assert_int_eq(type, _i == 3 ? EVP_PKEY_RSA : EVP_PKEY_EC);
	SSL_CTX_free(ctx);
}
END_TEST

/*
 * Files that read as PEM but hold a key that is not the certificate's:
 * tls_accept takes them (the 220 goes out) and the full handshake fails,
 * naming the key, with no session for the client.
 */
START_TEST(mismatched_pair_fails_the_full_handshake)
{
	struct tls_config cfg = pair_in_work("rsa", "ecdsa", NULL);
	SSL_CTX *ctx = client_context(_i == 0 ? 0 : TLS1_2_VERSION);
	struct server s;
	struct report rep;
	SSL *ssl;

	server_start(&s, &cfg, false, SAFETY_MS);
	ssl = SSL_new(ctx);
	SSL_set_fd(ssl, s.fd);
	ck_assert_int_ne(SSL_connect(ssl), 1);
	SSL_free(ssl);
	rep = server_finish(&s);
	ck_assert_int_eq(rep.accepted, 1);
	ck_assert_int_eq(rep.handshake, TLS_FAILED);
	ck_assert_msg(strstr(rep.reason, "key.pem does not match the certificate") != NULL,
	    "reason %s", rep.reason);
	SSL_CTX_free(ctx);
}
END_TEST

/*
 * What tls_accept checks before the 220 without parsing: no certificate
 * block, no private key block, an encrypted key (PKCS #8, and an older
 * block with its Proc-Type header), a block that is not base64. Each gives NULL (454 follows) and leaves the socket as it was.
 */
START_TEST(unusable_pem_gives_no_tls)
{
	static const char *const want[] = {
		"no PEM certificate", "no PEM private key", "encrypted", "certificate ", "encrypted",
	};
	struct tls_config cfg = pair_in_work("ecdsa", "ecdsa", NULL);
	char cmd[512], err[256] = "";
	FILE *f;
	int sv[2];

	if (_i == 0)
		copy_file(cfg.key_file, cfg.cert_file);
	else if (_i == 1)
		copy_file(cfg.cert_file, cfg.key_file);
	else if (_i == 2 || _i == 4) {
		snprintf(cmd, sizeof(cmd), "openssl pkey -in %s %s -aes256 -passout pass:x -out %s.enc"
		    " && mv %s.enc %s", cfg.key_file, _i == 4 ? "-traditional" : "", cfg.key_file,
		    cfg.key_file, cfg.key_file);
		ck_assert_int_eq(system(cmd), 0);
	} else {
		ck_assert_ptr_nonnull(f = fopen(cfg.cert_file, "w"));
		fputs("-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n", f);
		fclose(f);
	}
	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	ck_assert_ptr_null(tls_accept(&cfg, sv[0], sv[0], err, sizeof(err)));
	ck_assert_msg(strstr(err, want[_i]) != NULL, "case %d: reason %s", _i, err);
	ck_assert_int_eq(fcntl(sv[0], F_GETFL) & O_NONBLOCK, 0);
	close(sv[0]);
	close(sv[1]);
}
END_TEST

START_TEST(file_names_absolute_or_credentials)
{
	char path[64], err[256];

	ck_assert_int_eq(tls_resolve_file("/etc/k.pem", path, sizeof(path), err, sizeof(err)), 0);
	ck_assert_str_eq(path, "/etc/k.pem");
	ck_assert_int_eq(tls_resolve_file("tls-key", path, sizeof(path), err, sizeof(err)), -1);
	setenv("CREDENTIALS_DIRECTORY", "/run/credentials/smtpd@1.service", 1);
	ck_assert_int_eq(tls_resolve_file("tls-key", path, sizeof(path), err, sizeof(err)), 0);
	ck_assert_str_eq(path, "/run/credentials/smtpd@1.service/tls-key");
	ck_assert_int_eq(tls_resolve_file("etc/k.pem", path, sizeof(path), err, sizeof(err)), -1);
	ck_assert_int_eq(tls_resolve_file("..", path, sizeof(path), err, sizeof(err)), -1);
	ck_assert_int_eq(tls_resolve_file("", path, sizeof(path), err, sizeof(err)), -1);
	ck_assert_int_eq(tls_resolve_file("a-rather-long-credential-name-that-does-not-fit",
	    path, sizeof(path), err, sizeof(err)), -1);
}
END_TEST

/*
 * On TCP, once the handshake starts: non-blocking, and Nagle off (the
 * ticket would hold up the next reply). A deadline already past: TIMEOUT.
 */
START_TEST(tcp_connection_becomes_nonblocking_without_nagle)
{
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(sin);
	struct tls_config cfg = config("ecdsa", NULL);
	int lfd, cfd, afd, nodelay = 0;
	char err[256];
	struct tls *t;

	ck_assert_int_ne(lfd = socket(AF_INET, SOCK_STREAM, 0), -1);
	ck_assert_int_eq(bind(lfd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	ck_assert_int_eq(listen(lfd, 1), 0);
	ck_assert_int_eq(getsockname(lfd, (struct sockaddr *)&sin, &len), 0);
	ck_assert_int_ne(cfd = socket(AF_INET, SOCK_STREAM, 0), -1);
	ck_assert_int_eq(connect(cfd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	ck_assert_int_ne(afd = accept(lfd, NULL, NULL), -1);
	ck_assert_ptr_nonnull(t = tls_accept(&cfg, afd, afd, err, sizeof(err)));
	ck_assert_int_eq(fcntl(afd, F_GETFL) & O_NONBLOCK, 0);	/* 220 still to be sent */
	ck_assert_int_eq(tls_handshake(t, now_ms(), NULL, NULL), TLS_TIMEOUT);
	len = sizeof(nodelay);
	ck_assert_int_eq(getsockopt(afd, IPPROTO_TCP, TCP_NODELAY, &nodelay, &len), 0);
	ck_assert_int_eq(nodelay, 1);
	ck_assert_int_ne(fcntl(afd, F_GETFL) & O_NONBLOCK, 0);
	tls_close(t);
	close(afd);
	close(cfd);
	close(lfd);
}
END_TEST

static size_t
read_file(const char *path, unsigned char *buf, size_t size)
{
	int fd = open(path, O_RDONLY);
	ssize_t n;

	ck_assert_int_ne(fd, -1);
	n = read(fd, buf, size);
	close(fd);
	ck_assert_int_ge(n, 0);
	return (size_t)n;
}

static int
entries(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	int n = 0;

	while ((e = readdir(d)) != NULL)
		n += e->d_name[0] != '.';
	closedir(d);
	return n;
}

/* smtpd -T: created 0600; each rotation puts a new key first and keeps two. */
START_TEST(rotation_creates_shifts_and_keeps_owner)
{
	unsigned char before[512], after[512];
	const char *keys = in(work, "ticket-keys");
	char err[256];
	struct stat st;

	ck_assert_int_eq(tls_rotate_ticket_keys(keys, err, sizeof(err)), 0);
	ck_assert_int_eq(stat(keys, &st), 0);
	ck_assert_int_eq(st.st_mode & 07777, 0600);
	ck_assert_int_eq(read_file(keys, before, sizeof(before)), TLS_TICKET_FILE_SIZE);
	if (geteuid() == 0)
		ck_assert_int_eq(chown(keys, 4321, 8765), 0);
	ck_assert_int_eq(chmod(keys, 0640), 0);
	ck_assert_int_eq(tls_rotate_ticket_keys(keys, err, sizeof(err)), 0);
	ck_assert_int_eq(read_file(keys, after, sizeof(after)), TLS_TICKET_FILE_SIZE);
	ck_assert(memcmp(after, before, TLS_TICKET_KEY_SIZE) != 0);
	ck_assert(memcmp(after + TLS_TICKET_KEY_SIZE, before,
	    TLS_TICKET_FILE_SIZE - TLS_TICKET_KEY_SIZE) == 0);
	ck_assert_int_eq(stat(keys, &st), 0);
	ck_assert_int_eq(st.st_mode & 07777, 0600);
	if (geteuid() == 0)
		ck_assert(st.st_uid == 4321 && st.st_gid == 8765);
	ck_assert_int_eq(entries(work), 1);	/* no temporary file left */
}
END_TEST

START_TEST(rotation_fills_an_empty_file_and_leaves_a_foreign_one)
{
	const char *keys = in(work, "ticket-keys"), *other = in(work, "other");
	unsigned char buf[512];
	char err[256];
	struct stat st;
	int fd;

	ck_assert_int_ne(fd = open(keys, O_CREAT | O_WRONLY, 0644), -1);
	close(fd);
	if (geteuid() == 0)
		ck_assert_int_eq(chown(keys, 4321, 8765), 0);
	ck_assert_int_eq(tls_rotate_ticket_keys(keys, err, sizeof(err)), 0);
	ck_assert_int_eq(read_file(keys, buf, sizeof(buf)), TLS_TICKET_FILE_SIZE);
	ck_assert_int_eq(stat(keys, &st), 0);
	ck_assert_int_eq(st.st_mode & 07777, 0600);
	if (geteuid() == 0)
		ck_assert(st.st_uid == 4321 && st.st_gid == 8765);
	copy_file(in(ca_dir, "ecdsa.key"), other);
	ck_assert_int_eq(tls_rotate_ticket_keys(other, err, sizeof(err)), -1);
	ck_assert_msg(strstr(err, "not a ticket key file") != NULL, "reason %s", err);
	ck_assert_int_eq(read_file(other, buf, sizeof(buf)),
	    read_file(in(ca_dir, "ecdsa.key"), buf + 256, 256));
	ck_assert_int_eq(entries(work), 2);
}
END_TEST

static Suite *
tls_suite(void)
{
	Suite *s = suite_create("tls");
	TCase *tc = tcase_create("tls");

	tcase_set_timeout(tc, 60);
	tcase_add_unchecked_fixture(tc, make_ca, remove_ca);
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_loop_test(tc, handshake_data_both_ways_and_close_notify, 0, 2);
	tcase_add_test(tc, tls_1_2_is_served);
	tcase_add_test(tc, tls_1_1_is_refused);
	tcase_add_test(tc, check_pair_accepts_matches_and_refuses_mismatches);
	tcase_add_test(tc, missing_key_gives_no_tls_and_a_reason);
	tcase_add_test(tc, silent_client_times_out_at_the_deadline);
	tcase_add_test(tc, stop_signal_ends_the_handshake);
	tcase_add_test(tc, client_closing_mid_handshake_fails_it);
	tcase_add_test(tc, plain_text_instead_of_a_hello_fails_it);
	tcase_add_loop_test(tc, ends_eof_bad_record_truncated_record, 0, 3);
	tcase_add_loop_test(tc, ticket_resumes_in_another_process_until_three_rotations, 0, 2);
	tcase_add_test(tc, one_ticket_per_handshake);
	tcase_add_loop_test(tc, no_ticket_without_a_key_file, 0, 4);
	tcase_add_test(tc, renewed_certificate_serves_from_the_next_connection);
	tcase_add_loop_test(tc, resumed_session_parses_neither_file, 0, 2);
	tcase_add_loop_test(tc, key_formats_serve_a_full_handshake, 0, 5);
	tcase_add_loop_test(tc, mismatched_pair_fails_the_full_handshake, 0, 2);
	tcase_add_loop_test(tc, unusable_pem_gives_no_tls, 0, 5);
	tcase_add_test(tc, file_names_absolute_or_credentials);
	tcase_add_test(tc, tcp_connection_becomes_nonblocking_without_nagle);
	tcase_add_test(tc, rotation_creates_shifts_and_keeps_owner);
	tcase_add_test(tc, rotation_fills_an_empty_file_and_leaves_a_foreign_one);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	return harness_run_suite(tls_suite());
}
