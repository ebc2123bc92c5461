/* One thread allocates alone (sizes 7400+), then 4 threads pass blocks
 * between them (7600+), then the main thread alone again (7500+): the first
 * phase's times are whole microseconds by default, the rest are not. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>

#define THREADS 4
#define OPS 20000
#define SLOTS 512
static _Atomic(void *) slots[SLOTS];

static void *run(void *arg) {
    uint64_t x = 0x9e3779b97f4a7c15ull * ((uintptr_t)arg + 1);
    for (int i = 0; i < OPS; i++) {
        x ^= x << 13; x ^= x >> 7; x ^= x << 17;
        void *old = atomic_exchange(&slots[x % SLOTS], malloc(7600 + x % 64));
        free(old);
    }
    return NULL;
}

static void alone(size_t base) {
    static void *keep[64];
    for (int i = 0; i < 2000; i++) {
        free(keep[i % 64]);
        keep[i % 64] = malloc(base + i % 64);
    }
    for (int i = 0; i < 64; i++) {
        free(keep[i]);
        keep[i] = NULL;
    }
}

int main(void) {
    alone(7400);
    pthread_t t[THREADS];
    for (long i = 0; i < THREADS; i++) pthread_create(&t[i], NULL, run, (void *)i);
    for (int i = 0; i < THREADS; i++) pthread_join(t[i], NULL);
    for (int i = 0; i < SLOTS; i++) free(slots[i]);
    alone(7500);
    return 0;
}
