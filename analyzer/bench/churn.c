/* Churn workload for the heaptrack comparison: EVENTS/2 mallocs and about as
 * many frees over LIVE slots, sizes 16..63, from 8 call sites.
 * Usage: churn EVENTS [LIVE] */
#include <stdint.h>
#include <stdlib.h>

static uint64_t rng = 0x2545f4914f6cdd1dULL;
static uint64_t next(void) { rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17; return rng; }

#define SITE(n) __attribute__((noinline)) static void *site##n(size_t s) { return malloc(s); }
SITE(0) SITE(1) SITE(2) SITE(3) SITE(4) SITE(5) SITE(6) SITE(7)
static void *(*sites[8])(size_t) = {site0, site1, site2, site3, site4, site5, site6, site7};

int main(int argc, char **argv) {
    long events = argc > 1 ? atol(argv[1]) : 20000000;
    long live = argc > 2 ? atol(argv[2]) : 10000;
    void **slots = calloc(live, sizeof(void *));
    for (long n = 0; n < events; n++) {
        long i = next() % live;
        if (slots[i]) { free(slots[i]); slots[i] = 0; }
        else slots[i] = sites[next() % 8](16 + next() % 48);
    }
    for (long i = 0; i < live; i++) free(slots[i]);
    free(slots);
    return 0;
}
