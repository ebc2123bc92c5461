/* Two-thread churn: each thread does half of 10 million malloc/free pairs, sizes
 * 8..512, 10k live blocks per thread; 10% of the frees are handed to the other thread
 * through a single-producer/single-consumer ring and freed there (cross-thread frees).
 * Usage: churn_mt [pairs]   (prints a checksum) */
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#define LIVE 10000
#define RING 4096

struct ring {
    void *buf[RING];
    _Atomic size_t head, tail; /* head: consumer, tail: producer */
};

static struct ring rings[2]; /* rings[t]: blocks for thread t to free */
static long pairs_per_thread;
static _Atomic int done[2];

static int push(struct ring *r, void *p) {
    size_t t = atomic_load_explicit(&r->tail, memory_order_relaxed);
    if (t - atomic_load_explicit(&r->head, memory_order_acquire) == RING) return 0;
    r->buf[t % RING] = p;
    atomic_store_explicit(&r->tail, t + 1, memory_order_release);
    return 1;
}

static size_t drain(struct ring *r) {
    size_t h = atomic_load_explicit(&r->head, memory_order_relaxed);
    size_t t = atomic_load_explicit(&r->tail, memory_order_acquire);
    for (size_t i = h; i < t; i++) free(r->buf[i % RING]);
    atomic_store_explicit(&r->head, t, memory_order_release);
    return t - h;
}

static void *worker(void *arg) {
    int me = (int)(intptr_t)arg, other = 1 - me;
    uint64_t rng = 0x9E3779B97F4A7C15ull * (uint64_t)(me + 1);
    unsigned char **slot = calloc(LIVE, sizeof *slot);
    uint64_t sum = 0;
    for (long i = 0; i < pairs_per_thread; i++) {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        size_t k = rng % LIVE;
        if (slot[k]) {
            sum += slot[k][0];
            if ((rng >> 20) % 10 != 0 || !push(&rings[other], slot[k])) free(slot[k]);
        }
        size_t n = 8 + (rng >> 32) % 505;
        unsigned char *p = malloc(n);
        if (!p) exit(1);
        p[0] = (unsigned char)i;
        p[n - 1] = 1;
        slot[k] = p;
        if ((i & 63) == 0) drain(&rings[me]);
    }
    for (size_t k = 0; k < LIVE; k++) free(slot[k]);
    free(slot);
    atomic_store(&done[me], 1);
    while (!atomic_load(&done[other])) drain(&rings[me]);
    drain(&rings[me]);
    return (void *)(uintptr_t)sum;
}

int main(int argc, char **argv) {
    long pairs = argc > 1 ? atol(argv[1]) : 10000000L;
    pairs_per_thread = pairs / 2;
    pthread_t t[2];
    for (int i = 0; i < 2; i++) pthread_create(&t[i], NULL, worker, (void *)(intptr_t)i);
    uint64_t sum = 0;
    for (int i = 0; i < 2; i++) {
        void *r;
        pthread_join(t[i], &r);
        sum += (uint64_t)(uintptr_t)r;
    }
    printf("%llu\n", (unsigned long long)sum);
    return 0;
}
