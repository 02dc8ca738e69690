/*
 * tls.c: the server side of TLS for STARTTLS (RFC 3207), over OpenSSL 3.
 *
 * Promises: nothing of OpenSSL is loaded before tls_accept or
 * tls_check_pair; each tls_accept reads the certificate, key and ticket
 * keys afresh, so renewed files serve from the next connection on, but
 * parses the certificate and key only for a full handshake; TLS 1.2
 * and 1.3 only, at security level 2, with OpenSSL's default ciphers and
 * groups, whatever openssl.cnf says (it is not read); no client
 * certificate is asked for; no session cache: a ticket sealed by one
 * process with a key from the ticket key file opens in any other process
 * that reads the same file. Every wait has a deadline and a stop flag.
 * Leaves to the session what to say, when to start, and what bytes mean.
 */
#define _GNU_SOURCE	/* ppoll, mkostemp */
#include "tls.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* The headers give the types; every function is reached through dlsym. */
#include <openssl/core_names.h>
#include <openssl/decoder.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>

#include "clock.h"
#include "dynlib.h"
#include "durable.h"

/* A certificate chain or key file larger than this is refused (454). */
#define TLS_PEM_MAX		(256 * 1024)
#define TLS_PEM_MAX_TEXT	"256 KiB"

/*
 * Each pointer has the type of the function it stands for, taken from the
 * installed headers: a changed prototype is a build error, not a crash.
 */
#define API(f)	__typeof__(f) *f
#define SYM(lib, f)	{ #f, &lib.f, sizeof(lib.f) }

static struct {
	API(OPENSSL_init_ssl);
	API(TLS_server_method);
	API(SSL_CTX_new);
	API(SSL_CTX_free);
	API(SSL_CTX_ctrl);
	API(SSL_CTX_set_options);
	API(SSL_CTX_set_security_level);
	API(SSL_CTX_set_num_tickets);
	API(SSL_CTX_set_tlsext_ticket_key_evp_cb);
	API(SSL_new);
	API(SSL_ctrl);
	API(SSL_set_cert_cb);
	API(SSL_use_certificate);
	API(SSL_use_PrivateKey);
	API(SSL_check_private_key);
	API(SSL_get_certificate);
	API(SSL_free);
	API(SSL_set_fd);
	API(SSL_set_rfd);
	API(SSL_set_wfd);
	API(SSL_set_ex_data);
	API(SSL_get_ex_data);
	API(SSL_accept);
	API(SSL_get_error);
	API(SSL_read_ex);
	API(SSL_write_ex);
	API(SSL_shutdown);
	API(SSL_pending);
	API(SSL_has_pending);
	API(SSL_get_version);
	API(SSL_get_current_cipher);
	API(SSL_CIPHER_get_name);
	API(SSL_session_reused);
} libssl;

static struct {
	API(ERR_get_error);
	API(ERR_peek_error);
	API(ERR_peek_last_error);
	API(ERR_clear_error);
	API(ERR_error_string_n);
	API(EVP_aes_256_cbc);
	API(EVP_EncryptInit_ex);
	API(EVP_DecryptInit_ex);
	API(EVP_MAC_CTX_set_params);
	API(OSSL_PARAM_construct_octet_string);
	API(OSSL_PARAM_construct_utf8_string);
	API(OSSL_PARAM_construct_end);
	API(RAND_bytes);
	API(BIO_new_mem_buf);
	API(BIO_free);
	API(PEM_read_bio);
	API(PEM_read_bio_X509_AUX);
	API(PEM_read_bio_X509);
	API(PEM_read_bio_PrivateKey);
	API(X509_free);
	API(EVP_PKEY_free);
	API(CRYPTO_free);
	API(CRYPTO_clear_free);
	API(BIO_ctrl_pending);
	API(X509_get0_pubkey);
	API(EVP_PKEY_get0_type_name);
	API(OSSL_DECODER_CTX_new_for_pkey);
	API(OSSL_DECODER_CTX_set_pem_password_cb);
	API(OSSL_DECODER_from_bio);
	API(OSSL_DECODER_CTX_free);
} libcrypto;

/* A PEM file as read before the 220; parsed only when a handshake needs it. */
struct pem {
	char	*bytes;		/* NULL once parsed (or never read) */
	size_t	len;
	size_t	key_at;		/* key file: where its first private key block starts */
	bool	key_alone;	/* no public key block before it (see use_key) */
	char	path[PATH_MAX];
};

struct tls {
	SSL_CTX	*ctx;
	SSL	*ssl;
	int	in_fd, out_fd;
	short	wants;		/* POLLIN or POLLOUT, after WANT_READ or WANT_WRITE */
	bool	established;	/* the handshake finished */
	bool	broken;		/* a fatal error or EOF: OpenSSL forbids SSL_shutdown */
	bool	pair_failed;	/* the certificate or key did not parse: error says why */
	struct pem cert, key;
	unsigned char keys[TLS_TICKET_FILE_SIZE];	/* from ticket_keys_file */
	char	error[256];
	char	version[16], cipher[64];
};

/*
 * libssl.so.3 first: it brings libcrypto.so.3 in as a dependency, which the
 * second dlopen finds already mapped. 0, or -1 when either is missing.
 */
static int
load(void)
{
	static int ssl_state, crypto_state;	/* dynlib_load: 0 untried, 1 loaded, -1 failed */
	static const struct dynlib_symbol ssl_syms[] = {
		SYM(libssl, OPENSSL_init_ssl), SYM(libssl, TLS_server_method),
		SYM(libssl, SSL_CTX_new), SYM(libssl, SSL_CTX_free), SYM(libssl, SSL_CTX_ctrl),
		SYM(libssl, SSL_CTX_set_options), SYM(libssl, SSL_CTX_set_security_level),
		SYM(libssl, SSL_CTX_set_num_tickets),
		SYM(libssl, SSL_CTX_set_tlsext_ticket_key_evp_cb),
		SYM(libssl, SSL_new), SYM(libssl, SSL_ctrl), SYM(libssl, SSL_set_cert_cb),
		SYM(libssl, SSL_use_certificate), SYM(libssl, SSL_use_PrivateKey),
		SYM(libssl, SSL_check_private_key), SYM(libssl, SSL_get_certificate),
		SYM(libssl, SSL_free), SYM(libssl, SSL_set_fd),
		SYM(libssl, SSL_set_rfd), SYM(libssl, SSL_set_wfd), SYM(libssl, SSL_set_ex_data),
		SYM(libssl, SSL_get_ex_data), SYM(libssl, SSL_accept), SYM(libssl, SSL_get_error),
		SYM(libssl, SSL_read_ex), SYM(libssl, SSL_write_ex), SYM(libssl, SSL_shutdown),
		SYM(libssl, SSL_pending), SYM(libssl, SSL_has_pending),
		SYM(libssl, SSL_get_version), SYM(libssl, SSL_get_current_cipher),
		SYM(libssl, SSL_CIPHER_get_name), SYM(libssl, SSL_session_reused),
	};
	static const struct dynlib_symbol crypto_syms[] = {
		SYM(libcrypto, ERR_get_error), SYM(libcrypto, ERR_peek_error),
		SYM(libcrypto, ERR_peek_last_error),
		SYM(libcrypto, ERR_clear_error), SYM(libcrypto, ERR_error_string_n),
		SYM(libcrypto, EVP_aes_256_cbc), SYM(libcrypto, EVP_EncryptInit_ex),
		SYM(libcrypto, EVP_DecryptInit_ex), SYM(libcrypto, EVP_MAC_CTX_set_params),
		SYM(libcrypto, OSSL_PARAM_construct_octet_string),
		SYM(libcrypto, OSSL_PARAM_construct_utf8_string),
		SYM(libcrypto, OSSL_PARAM_construct_end), SYM(libcrypto, RAND_bytes),
		SYM(libcrypto, BIO_new_mem_buf), SYM(libcrypto, BIO_free),
		SYM(libcrypto, PEM_read_bio), SYM(libcrypto, PEM_read_bio_X509_AUX),
		SYM(libcrypto, PEM_read_bio_X509), SYM(libcrypto, PEM_read_bio_PrivateKey),
		SYM(libcrypto, X509_free), SYM(libcrypto, EVP_PKEY_free),
		SYM(libcrypto, CRYPTO_free), SYM(libcrypto, CRYPTO_clear_free),
		SYM(libcrypto, BIO_ctrl_pending), SYM(libcrypto, X509_get0_pubkey),
		SYM(libcrypto, EVP_PKEY_get0_type_name),
		SYM(libcrypto, OSSL_DECODER_CTX_new_for_pkey),
		SYM(libcrypto, OSSL_DECODER_CTX_set_pem_password_cb),
		SYM(libcrypto, OSSL_DECODER_from_bio), SYM(libcrypto, OSSL_DECODER_CTX_free),
	};

	/* OpenSSL needs nothing of smtpd, not even its malloc: see dynlib_load_deep. */
	if (dynlib_load_deep(&ssl_state, "libssl.so.3", ssl_syms,
	    sizeof(ssl_syms) / sizeof(ssl_syms[0])) == -1 ||
	    dynlib_load_deep(&crypto_state, "libcrypto.so.3", crypto_syms,
	    sizeof(crypto_syms) / sizeof(crypto_syms[0])) == -1)
		return -1;
	return 0;
}

/*
 * Before any other call (even ERR_clear_error), which would start OpenSSL
 * with its defaults.
 * NO_LOAD_CONFIG: openssl.cnf (or $OPENSSL_CONF) is not read; what Debian's
 * file would give, TLS 1.2 and up at security level 2, is set in
 * new_context and configure instead, so a host's file changes nothing and
 * parsing it costs no connection 0.8 M instructions. NO_ATEXIT: OpenSSL's
 * exit handler frees every table it built, 1.4 M instructions on the way
 * out of a process whose memory the kernel takes back anyway; tls_close
 * still frees and clears the key and the connection.
 */
static int
start_openssl(void)
{
	static int state;	/* 0 untried, 1 started, -1 failed */

	if (state == 0)
		state = libssl.OPENSSL_init_ssl(OPENSSL_INIT_NO_LOAD_CONFIG |
		    OPENSSL_INIT_NO_ATEXIT, NULL) == 1 ? 1 : -1;
	return state == 1 ? 0 : -1;
}

/* Copy src, keeping letters, digits and ".-_" and turning the rest into '_'. */
static void
copy_safe(char *dst, size_t size, const char *src)
{
	size_t i;

	for (i = 0; src != NULL && src[i] != '\0' && i + 1 < size; i++) {
		unsigned char c = (unsigned char)src[i];

		dst[i] = ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		    (c >= '0' && c <= '9') || c == '.' || c == '-' || c == '_') ? (char)c : '_';
	}
	dst[i] = '\0';
}

static void
say(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* A reason for the log: printable ASCII only, whatever a file name holds. */
static void
say(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);	/* cut short is still a reason */
	va_end(ap);
	for (char *p = err; *p != '\0'; p++)
		if ((unsigned char)*p < 0x20 || (unsigned char)*p > 0x7e)
			*p = '?';
}

/* "what: " and OpenSSL's earliest queued error (the cause, not its echoes). */
static void
say_openssl(char *err, size_t errlen, const char *what)
{
	unsigned long code = libcrypto.ERR_get_error();
	char text[256] = "no reason given";

	if (code != 0)
		libcrypto.ERR_error_string_n(code, text, sizeof(text));
	libcrypto.ERR_clear_error();
	say(err, errlen, "%s: %s", what, text);
}

int
tls_resolve_file(const char *name, char *path, size_t size, char *err, size_t errlen)
{
	const char *dir = getenv("CREDENTIALS_DIRECTORY");
	int n;

	if (name == NULL || name[0] == '\0') {
		say(err, errlen, "no file name");
		return -1;
	}
	if (name[0] == '/') {
		n = snprintf(path, size, "%s", name);
	} else if (strchr(name, '/') != NULL || strcmp(name, ".") == 0 ||
	    strcmp(name, "..") == 0) {
		say(err, errlen, "%s: neither an absolute path nor a credential name", name);
		return -1;
	} else if (dir == NULL || dir[0] != '/') {
		/* systemd.exec(5): LoadCredential= sets $CREDENTIALS_DIRECTORY. */
		say(err, errlen, "%s: a credential name, but $CREDENTIALS_DIRECTORY is not set", name);
		return -1;
	} else {
		n = snprintf(path, size, "%s/%s", dir, name);
	}
	if (n < 0 || (size_t)n >= size) {
		say(err, errlen, "%s: path too long", name);
		return -1;
	}
	return 0;
}

/* A daemon has no terminal: an encrypted key fails instead of prompting. */
static int
no_passphrase(char *buf, int size, int rwflag, void *arg)
{
	(void)buf, (void)size, (void)rwflag, (void)arg;
	return 0;
}

/* The whole of a configured file into p (at most TLS_PEM_MAX bytes); 0, or -1 and why. */
static int
read_pem(const char *name, const char *what, struct pem *p, char *err, size_t errlen)
{
	struct stat st;
	ssize_t n = 1;
	int fd;

	if (tls_resolve_file(name, p->path, sizeof(p->path), err, errlen) == -1)
		return -1;
	if ((fd = openat(AT_FDCWD, p->path, O_RDONLY | O_CLOEXEC)) == -1 || fstat(fd, &st) == -1) {
		say(err, errlen, "%s %s: %s", what, p->path, strerror(errno));
		if (fd != -1)
			close(fd);
		return -1;
	}
	if (st.st_size > TLS_PEM_MAX || (p->bytes = malloc((size_t)st.st_size + 1)) == NULL) {
		say(err, errlen, "%s %s: %s", what, p->path,
		    st.st_size > TLS_PEM_MAX ? "larger than " TLS_PEM_MAX_TEXT : "out of memory");
		close(fd);
		return -1;
	}
	/* Up to the size fstat saw: a renewal renames a new file in, ours stays whole. */
	for (p->len = 0; p->len < (size_t)st.st_size && n != 0; p->len += n > 0 ? (size_t)n : 0)
		if ((n = read(fd, p->bytes + p->len, (size_t)st.st_size - p->len)) == -1 &&
		    errno != EINTR)
			break;
	if (n == -1)
		say(err, errlen, "%s %s: %s", what, p->path, strerror(errno));
	close(fd);
	return n == -1 ? -1 : 0;
}

/* Free p's bytes, clearing them first: they may be a private key. */
static void
forget_pem(struct pem *p)
{
	if (p->bytes != NULL)
		explicit_bzero(p->bytes, p->len);
	free(p->bytes);
	p->bytes = NULL;
	p->len = 0;
}

static bool
is_certificate(const char *name)
{
	/* PEM_read_bio_X509_AUX(3) takes the leaf under any of the three. */
	return strcmp(name, "CERTIFICATE") == 0 || strcmp(name, "X509 CERTIFICATE") == 0 ||
	    strcmp(name, "TRUSTED CERTIFICATE") == 0;
}

static bool
ends_with(const char *name, const char *tail)
{
	size_t n = strlen(name), k = strlen(tail);

	return n >= k && strcmp(name + n - k, tail) == 0;
}

/* PKCS #8 "PRIVATE KEY" and the older "RSA PRIVATE KEY", "EC PRIVATE KEY". */
static bool
is_private_key(const char *name)
{
	return ends_with(name, "PRIVATE KEY");
}

/* PKCS #8 "ENCRYPTED PRIVATE KEY", or RFC 1421's header in an older block. */
static bool
is_encrypted(const char *name, const char *header)
{
	return strncmp(name, "ENCRYPTED ", 10) == 0 ||
	    strncmp(header, "Proc-Type: 4,ENCRYPTED", 22) == 0;
}

/*
 * The cheap half of loading, before the 220: the blocks of p decode from
 * base64 (PEM_read_bio(3), no ASN.1 parsed) and one is of the kind wanted,
 * unencrypted for a key, since smtpd has no passphrase. OpenSSL reads a
 * key file up to its first key, and a certificate file to its end.
 */
static int
check_pem(struct pem *p, bool key, const char *what, char *err, size_t errlen)
{
	BIO *bio = libcrypto.BIO_new_mem_buf(p->bytes, (int)p->len);
	char *name = NULL, *header = NULL;
	unsigned char *data = NULL;
	const char *why = NULL;
	bool found = false;
	long len = 0;
	unsigned long e;

	libcrypto.ERR_clear_error();
	p->key_alone = true;
	while (bio != NULL && !(key && found)) {
		size_t at = p->len - libcrypto.BIO_ctrl_pending(bio);	/* where this block starts */

		if (libcrypto.PEM_read_bio(bio, &name, &header, &data, &len) != 1)
			break;
		if (key && is_private_key(name)) {
			p->key_at = at;
			found = true;
			if (is_encrypted(name, header))
				why = "encrypted, and smtpd has no passphrase";
		} else if (key && ends_with(name, "PUBLIC KEY")) {
			p->key_alone = false;
		} else if (!key && is_certificate(name)) {
			found = true;
		}
		libcrypto.CRYPTO_free(name, __FILE__, __LINE__);
		libcrypto.CRYPTO_free(header, __FILE__, __LINE__);
		libcrypto.CRYPTO_clear_free(data, (size_t)len, __FILE__, __LINE__);
	}
	e = libcrypto.ERR_peek_last_error();
	if (bio == NULL || (!(key && found) &&
	    !(ERR_GET_LIB(e) == ERR_LIB_PEM && ERR_GET_REASON(e) == PEM_R_NO_START_LINE))) {
		say_openssl(err, errlen, what);	/* malformed PEM */
		libcrypto.BIO_free(bio);
		return -1;
	}
	libcrypto.ERR_clear_error();
	libcrypto.BIO_free(bio);
	if (why == NULL && !found)
		why = key ? "no PEM private key in it" : "no PEM certificate in it";
	if (why != NULL)
		say(err, errlen, "%s: %s", what, why);
	return why != NULL ? -1 : 0;
}

/*
 * Read the certificate chain and the key of cfg into t and check their PEM
 * (above); the libraries are loaded first, since PEM_read_bio is theirs.
 */
static int
read_pair(struct tls *t, const char *cert_name, const char *key_name, char *err, size_t errlen)
{
	char what[PATH_MAX + 16];

	if (read_pem(cert_name, "certificate", &t->cert, err, errlen) == -1 ||
	    read_pem(key_name, "key", &t->key, err, errlen) == -1)
		return -1;
	if (load() == -1) {
		say(err, errlen, "libssl.so.3 or libcrypto.so.3 cannot be loaded");
		return -1;
	}
	if (start_openssl() == -1) {
		say_openssl(err, errlen, "OPENSSL_init_ssl");
		return -1;
	}
	snprintf(what, sizeof(what), "certificate %s", t->cert.path);
	if (check_pem(&t->cert, false, what, err, errlen) == -1)
		return -1;
	snprintf(what, sizeof(what), "key %s", t->key.path);
	return check_pem(&t->key, true, what, err, errlen);
}

/* The context every connection's settings go on; NULL and why. */
static SSL_CTX *
new_context(char *err, size_t errlen)
{
	SSL_CTX *ctx;

	libcrypto.ERR_clear_error();
	if ((ctx = libssl.SSL_CTX_new(libssl.TLS_server_method())) == NULL) {
		say_openssl(err, errlen, "SSL_CTX_new");
		return NULL;
	}
	/* Debian's build default whatever the library's is: keys of 112 bits of strength and up. */
	libssl.SSL_CTX_set_security_level(ctx, 2);
	return ctx;
}

/*
 * The leaf, then the chain, as SSL_use_certificate_chain_file(3) reads
 * them, from the bytes read before the 220; 1, or 0 with OpenSSL's error.
 */
static int
use_chain(SSL *ssl, const struct pem *p)
{
	BIO *bio = libcrypto.BIO_new_mem_buf(p->bytes, (int)p->len);
	X509 *x, *ca;
	unsigned long e;
	int ok;

	if (bio == NULL)
		return 0;
	x = libcrypto.PEM_read_bio_X509_AUX(bio, NULL, no_passphrase, NULL);
	ok = x != NULL && libssl.SSL_use_certificate(ssl, x) == 1 &&
	    libcrypto.ERR_peek_error() == 0 &&
	    libssl.SSL_ctrl(ssl, SSL_CTRL_CHAIN, 0, NULL) == 1;	/* SSL_clear_chain_certs */
	libcrypto.X509_free(x);	/* SSL_use_certificate took its own reference */
	while (ok && (ca = libcrypto.PEM_read_bio_X509(bio, NULL, no_passphrase, NULL)) != NULL)
		if (libssl.SSL_ctrl(ssl, SSL_CTRL_CHAIN_CERT, 0, ca) != 1) {	/* SSL_add0_chain_cert */
			libcrypto.X509_free(ca);
			ok = 0;
		}
	if (ok) {	/* the loop ends at the end of the file, or at a bad block */
		e = libcrypto.ERR_peek_last_error();
		ok = ERR_GET_LIB(e) == ERR_LIB_PEM && ERR_GET_REASON(e) == PEM_R_NO_START_LINE;
		if (ok)
			libcrypto.ERR_clear_error();
	}
	libcrypto.BIO_free(bio);
	return ok;
}

/*
 * The first private key block alone, decoded as a key of the certificate's
 * type ("EC", "RSA"): OpenSSL 3.0's decoders then try that type only, 1.4 M
 * instructions where PEM_read_bio_PrivateKey(3), trying every type, costs
 * 4.7 M. NULL when it is not one, or not alone (see use_key).
 */
static EVP_PKEY *
read_typed_key(SSL *ssl, const struct pem *p)
{
	X509 *cert = libssl.SSL_get_certificate(ssl);
	EVP_PKEY *pub = cert != NULL ? libcrypto.X509_get0_pubkey(cert) : NULL;
	const char *type = pub != NULL ? libcrypto.EVP_PKEY_get0_type_name(pub) : NULL;
	OSSL_DECODER_CTX *dctx;
	EVP_PKEY *pkey = NULL;
	BIO *bio;

	if (type == NULL || !p->key_alone ||
	    (bio = libcrypto.BIO_new_mem_buf(p->bytes + p->key_at, (int)(p->len - p->key_at))) == NULL)
		return NULL;
	dctx = libcrypto.OSSL_DECODER_CTX_new_for_pkey(&pkey, "PEM", NULL, type,
	    EVP_PKEY_KEYPAIR, NULL, NULL);
	if (dctx == NULL ||
	    libcrypto.OSSL_DECODER_CTX_set_pem_password_cb(dctx, no_passphrase, NULL) != 1 ||
	    libcrypto.OSSL_DECODER_from_bio(dctx, bio) != 1) {
		libcrypto.EVP_PKEY_free(pkey);
		pkey = NULL;
	}
	libcrypto.OSSL_DECODER_CTX_free(dctx);
	libcrypto.BIO_free(bio);
	libcrypto.ERR_clear_error();
	return pkey;
}

/*
 * The private key, as SSL_use_PrivateKey_file(3) reads it; 1, or 0 with
 * OpenSSL's error. That reads blocks up to the first that decodes as a
 * key, so the typed decoding above gets the same key when no public key
 * block comes first; anything else (another type, a key that does not
 * decode) goes the whole way, for the same key or the same error.
 */
static int
use_key(SSL *ssl, const struct pem *p)
{
	EVP_PKEY *pkey = read_typed_key(ssl, p);
	BIO *bio = NULL;
	int ok;

	if (pkey == NULL) {
		if ((bio = libcrypto.BIO_new_mem_buf(p->bytes, (int)p->len)) == NULL)
			return 0;
		pkey = libcrypto.PEM_read_bio_PrivateKey(bio, NULL, no_passphrase, NULL);
	}
	ok = pkey != NULL && libssl.SSL_use_PrivateKey(ssl, pkey) == 1;
	libcrypto.EVP_PKEY_free(pkey);
	libcrypto.BIO_free(bio);
	return ok;
}

/*
 * SSL_set_cert_cb(3): OpenSSL asks for the certificate only when the
 * handshake needs one, after the ClientHello and never when it resumes a
 * session (TLS 1.2 ticket or TLS 1.3 PSK: OpenSSL 3.0 calls it only when
 * the session is not a resumed one), so a resumed session parses neither
 * file: 5.5 M instructions of a 21.7 M session with ECDSA. Called again
 * after a HelloRetryRequest, with nothing left to do. 1, or 0 to fail the
 * handshake with t->error set.
 */
static int
use_pair(SSL *ssl, void *arg)
{
	struct tls *t = arg;
	char what[PATH_MAX + 64];

	if (t->cert.bytes == NULL)
		return 1;
	libcrypto.ERR_clear_error();
	if (use_chain(ssl, &t->cert) != 1)
		snprintf(what, sizeof(what), "certificate %s", t->cert.path);
	else if (use_key(ssl, &t->key) != 1)
		snprintf(what, sizeof(what), "key %s", t->key.path);
	else if (libssl.SSL_check_private_key(ssl) != 1)
		snprintf(what, sizeof(what), "key %s does not match the certificate", t->key.path);
	else
		what[0] = '\0';
	if (what[0] != '\0') {
		say_openssl(t->error, sizeof(t->error), what);
		t->pair_failed = true;
	}
	forget_pem(&t->cert);
	forget_pem(&t->key);
	return what[0] == '\0' ? 1 : 0;
}

/*
 * A connection's struct tls with the files read and checked and a context;
 * no SSL yet (configure the context first). NULL and why.
 */
static struct tls *
prepare(const struct tls_config *cfg, char *err, size_t errlen)
{
	struct tls *t;

	err[0] = '\0';
	if ((t = calloc(1, sizeof(*t))) == NULL) {
		say(err, errlen, "out of memory");
		return NULL;
	}
	t->in_fd = t->out_fd = -1;
	if (read_pair(t, cfg->cert_file, cfg->key_file, err, errlen) == -1 ||
	    (t->ctx = new_context(err, errlen)) == NULL) {
		tls_close(t);
		return NULL;
	}
	return t;
}

/* The connection's SSL, whose certificate comes from use_pair when it is asked for. */
static int
new_ssl(struct tls *t)
{
	if ((t->ssl = libssl.SSL_new(t->ctx)) == NULL ||
	    libssl.SSL_set_ex_data(t->ssl, 0, t) != 1)
		return -1;
	libssl.SSL_set_cert_cb(t->ssl, use_pair, t);
	return 0;
}

int
tls_check_pair(const char *cert_file, const char *key_file, char *err, size_t errlen)
{
	struct tls_config cfg = { cert_file, key_file, NULL };
	struct tls *t = prepare(&cfg, err, errlen);
	int res = -1;

	if (t == NULL)
		return -1;
	/* What a full handshake does, without one. */
	if (new_ssl(t) == -1)
		say_openssl(err, errlen, "SSL_new");
	else if (use_pair(t->ssl, t) != 1)
		say(err, errlen, "%s", t->error);
	else
		res = 0;
	tls_close(t);
	return res;
}

/* Exactly TLS_TICKET_FILE_SIZE bytes from fd into keys; 0, or -1 and why. */
static int
read_keys(int fd, const char *path, unsigned char *keys, char *err, size_t errlen)
{
	unsigned char extra;
	size_t got = 0;
	ssize_t n = 1;

	/* One byte more than we want, to tell a longer file from ours. */
	while (got <= TLS_TICKET_FILE_SIZE && n != 0) {
		if (got < TLS_TICKET_FILE_SIZE)
			n = read(fd, keys + got, TLS_TICKET_FILE_SIZE - got);
		else
			n = read(fd, &extra, 1);
		if (n == -1 && errno != EINTR)
			break;
		got += n > 0 ? (size_t)n : 0;
	}
	if (n == -1 || got != TLS_TICKET_FILE_SIZE) {
		say(err, errlen, "ticket keys %s: %s", path,
		    n == -1 ? strerror(errno) : "not a ticket key file (see smtpd -T)");
		explicit_bzero(keys, TLS_TICKET_FILE_SIZE);
		return -1;
	}
	return 0;
}

/* The ticket keys of the configured file name; 0, or -1 and why. */
static int
read_ticket_keys(const char *name, unsigned char *keys, char *err, size_t errlen)
{
	char path[PATH_MAX];
	int fd, res;

	if (tls_resolve_file(name, path, sizeof(path), err, errlen) == -1)
		return -1;
	if ((fd = openat(AT_FDCWD, path, O_RDONLY | O_CLOEXEC)) == -1) {
		say(err, errlen, "ticket keys %s: %s", path, strerror(errno));
		return -1;
	}
	res = read_keys(fd, path, keys, err, errlen);
	close(fd);
	return res;
}

/* HMAC-SHA256 with the 32-byte key at key, as RFC 5077 4 suggests. */
static int
set_hmac_key(EVP_MAC_CTX *hctx, unsigned char *key)
{
	static char digest[] = "SHA256";
	OSSL_PARAM params[3];

	params[0] = libcrypto.OSSL_PARAM_construct_octet_string(OSSL_MAC_PARAM_KEY, key, 32);
	params[1] = libcrypto.OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0);
	params[2] = libcrypto.OSSL_PARAM_construct_end();
	return libcrypto.EVP_MAC_CTX_set_params(hctx, params) == 1 ? 0 : -1;
}

/*
 * SSL_CTX_set_tlsext_ticket_key_evp_cb(3): seal new tickets (RFC 5077,
 * RFC 8446 4.6.1) with the newest key, open them with any of the three.
 * Returns 1 to use a key, 2 to use it and issue a ticket under the newest,
 * 0 for a ticket we cannot open (a full handshake follows), -1 on error.
 */
static int
ticket_key(SSL *ssl, unsigned char *name, unsigned char *iv, EVP_CIPHER_CTX *cctx,
    EVP_MAC_CTX *hctx, int enc)
{
	struct tls *t = libssl.SSL_get_ex_data(ssl, 0);
	unsigned char *key = t->keys;
	int i;

	if (enc) {
		memcpy(name, key, 16);
		if (libcrypto.RAND_bytes(iv, 16) != 1 ||
		    libcrypto.EVP_EncryptInit_ex(cctx, libcrypto.EVP_aes_256_cbc(), NULL,
		    key + 16, iv) != 1 || set_hmac_key(hctx, key + 48) == -1)
			return -1;
		return 1;
	}
	for (i = 0; i < TLS_TICKET_KEYS; i++)
		if (memcmp(name, t->keys + i * TLS_TICKET_KEY_SIZE, 16) == 0)
			break;
	if (i == TLS_TICKET_KEYS)
		return 0;	/* rotated out, or another server's */
	key = t->keys + i * TLS_TICKET_KEY_SIZE;
	if (set_hmac_key(hctx, key + 48) == -1 ||
	    libcrypto.EVP_DecryptInit_ex(cctx, libcrypto.EVP_aes_256_cbc(), NULL,
	    key + 16, iv) != 1)
		return -1;
	return i == 0 ? 1 : 2;
}

/*
 * The protocol settings. Without a ticket key file no ticket is issued at
 * all: this process's own random key dies with it, so no ticket could ever
 * come back.
 */
static void
configure(struct tls *t, bool tickets)
{
	libssl.SSL_CTX_ctrl(t->ctx, SSL_CTRL_SET_MIN_PROTO_VERSION, TLS1_2_VERSION, NULL);
	libssl.SSL_CTX_ctrl(t->ctx, SSL_CTRL_SET_MAX_PROTO_VERSION, TLS1_3_VERSION, NULL);
	/* One process per connection: a cache would die unused with the process. */
	libssl.SSL_CTX_ctrl(t->ctx, SSL_CTRL_SET_SESS_CACHE_MODE, SSL_SESS_CACHE_OFF, NULL);
	/* tls_write behaves like write(2), and reply.c may retry from a moved buffer. */
	libssl.SSL_CTX_ctrl(t->ctx, SSL_CTRL_MODE,
	    SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER, NULL);
	/* TLS 1.2 renegotiation buys a client nothing and costs us a handshake (Postfix too). */
	libssl.SSL_CTX_set_options(t->ctx, SSL_OP_NO_RENEGOTIATION);
	if (tickets) {
		libssl.SSL_CTX_set_tlsext_ticket_key_evp_cb(t->ctx, ticket_key);
		/* OpenSSL sends two for browsers' parallel connections; an MTA keeps one. */
		libssl.SSL_CTX_set_num_tickets(t->ctx, 1);
	} else {
		libssl.SSL_CTX_set_options(t->ctx, SSL_OP_NO_TICKET);
		libssl.SSL_CTX_set_num_tickets(t->ctx, 0);
	}
}

/*
 * OpenSSL's socket BIO reads and writes with read(2) and write(2), which
 * have no per-call MSG_DONTWAIT, so the descriptors become non-blocking and
 * every wait is our ppoll with its deadline. The flag belongs to the open
 * connection, which inetd, tcpserver and systemd hand to this process
 * alone, and after STARTTLS nothing reads or writes it in plain text again
 * (RFC 3207 has no way back), so the change surprises no one.
 */
static int
set_nonblocking(int fd)
{
	int flags = fcntl(fd, F_GETFL);

	return flags == -1 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) == -1 ? -1 : 0;
}

/*
 * TLS 1.3 sends the session ticket after the handshake, unasked; the reply
 * to the client's next EHLO then waits behind it for the client's delayed
 * ACK (Nagle, RFC 896): 40 ms per connection on Linux. Replies are already
 * coalesced into one write per flush, so Nagle saves nothing. Not a TCP
 * socket (a pipe, AF_UNIX): nothing to do.
 */
static void
set_nodelay(int fd)
{
	int one = 1;

	(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

static int
attach(struct tls *t)
{
	if (new_ssl(t) == -1)
		return -1;
	if (t->in_fd == t->out_fd)
		return libssl.SSL_set_fd(t->ssl, t->in_fd) == 1 ? 0 : -1;
	return libssl.SSL_set_rfd(t->ssl, t->in_fd) == 1 &&
	    libssl.SSL_set_wfd(t->ssl, t->out_fd) == 1 ? 0 : -1;
}

struct tls *
tls_accept(const struct tls_config *cfg, int in_fd, int out_fd, char *err, size_t errlen)
{
	char warning[256] = "";
	struct tls *t;
	bool tickets;

	if ((t = prepare(cfg, err, errlen)) == NULL)
		return NULL;
	t->in_fd = in_fd;
	t->out_fd = out_fd;
	tickets = cfg->ticket_keys_file != NULL &&
	    read_ticket_keys(cfg->ticket_keys_file, t->keys, warning, sizeof(warning)) == 0;
	configure(t, tickets);
	if (attach(t) == -1) {
		say_openssl(err, errlen, "SSL_new");
		tls_close(t);
		return NULL;
	}
	if (warning[0] != '\0')
		say(err, errlen, "session tickets off: %s", warning);
	return t;
}

/*
 * Why the last call failed, into t->error; the connection is then broken:
 * OpenSSL forbids SSL_shutdown after a fatal error.
 */
static void
note_failure(struct tls *t, int ssl_error, int saved_errno, const char *what)
{
	t->broken = true;
	if (ssl_error == SSL_ERROR_SYSCALL && libcrypto.ERR_peek_error() == 0)
		say(t->error, sizeof(t->error), "%s: %s", what,
		    saved_errno != 0 ? strerror(saved_errno) : "connection closed");
	else
		say_openssl(t->error, sizeof(t->error), what);
}

/* After WANT_READ or WANT_WRITE: 1 to wait for tls_pollfd(); 0 otherwise. */
static int
must_wait(struct tls *t, int ssl_error)
{
	if (ssl_error == SSL_ERROR_WANT_READ)
		t->wants = POLLIN;
	else if (ssl_error == SSL_ERROR_WANT_WRITE)
		t->wants = POLLOUT;
	else
		return 0;
	return 1;
}

/* Wait until the connection is ready for what OpenSSL wants, or why not. */
static enum tls_result
wait_ready(struct tls *t, long long deadline_ms, const volatile sig_atomic_t *stop,
    const sigset_t *wait_mask)
{
	struct pollfd pfd = tls_pollfd(t);

	for (;;) {
		struct timespec ts;
		long long left;

		if (stop != NULL && *stop)
			return TLS_STOPPED;
		if ((left = deadline_ms - now_ms()) <= 0)
			return TLS_TIMEOUT;
		ts.tv_sec = left / 1000;
		ts.tv_nsec = (left % 1000) * 1000000;
		/* ppoll: a stop signal blocked elsewhere is taken only here. */
		switch (ppoll(&pfd, 1, &ts, wait_mask)) {
		case -1:
			if (errno == EINTR)
				continue;
			say(t->error, sizeof(t->error), "ppoll: %s", strerror(errno));
			return TLS_FAILED;
		case 0:
			continue;
		default:
			return TLS_OK;	/* readable, writable, or closed: OpenSSL will tell */
		}
	}
}

enum tls_result
tls_handshake(struct tls *t, long long deadline_ms, const volatile sig_atomic_t *stop,
    const sigset_t *wait_mask)
{
	enum tls_result res;
	int r, e, saved;

	if (set_nonblocking(t->in_fd) == -1 || set_nonblocking(t->out_fd) == -1) {
		say(t->error, sizeof(t->error), "fcntl O_NONBLOCK: %s", strerror(errno));
		return TLS_FAILED;
	}
	set_nodelay(t->out_fd);
	for (;;) {
		libcrypto.ERR_clear_error();
		errno = 0;
		r = libssl.SSL_accept(t->ssl);
		saved = errno;
		if (r == 1)
			break;
		e = libssl.SSL_get_error(t->ssl, r);
		if (t->pair_failed) {	/* use_pair said why, naming the file */
			t->broken = true;
			libcrypto.ERR_clear_error();
			return TLS_FAILED;
		}
		if (!must_wait(t, e)) {
			note_failure(t, e, saved, "handshake");
			return TLS_FAILED;
		}
		if ((res = wait_ready(t, deadline_ms, stop, wait_mask)) != TLS_OK)
			return res;
	}
	t->established = true;
	copy_safe(t->version, sizeof(t->version), libssl.SSL_get_version(t->ssl));
	copy_safe(t->cipher, sizeof(t->cipher),
	    libssl.SSL_CIPHER_get_name(libssl.SSL_get_current_cipher(t->ssl)));
	return TLS_OK;
}

/*
 * OpenSSL 3 reports an EOF without close_notify as an error. Between
 * records it is the client hanging up, as a plain EOF would be; inside a
 * record (bytes of it buffered) it is a truncated record.
 */
static bool
eof_between_records(struct tls *t, int ssl_error, int saved_errno)
{
	unsigned long code = libcrypto.ERR_peek_error();

	if (ssl_error == SSL_ERROR_SYSCALL && code == 0 && saved_errno == 0)
		return true;
	return ssl_error == SSL_ERROR_SSL &&
	    ERR_GET_REASON(code) == SSL_R_UNEXPECTED_EOF_WHILE_READING &&
	    libssl.SSL_has_pending(t->ssl) == 0;
}

/*
 * What SSL_read_ex or SSL_write_ex said, as read(2) and write(2) say it:
 * the count, or -1 with EAGAIN (wait for tls_pollfd) or EIO.
 */
static ssize_t
io_result(struct tls *t, int r, int e, size_t n, int saved, const char *what)
{
	if (r == 1)
		return (ssize_t)n;
	if (must_wait(t, e)) {
		errno = EAGAIN;
		return -1;
	}
	note_failure(t, e, saved, what);
	errno = EIO;
	return -1;
}

/*
 * SSL_read_ex into rbuf, or SSL_write_ex from wbuf, with the error queue
 * cleared first: the result, *e its SSL error, *saved errno as it left it.
 */
static int
ssl_io(struct tls *t, void *rbuf, const void *wbuf, size_t len, size_t *n, int *e, int *saved)
{
	int r;

	libcrypto.ERR_clear_error();
	errno = 0;
	r = rbuf != NULL ? libssl.SSL_read_ex(t->ssl, rbuf, len, n) :
	    libssl.SSL_write_ex(t->ssl, wbuf, len, n);
	*saved = errno;
	*e = r == 1 ? SSL_ERROR_NONE : libssl.SSL_get_error(t->ssl, r);
	return r;
}

ssize_t
tls_read(struct tls *t, void *buf, size_t len)
{
	size_t n = 0;
	int e, saved, r = ssl_io(t, buf, NULL, len, &n, &e, &saved);

	if (e == SSL_ERROR_ZERO_RETURN)
		return 0;	/* close_notify: our own may still go out */
	if (r != 1 && eof_between_records(t, e, saved)) {
		t->broken = true;
		libcrypto.ERR_clear_error();
		return 0;
	}
	return io_result(t, r, e, n, saved, "read");
}

ssize_t
tls_write(struct tls *t, const void *buf, size_t len)
{
	size_t n = 0;
	int e, saved, r;

	if (len == 0)
		return 0;
	r = ssl_io(t, NULL, buf, len, &n, &e, &saved);
	return io_result(t, r, e, n, saved, "write");
}

struct pollfd
tls_pollfd(const struct tls *t)
{
	struct pollfd pfd = { .fd = t->in_fd, .events = POLLIN };

	if (t->wants == POLLOUT) {
		pfd.fd = t->out_fd;
		pfd.events = POLLOUT;
	}
	return pfd;
}

size_t
tls_pending(const struct tls *t)
{
	int n = libssl.SSL_pending(t->ssl);

	return n > 0 ? (size_t)n : 0;
}

const char *
tls_error(const struct tls *t)
{
	return t->error;
}

const char *
tls_version(const struct tls *t)
{
	return t->version;
}

const char *
tls_cipher(const struct tls *t)
{
	return t->cipher;
}

bool
tls_resumed(const struct tls *t)
{
	return t->established && libssl.SSL_session_reused(t->ssl) == 1;
}

void
tls_close(struct tls *t)
{
	if (t == NULL)
		return;
	/* One try, no wait: RFC 8446 6.1 lets us close without the client's close_notify. */
	if (t->established && !t->broken) {
		libcrypto.ERR_clear_error();
		(void)libssl.SSL_shutdown(t->ssl);
	}
	if (t->ssl != NULL || t->ctx != NULL) {	/* else the libraries may not be loaded */
		libcrypto.ERR_clear_error();
		libssl.SSL_free(t->ssl);
		libssl.SSL_CTX_free(t->ctx);
	}
	forget_pem(&t->cert);
	forget_pem(&t->key);
	explicit_bzero(t->keys, sizeof(t->keys));
	free(t);
}

/*
 * The ticket keys FILE holds now, for smtpd -T: 1 with the keys and the
 * file's owner in *st, 0 when FILE is missing (st_uid -1) or empty, -1 and
 * why when it is something else, which is left alone.
 */
static int
read_old_keys(const char *path, unsigned char *keys, struct stat *st, char *err, size_t errlen)
{
	int fd, res;

	st->st_uid = (uid_t)-1;
	if ((fd = openat(AT_FDCWD, path, O_RDONLY | O_CLOEXEC)) == -1) {
		if (errno == ENOENT)
			return 0;
		say(err, errlen, "%s: %s", path, strerror(errno));
		return -1;
	}
	if (fstat(fd, st) == -1 || !S_ISREG(st->st_mode)) {
		say(err, errlen, "%s: not a regular file", path);
		res = -1;
	} else if (st->st_size == 0) {
		res = 0;
	} else {
		res = read_keys(fd, path, keys, err, errlen) == 0 ? 1 : -1;
	}
	close(fd);
	return res;
}

/* keys into path through a temporary file and rename, mode 0600, owner kept. */
static int
replace_file(const char *path, const unsigned char *keys, const struct stat *old,
    char *err, size_t errlen)
{
	char tmp[PATH_MAX];
	int fd, n = snprintf(tmp, sizeof(tmp), "%s.XXXXXX", path);

	if (n < 0 || (size_t)n >= sizeof(tmp)) {
		say(err, errlen, "%s: path too long", path);
		return -1;
	}
	if ((fd = mkostemp(tmp, O_CLOEXEC)) == -1) {
		say(err, errlen, "%s: %s", tmp, strerror(errno));
		return -1;
	}
	if (fchmod(fd, 0600) == -1 ||
	    (old->st_uid != (uid_t)-1 && fchown(fd, old->st_uid, old->st_gid) == -1) ||
	    durable_write_all(fd, keys, TLS_TICKET_FILE_SIZE) == -1 || fsync(fd) == -1) {
		say(err, errlen, "%s: %s", tmp, strerror(errno));
		close(fd);
		unlinkat(AT_FDCWD, tmp, 0);
		return -1;
	}
	if (close(fd) == -1 || rename(tmp, path) == -1) {
		say(err, errlen, "%s: %s", path, strerror(errno));
		unlinkat(AT_FDCWD, tmp, 0);
		return -1;
	}
	if (durable_sync_parent(path) == -1) {
		say(err, errlen, "%s: replaced, but its directory cannot be synced: %s",
		    path, strerror(errno));
		return -1;
	}
	return 0;
}

int
tls_rotate_ticket_keys(const char *path, char *err, size_t errlen)
{
	unsigned char old[TLS_TICKET_FILE_SIZE], keys[TLS_TICKET_FILE_SIZE];
	struct stat st;
	int have, res = -1;

	if ((have = read_old_keys(path, old, &st, err, errlen)) == -1)
		return -1;
	/* The newest key first; the two before it still open their tickets. */
	if (have == 1)
		memcpy(keys + TLS_TICKET_KEY_SIZE, old, TLS_TICKET_FILE_SIZE - TLS_TICKET_KEY_SIZE);
	if (getrandom(keys, have == 1 ? TLS_TICKET_KEY_SIZE : sizeof(keys), 0) !=
	    (ssize_t)(have == 1 ? TLS_TICKET_KEY_SIZE : sizeof(keys)))
		say(err, errlen, "getrandom: %s", strerror(errno));
	else
		res = replace_file(path, keys, &st, err, errlen);
	explicit_bzero(old, sizeof(old));
	explicit_bzero(keys, sizeof(keys));
	return res;
}
