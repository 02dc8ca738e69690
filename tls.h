/*
 * tls.h: the server side of TLS after STARTTLS (RFC 3207), with OpenSSL 3
 * opened by dlopen only when a client asks for it: a plain session loads
 * nothing. The caller ignores SIGPIPE (smtpd does): OpenSSL writes with
 * write(2), and a vanished client must be an error return.
 */
#ifndef SMTPD_TLS_H
#define SMTPD_TLS_H

#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/*
 * File names as the configuration gives them: an absolute path, or the name
 * of a systemd credential (no slash at all: "tls-key" is the file
 * $CREDENTIALS_DIRECTORY/tls-key, passed with LoadCredential=tls-key:PATH).
 */
struct tls_config {
	const char *cert_file;		/* PEM chain, leaf first */
	const char *key_file;		/* PEM private key, RSA or ECDSA */
	const char *ticket_keys_file;	/* NULL: no session tickets */
};

/* TLS_TICKET_KEYS records of name(16) aes(32) hmac(32), newest first. */
#define TLS_TICKET_KEYS		3
#define TLS_TICKET_KEY_SIZE	80
#define TLS_TICKET_FILE_SIZE	(TLS_TICKET_KEYS * TLS_TICKET_KEY_SIZE)

enum tls_result { TLS_OK, TLS_FAILED, TLS_TIMEOUT, TLS_STOPPED };

struct tls;

/*
 * The path a configured name stands for (see struct tls_config): 0, or -1
 * with the reason in err (a relative name with a slash, a credential name
 * without $CREDENTIALS_DIRECTORY, a path too long).
 */
int tls_resolve_file(const char *name, char *path, size_t size, char *err, size_t errlen);

/*
 * Get ready to be the TLS server on the connection (in_fd and out_fd may
 * be the same socket): loads the libraries and reads the certificate chain
 * and key files now, so a renewed certificate serves from the next
 * connection on, and checks that they are PEM holding a certificate and an
 * unencrypted private key, without parsing either. Neither descriptor is
 * touched, so this comes before "220 Ready to start TLS": NULL with the
 * reason in err means the session answers 454 4.7.0 and goes on in plain
 * text. The bytes read are parsed only when the handshake needs them (a
 * full one; a resumed one never does); a certificate or key that does not
 * parse or match fails that handshake, with the reason in tls_error(). On
 * success err is empty, or says why session tickets are off for this
 * connection (a warning to log).
 */
struct tls *tls_accept(const struct tls_config *cfg, int in_fd, int out_fd,
    char *err, size_t errlen);

/*
 * The handshake, waiting in ppoll with wait_mask (the signals that may end
 * a wait) until deadline_ms (CLOCK_MONOTONIC, milliseconds), or until *stop
 * is set. It makes both descriptors non-blocking (and turns Nagle off) for
 * good. TLS_FAILED leaves OpenSSL's reason in tls_error(): the session
 * then closes without a plain-text word (RFC 3207 has no fallback).
 */
enum tls_result tls_handshake(struct tls *t, long long deadline_ms,
    const volatile sig_atomic_t *stop, const sigset_t *wait_mask);

/*
 * Like read(2) and write(2) on a non-blocking socket: -1 with errno EAGAIN
 * when the caller must wait for tls_pollfd(); tls_read returns 0 at the
 * client's close_notify or at EOF between records, -1 with EIO on an
 * alert, a bad or truncated record. tls_write may write less than asked
 * (partial writes are on) and may be called again with a moved buffer.
 */
ssize_t tls_read(struct tls *t, void *buf, size_t len);
ssize_t tls_write(struct tls *t, const void *buf, size_t len);

/*
 * What to poll after EAGAIN: TLS may need to write to read (and the other
 * way round), so the descriptor and the event come from here, not from the
 * call that failed.
 */
struct pollfd tls_pollfd(const struct tls *t);

/* Decrypted bytes held by OpenSSL: readable now without waiting. */
size_t tls_pending(const struct tls *t);

/* Why the handshake or the last read or write failed, safe for a log line. */
const char *tls_error(const struct tls *t);

/* "TLSv1.3", "TLS_AES_256_GCM_SHA384": letters, digits, '.', '-', '_' only. */
const char *tls_version(const struct tls *t);
const char *tls_cipher(const struct tls *t);

/* The handshake resumed a session from a ticket (of any smtpd process). */
bool tls_resumed(const struct tls *t);

/*
 * Send close_notify if the connection is still sound, without waiting for
 * the client's (RFC 8446 6.1 allows it), and free t. The descriptors stay
 * open: they are the caller's.
 */
void tls_close(struct tls *t);

/* smtpd -C: 0 when the certificate and key load and match, else -1 and why. */
int tls_check_pair(const char *cert_file, const char *key_file, char *err, size_t errlen);

/*
 * smtpd -T FILE: a new ticket key first, the previous two kept for
 * decryption; written atomically with mode 0600 and the owner and group of
 * the file it replaces. A missing or empty FILE is created with three new
 * keys. 0, or -1 with the reason in err (FILE is then unchanged).
 */
int tls_rotate_ticket_keys(const char *path, char *err, size_t errlen);

#endif
