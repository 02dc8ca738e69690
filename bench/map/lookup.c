/*
 * bench/map/lookup.c: what one RCPT's routing costs with a large mailbox map,
 * parsed (sorted arrays, binary search) and compiled (cdb), in one process
 * so both see the same machine.
 *
 *     bench/map/lookup CONFIG ROUNDS
 *
 * Reads the domain and mailbox lines of CONFIG as smtpd does (routes_add_*,
 * routes_finish), then times ROUNDS rounds of look-ups over a fixed list of
 * addresses (half known users, half unknown users of served domains), first
 * in the parsed routes, then in the map that routes_write_map makes of them.
 * Prints the parse time and, per mode, the median of the rounds' ns per
 * look-up.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../measure.h"

#include "route.h"

#define PROBES 20000

static struct address probes[PROBES];
static size_t nprobes;

static void
add_probe(const char *addr)
{
	char path[600];
	size_t used;
	int n = snprintf(path, sizeof(path), "<%s>", addr);

	if (nprobes < PROBES && n > 0 && (size_t)n < sizeof(path) &&
	    address_parse_path(path, (size_t)n, PATH_FORWARD, false, &probes[nprobes], &used) ==
	    ADDRESS_OK)
		nprobes++;
}

/* Median ns per look-up over rounds. */
static long long
time_lookups(const struct routes *rt, int rounds, unsigned *found)
{
	long long *v = calloc((size_t)rounds, sizeof(*v)), med;
	struct route r;

	for (int k = 0; k < rounds; k++) {
		long long t0 = now_ns();

		*found = 0;
		for (size_t i = 0; i < nprobes; i++)
			*found += routes_lookup(rt, &probes[i], &r) == ROUTE_OK;
		v[k] = (now_ns() - t0) / (long long)nprobes;
	}
	qsort(v, (size_t)rounds, sizeof(*v), cmp_ll);
	med = v[rounds / 2];
	free(v);
	return med;
}

int
main(int argc, char **argv)
{
	static struct routes rt;
	char line[4096], map[] = "/tmp/smtpd-lookup.XXXXXX";
	const char *settings;
	size_t len, nlines = 0;
	long long t0, parse_ns, parsed, compiled;
	unsigned found_parsed, found_compiled, lineno = 0;
	int rounds, fd;
	FILE *f;

	if (argc != 3 || (rounds = atoi(argv[2])) < 1 || (f = fopen(argv[1], "r")) == NULL) {
		fprintf(stderr, "usage: lookup CONFIG ROUNDS\n");
		return 2;
	}
	t0 = now_ns();
	while (fgets(line, sizeof(line), f) != NULL) {
		char *save = NULL, *key = strtok_r(line, " \t\n", &save);
		char *a = strtok_r(NULL, " \t\n", &save), *b = strtok_r(NULL, " \t\n", &save);

		lineno++;
		if (key != NULL && strcmp(key, "domain") == 0 && a != NULL)
			routes_add_domain(&rt, a);
		if (key != NULL && strcmp(key, "mailbox") == 0 && a != NULL && b != NULL) {
			routes_add_mailbox(&rt, a, b, lineno);
			/* Every fifth user, and a stranger in the same domain. */
			if (nlines++ % 5 == 0) {
				char other[600];

				add_probe(a);
				snprintf(other, sizeof(other), "x%s", a);
				add_probe(other);
			}
		}
	}
	fclose(f);
	routes_finish(&rt);
	parse_ns = now_ns() - t0;
	parsed = time_lookups(&rt, rounds, &found_parsed);

	if ((fd = mkstemp(map)) == -1 || routes_write_map(&rt, fd, "", 0) == -1)
		return 1;
	close(fd);
	routes_free(&rt);
	memset(&rt, 0, sizeof(rt));
	if ((fd = open(map, O_RDONLY)) == -1 || routes_open_map(&rt, fd, &settings, &len) == -1)
		return 1;
	unlink(map);
	compiled = time_lookups(&rt, rounds, &found_compiled);
	printf("mailbox_lines=%zu probes=%zu in-process_parse_ms=%.1f\n", nlines, nprobes,
	    parse_ns / 1e6);
	printf("lookup parsed   ns_per_rcpt median=%lld routed=%u\n", parsed, found_parsed);
	printf("lookup compiled ns_per_rcpt median=%lld routed=%u\n", compiled, found_compiled);
	routes_free(&rt);
	return found_parsed == found_compiled ? 0 : 1;
}
