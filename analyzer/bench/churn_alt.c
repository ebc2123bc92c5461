/* Like churn.c, but each step frees a random live block and allocates one in
 * its place, so mallocs and frees strictly alternate: the same sizes and
 * sites with a predictable malloc/free branch (a diagnostic for the
 * analyzer: see BENCHMARKS.md, tenth session). Usage: churn_alt EVENTS */
#include <stdint.h>
#include <stdlib.h>
static uint64_t rng = 0x2545f4914f6cdd1dULL;
static uint64_t next(void) { rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17; return rng; }
#define SITE(n) __attribute__((noinline)) static void *site##n(size_t s) { return malloc(s); }
SITE(0) SITE(1) SITE(2) SITE(3) SITE(4) SITE(5) SITE(6) SITE(7)
static void *(*sites[8])(size_t) = {site0, site1, site2, site3, site4, site5, site6, site7};
int main(int argc, char **argv) {
    long events = argc > 1 ? atol(argv[1]) : 20000000;
    long live = 10000;
    void **slots = calloc(live, sizeof(void *));
    for (long i = 0; i < live/2; i++) slots[i] = sites[next() % 8](16 + next() % 48);
    long nlive = live/2;
    for (long n = 0; n < events/2; n++) {
        long i = next() % nlive;            /* free a random live one */
        free(slots[i]);
        slots[i] = sites[next() % 8](16 + next() % 48);
    }
    for (long i = 0; i < live; i++) free(slots[i]);
    free(slots);
    return 0;
}
