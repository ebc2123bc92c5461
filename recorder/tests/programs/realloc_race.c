/* 8 threads x 200,000 operations on a shared array of slots, all in one
 * malloc arena: each operation takes a slot's block and reallocates it to
 * another size (often moving it: the old block is released inside the
 * realloc, where another thread's malloc may take it at once), or
 * allocates one, and frees whatever block it displaces. */
#include <malloc.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>

#define THREADS 8
#define OPS 200000
#define SLOTS 1024
static _Atomic(void *) slots[SLOTS];

static void *run(void *arg) {
    uint64_t x = 0x9e3779b97f4a7c15ull * ((uintptr_t)arg + 1);
    for (int i = 0; i < OPS; i++) {
        x ^= x << 13; x ^= x >> 7; x ^= x << 17;
        size_t size = 7000 + (x >> 20) % 290;
        void *p = atomic_exchange(&slots[x % SLOTS], NULL);
        p = p ? realloc(p, size) : malloc(size);
        free(atomic_exchange(&slots[(x >> 32) % SLOTS], p));
    }
    return NULL;
}

int main(void) {
    mallopt(M_ARENA_MAX, 1);
    pthread_t t[THREADS];
    for (long i = 0; i < THREADS; i++) pthread_create(&t[i], NULL, run, (void *)i);
    for (int i = 0; i < THREADS; i++) pthread_join(t[i], NULL);
    for (int i = 0; i < SLOTS; i++) free(slots[i]);
    return 0;
}
