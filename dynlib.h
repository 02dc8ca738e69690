/*
 * dynlib.h: a shared library opened with dlopen(3) on first use, for the
 * libraries most connections never need (libidn2 in address.c, libssl and
 * libcrypto in tls.c): linked, each would be mapped into every connection's
 * process.
 */
#ifndef SMTPD_DYNLIB_H
#define SMTPD_DYNLIB_H

#include <stddef.h>

struct dynlib_symbol {
	const char *name;
	void	*fn;		/* the address of the function pointer to fill */
	size_t	size;		/* sizeof that pointer */
};

/*
 * Open file (once) and fill every symbol, or none: 1 when loaded, -1 when
 * the library or one of the symbols is missing. *state, 0 before the first
 * call, keeps the answer, so later calls cost a comparison.
 */
int dynlib_load(int *state, const char *file, const struct dynlib_symbol *syms, size_t n);

/*
 * The same, with the library's symbol references bound to itself and its
 * own dependencies before the program's (RTLD_DEEPBIND): for a large
 * library that needs nothing of the program. Not under AddressSanitizer,
 * which refuses it.
 */
int dynlib_load_deep(int *state, const char *file, const struct dynlib_symbol *syms,
    size_t n);

#endif
