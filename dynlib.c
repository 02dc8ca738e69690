/*
 * dynlib.c: libraries loaded on first use.
 *
 * Promises: a library is opened at most once per state, with RTLD_NOW so a
 * missing symbol shows at once, and its symbols are all filled or all left
 * NULL. Decides nothing itself: callers choose when a library is needed and
 * check the symbols' types against the library's headers at compile time.
 */
#define _GNU_SOURCE	/* RTLD_DEEPBIND */
#include "dynlib.h"

#include <dlfcn.h>
#include <string.h>

#if defined(__SANITIZE_ADDRESS__)
#define DEEP_BIND	0	/* sanitizer runtimes die on RTLD_DEEPBIND (their malloc) */
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define DEEP_BIND	0
#endif
#endif
#ifndef DEEP_BIND
#define DEEP_BIND	RTLD_DEEPBIND
#endif

static int
load(int *state, const char *file, int flags, const struct dynlib_symbol *syms, size_t n)
{
	void *lib;

	if (*state != 0)
		return *state;
	*state = -1;
	if ((lib = dlopen(file, RTLD_NOW | RTLD_LOCAL | flags)) == NULL)
		return -1;
	for (size_t i = 0; i < n; i++) {
		void *sym = dlsym(lib, syms[i].name);

		/* ISO C has no cast from void * to a function pointer; POSIX guarantees the sizes. */
		if (sym == NULL || syms[i].size != sizeof(sym)) {
			for (size_t k = 0; k < n; k++)
				memset(syms[k].fn, 0, syms[k].size);
			return -1;
		}
		memcpy(syms[i].fn, &sym, sizeof(sym));
	}
	*state = 1;
	return 1;
}

int
dynlib_load(int *state, const char *file, const struct dynlib_symbol *syms, size_t n)
{
	return load(state, file, 0, syms, n);
}

/*
 * ld.so looks each symbol a library refers to up in the program and its
 * libraries first (smtpd, libc, libcdb, ld.so) and in the library's own
 * scope last; for libcrypto's 8,000 references that is 1.1 M instructions
 * of bloom filter checks that DEEPBIND skips, its own scope coming first.
 */
int
dynlib_load_deep(int *state, const char *file, const struct dynlib_symbol *syms, size_t n)
{
	return load(state, file, DEEP_BIND, syms, n);
}
