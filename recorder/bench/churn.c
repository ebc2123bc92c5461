/* 10 million malloc/free pairs, sizes 8-512, about 10k blocks live. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#define LIVE 10000
int main(int argc, char **argv) {
    long pairs = argc > 1 ? atol(argv[1]) : 10000000;
    static void *slot[LIVE];
    uint64_t x = 88172645463325252ull;
    for (long i = 0; i < pairs; i++) {
        x ^= x << 13; x ^= x >> 7; x ^= x << 17;
        size_t k = x % LIVE;
        free(slot[k]);
        slot[k] = malloc(8 + (x >> 20) % 505);
    }
    for (int k = 0; k < LIVE; k++) free(slot[k]);
    printf("done %ld\n", pairs);
    return 0;
}
