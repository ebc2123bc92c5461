/* Single-thread churn: 10 million malloc/free pairs, sizes 8..512, 10k live blocks.
 * Each block's first and last byte are written so the allocator's memory is touched.
 * Usage: churn [pairs]   (prints a checksum so the work cannot be optimised away) */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#define LIVE 10000

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static inline uint64_t next(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

int main(int argc, char **argv) {
    long pairs = argc > 1 ? atol(argv[1]) : 10000000L;
    static unsigned char *slot[LIVE];
    static size_t len[LIVE];
    uint64_t sum = 0;
    for (long i = 0; i < pairs; i++) {
        uint64_t r = next();
        size_t k = r % LIVE;
        if (slot[k]) {
            sum += slot[k][0] + slot[k][len[k] - 1];
            free(slot[k]);
        }
        size_t n = 8 + (r >> 32) % 505;
        unsigned char *p = malloc(n);
        if (!p) return 1;
        p[0] = (unsigned char)i;
        p[n - 1] = (unsigned char)(i >> 8);
        slot[k] = p;
        len[k] = n;
    }
    for (size_t k = 0; k < LIVE; k++) free(slot[k]);
    printf("%llu\n", (unsigned long long)sum);
    return 0;
}
