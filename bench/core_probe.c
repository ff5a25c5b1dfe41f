/*
 * core_probe.c — how much of each CPU this process gets right now.
 *
 * On a shared virtual machine a vCPU is often one hyperthread of a physical
 * core whose other hyperthread runs someone else's vCPU. When that sibling
 * is busy, code that keeps several execution units busy (tokenwatch's hot
 * path runs at 2.5-3 instructions per cycle) slows by a third to a half,
 * while a single dependency chain hardly notices. bench/run.sh runs this
 * before and after every replay and reports its medians over all runs and
 * over the runs made while the cores were free.
 *
 * The work: four independent chains of add/xor/shift, a fixed number of
 * iterations, timed on each CPU of the affinity mask in turn (pinned, one
 * at a time, so that two probes never share a core). Prints the slowest
 * CPU's seconds with three decimals.
 *
 *   cc -O2 -o core_probe bench/core_probe.c && ./core_probe [iterations]
 */
#define _GNU_SOURCE
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static volatile uint64_t keep;   /* the chains' result, so the loop stays */

/* Returns the seconds taken. */
static double work(uint64_t iters)
{
    uint64_t a = 1, b = 2, c = 3, d = 4;
    double t0 = now_s();
    for (uint64_t i = 0; i < iters; i++) {
        a = (a ^ i) + (a >> 3);
        b = (b ^ i) + (b >> 5);
        c = (c + i) ^ (c >> 7);
        d = (d + i) ^ (d << 1);
    }
    double t = now_s() - t0;
    keep = a + b + c + d;
    return t;
}

int main(int argc, char **argv)
{
    uint64_t iters = argc > 1 ? strtoull(argv[1], NULL, 10) : 80000000u;
    cpu_set_t all;
    if (sched_getaffinity(0, sizeof all, &all) != 0) {
        perror("core_probe: sched_getaffinity");
        return 1;
    }
    double worst = 0;
    for (int cpu = 0; cpu < CPU_SETSIZE; cpu++) {
        if (!CPU_ISSET(cpu, &all))
            continue;
        cpu_set_t one;
        CPU_ZERO(&one);
        CPU_SET(cpu, &one);
        if (sched_setaffinity(0, sizeof one, &one) != 0)
            continue;   /* gone offline meanwhile: nothing to measure */
        double t = work(iters);
        if (t > worst)
            worst = t;
    }
    printf("%.3f\n", worst);
    return 0;
}
