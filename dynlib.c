/*
 * dynlib.c: libraries loaded on first use.
 *
 * Promises: a library is opened at most once per state, with RTLD_NOW so a
 * missing symbol shows at once, and its symbols are all filled or all left
 * NULL. Decides nothing itself: callers choose when a library is needed and
 * check the symbols' types against the library's headers at compile time.
 */
#include "dynlib.h"

#include <dlfcn.h>
#include <string.h>

int
dynlib_load(int *state, const char *file, const struct dynlib_symbol *syms, size_t n)
{
	void *lib;

	if (*state != 0)
		return *state;
	*state = -1;
	if ((lib = dlopen(file, RTLD_NOW | RTLD_LOCAL)) == NULL)
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
