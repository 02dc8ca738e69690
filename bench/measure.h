/*
 * measure.h: the clock, the sort and the memory reading the bench programs
 * share (greet.c, probe.c, map/lookup.c). Header-only, so each program still
 * builds from its one .c file.
 */
#ifndef SMTPD_BENCH_MEASURE_H
#define SMTPD_BENCH_MEASURE_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <time.h>

static inline long long
now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* For qsort over long long, to take medians. */
static inline int
cmp_ll(const void *a, const void *b)
{
	long long x = *(const long long *)a, y = *(const long long *)b;

	return x < y ? -1 : x > y;
}

/*
 * The high-water mark of a live process's resident memory (VmHWM), in KiB;
 * -1 when it cannot be read. wait4's ru_maxrss would count the spawning
 * process's pages from before exec.
 */
static inline long long
peak_rss(pid_t pid)
{
	char path[64], line[256];
	long long kib = -1;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%ld/status", (long)pid);
	if ((f = fopen(path, "r")) == NULL)
		return -1;
	while (fgets(line, sizeof(line), f) != NULL)
		if (strncmp(line, "VmHWM:", 6) == 0)
			kib = strtoll(line + 6, NULL, 10);
	fclose(f);
	return kib;
}

#endif
