/* Plimsoll bench workload in C (glibc malloc).
 *
 * Usage: c_mem NAME key=value ...
 *   live_slots=N        constant live set: N slots, each a block of random size
 *   max_block_kb=K      slot block sizes are uniform in [16 B, K KB]
 *   churn_per_tick=C    every 100 ms, C random slots are freed and re-allocated (new size)
 *   trim_every_s=T      call malloc_trim(0) every T s (0 = never)
 *   spike_mb=M spike_every_s=E spike_hold_s=H
 *                       every ~E s (randomized +-50 %), allocate M MB (random 0.5..1x),
 *                       touch it, hold H s, free it
 *   leak_mb_min=R       malloc blocks that are never freed, R MB/min, memset so they are resident
 *   leak_start_s=S      leak begins at S s
 *   leak_cap_mb=C       exit(0) once C MB have been leaked (0 = no cap)
 *   seed=N
 */
#define _GNU_SOURCE
#include <malloc.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double opt(int argc, char **argv, const char *key, double def) {
    size_t n = strlen(key);
    for (int i = 2; i < argc; i++)
        if (strncmp(argv[i], key, n) == 0 && argv[i][n] == '=') return atof(argv[i] + n + 1);
    return def;
}

static uint64_t rs = 88172645463325252ULL;
static uint64_t rnd(void) { rs ^= rs << 13; rs ^= rs >> 7; rs ^= rs << 17; return rs; }
static double frand(void) { return (rnd() >> 11) * (1.0 / 9007199254740992.0); }

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static volatile sig_atomic_t stop = 0;
static void on_term(int s) { (void)s; stop = 1; }

int main(int argc, char **argv) {
    signal(SIGTERM, on_term);
    signal(SIGINT, on_term);
    const char *name = argc > 1 ? argv[1] : "c";
    uint64_t h = 1469598103934665603ULL;
    for (const char *p = name; *p; p++) h = (h ^ (unsigned char)*p) * 1099511628211ULL;
    rs = (uint64_t)opt(argc, argv, "seed", 0) ? (uint64_t)opt(argc, argv, "seed", 0) : (h | 1);

    int slots = (int)opt(argc, argv, "live_slots", 2000);
    size_t max_block = (size_t)(opt(argc, argv, "max_block_kb", 64) * 1024);
    int churn = (int)opt(argc, argv, "churn_per_tick", 100);
    double trim_every = opt(argc, argv, "trim_every_s", 0);
    double spike_mb = opt(argc, argv, "spike_mb", 0);
    double spike_every = opt(argc, argv, "spike_every_s", 90);
    double spike_hold = opt(argc, argv, "spike_hold_s", 5);
    double leak_rate = opt(argc, argv, "leak_mb_min", 0) * 1048576.0 / 60.0; /* bytes/s */
    double leak_start = opt(argc, argv, "leak_start_s", 0);
    double leak_cap = opt(argc, argv, "leak_cap_mb", 0) * 1048576.0;

    char **slot = calloc(slots > 0 ? slots : 1, sizeof(char *));
    for (int i = 0; i < slots; i++) {
        size_t sz = 16 + rnd() % max_block;
        slot[i] = malloc(sz);
        memset(slot[i], i & 0xff, sz);
    }

    const double tick = 0.1;
    double t0 = now_s(), next = t0, last_trim = t0;
    double next_spike = t0 + spike_every * (0.5 + frand());
    char *spike = NULL;
    double spike_end = 0;
    double leak_debt = 0, leaked = 0;
    void **leaks = NULL; /* keep pointers reachable (a "global registry" that is never pruned) */
    size_t nleaks = 0, capleaks = 0;
    volatile unsigned long sink = 0;

    while (!stop) {
        double t = now_s();
        for (int c = 0; c < churn && slots > 0; c++) {
            int i = (int)(rnd() % slots);
            free(slot[i]);
            size_t sz = 16 + rnd() % max_block;
            slot[i] = malloc(sz);
            memset(slot[i], c & 0xff, sz);
            sink += (unsigned char)slot[i][sz / 2];
        }
        /* short-lived temporaries */
        for (int c = 0; c < 20; c++) {
            size_t sz = 64 + rnd() % 8192;
            char *tmp = malloc(sz);
            memset(tmp, 0x5a, sz);
            sink += (unsigned char)tmp[sz - 1];
            free(tmp);
        }
        if (leak_rate > 0 && t - t0 >= leak_start) {
            leak_debt += leak_rate * tick;
            while (leak_debt >= 256) {
                size_t sz = 512 + rnd() % (16 * 1024);
                if (sz > leak_debt) sz = (size_t)leak_debt;
                char *p = malloc(sz);
                memset(p, (int)(nleaks & 0xff) | 1, sz);
                if (nleaks == capleaks) {
                    capleaks = capleaks ? capleaks * 2 : 1024;
                    leaks = realloc(leaks, capleaks * sizeof(void *));
                }
                leaks[nleaks++] = p;
                leak_debt -= sz;
                leaked += sz;
            }
            if (leak_cap > 0 && leaked >= leak_cap) return 0;
        }
        if (spike_mb > 0) {
            if (!spike && t >= next_spike) {
                size_t sz = (size_t)(spike_mb * 1048576.0 * (0.5 + 0.5 * frand()));
                spike = malloc(sz);
                if (spike) memset(spike, 0x33, sz);
                spike_end = t + spike_hold;
            } else if (spike && t >= spike_end) {
                free(spike);
                spike = NULL;
                next_spike = t + spike_every * (0.5 + frand());
            }
        }
        if (trim_every > 0 && t - last_trim >= trim_every) {
            malloc_trim(0);
            last_trim = t;
        }
        next += tick;
        double d = next - now_s();
        if (d > 0) {
            struct timespec ts = {(time_t)d, (long)((d - (time_t)d) * 1e9)};
            nanosleep(&ts, NULL);
        } else {
            next = now_s();
        }
    }
    (void)sink;
    return 0;
}
