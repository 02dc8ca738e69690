/* tls_stub.h: what the fuzzer's stand-in for tls.c does at the next STARTTLS. */
#ifndef SMTPD_TLS_STUB_H
#define SMTPD_TLS_STUB_H

#include <stddef.h>

enum tls_stub_verdict {
	TLS_STUB_OK,		/* the handshake succeeds */
	TLS_STUB_NO_KEY,	/* tls_accept fails: 454 */
	TLS_STUB_FAILED,	/* the handshake fails */
	TLS_STUB_TIMEOUT,	/* the handshake times out */
};

/* For the next input; limit: bytes per tls_read, 0 for no limit. */
void tls_stub_set(enum tls_stub_verdict v, size_t limit);

#endif
