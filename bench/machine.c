/*
 * machine.c: what this machine charges for the two things a per-connection
 * server does most at start: take page faults and make system calls.
 * Prints "fault_us syscall_us": microseconds per first touch of an anonymous
 * page, and per getppid(2). Only for benchmarks.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define PAGES	20000
#define CALLS	200000

static double
now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

int
main(void)
{
	volatile char *p = mmap(NULL, (size_t)PAGES * 4096, PROT_READ | PROT_WRITE,
	    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	double t0, fault, call;

	if (p == MAP_FAILED)
		return 1;
	t0 = now_us();
	for (size_t i = 0; i < PAGES; i++)
		p[i * 4096] = 1;
	fault = (now_us() - t0) / PAGES;
	t0 = now_us();
	for (int i = 0; i < CALLS; i++)
		syscall(SYS_getppid);
	call = (now_us() - t0) / CALLS;
	printf("%.2f %.2f\n", fault, call);
	return 0;
}
