/* 8 threads x 200,000 operations on a shared array of slots: each operation
 * allocates a block and frees whatever block (often another thread's) it
 * displaces. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>

#define THREADS 8
#define OPS 200000
#define SLOTS 4096
static _Atomic(void *) slots[SLOTS];

static void *run(void *arg) {
    uint64_t x = 0x9e3779b97f4a7c15ull * ((uintptr_t)arg + 1);
    for (int i = 0; i < OPS; i++) {
        x ^= x << 13; x ^= x >> 7; x ^= x << 17;
        void *old = atomic_exchange(&slots[x % SLOTS], malloc(7000 + x % 64));
        free(old);
    }
    return NULL;
}

int main(void) {
    pthread_t t[THREADS];
    for (long i = 0; i < THREADS; i++) pthread_create(&t[i], NULL, run, (void *)i);
    for (int i = 0; i < THREADS; i++) pthread_join(t[i], NULL);
    for (int i = 0; i < SLOTS; i++) free(slots[i]);
    return 0;
}
