/* mt.c: a small multithreaded allocation workload for the sample traces.
 *
 * Four producer threads allocate messages of varied sizes (malloc, calloc,
 * aligned_alloc, realloc to grow some) and hand them through a shared ring to
 * two consumer threads, which free them: most frees happen on another thread
 * than the allocation. Each producer also keeps a small private working set.
 *
 * cc -O2 -pthread -o mt mt.c && ./mt [MESSAGES_PER_PRODUCER]
 */
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define PRODUCERS 4
#define CONSUMERS 2
#define RING 256

static void *ring[RING];
static unsigned head, tail, done_producers;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t not_empty = PTHREAD_COND_INITIALIZER;
static pthread_cond_t not_full = PTHREAD_COND_INITIALIZER;
static long messages = 20000;

static uint64_t next(uint64_t *s) {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static void put(void *p) {
    pthread_mutex_lock(&lock);
    while (head - tail == RING)
        pthread_cond_wait(&not_full, &lock);
    ring[head++ % RING] = p;
    pthread_cond_signal(&not_empty);
    pthread_mutex_unlock(&lock);
}

static void *get(void) {
    pthread_mutex_lock(&lock);
    while (head == tail && done_producers < PRODUCERS)
        pthread_cond_wait(&not_empty, &lock);
    void *p = head == tail ? NULL : ring[tail++ % RING];
    pthread_cond_signal(&not_full);
    pthread_mutex_unlock(&lock);
    return p;
}

static void *producer(void *arg) {
    uint64_t s = 0x9e3779b97f4a7c15ull * ((uintptr_t)arg + 1);
    void *keep[64] = {0};
    for (long i = 0; i < messages; i++) {
        size_t size = 16 + next(&s) % ((i % 100 == 0) ? 65536 : 512);
        char *m;
        switch (next(&s) % 4) {
        case 0: m = calloc(1, size); break;
        case 1: m = aligned_alloc(64, (size + 63) & ~(size_t)63); break;
        default: m = malloc(size); break;
        }
        memset(m, 'x', size);
        if (next(&s) % 8 == 0) {
            char *g = realloc(m, size * 2);
            if (g) { m = g; memset(m, 'y', size * 2); }
        }
        unsigned k = next(&s) % 64;
        if (next(&s) % 4 == 0) {
            free(keep[k]);
            keep[k] = m;
        } else {
            put(m);
        }
    }
    for (int k = 0; k < 64; k++)
        free(keep[k]);
    pthread_mutex_lock(&lock);
    done_producers++;
    pthread_cond_broadcast(&not_empty);
    pthread_mutex_unlock(&lock);
    return NULL;
}

static void *consumer(void *arg) {
    (void)arg;
    void *p;
    while ((p = get()) != NULL)
        free(p);
    return NULL;
}

int main(int argc, char **argv) {
    if (argc > 1)
        messages = atol(argv[1]);
    pthread_t t[PRODUCERS + CONSUMERS];
    for (long i = 0; i < PRODUCERS; i++)
        pthread_create(&t[i], NULL, producer, (void *)i);
    for (long i = 0; i < CONSUMERS; i++)
        pthread_create(&t[PRODUCERS + i], NULL, consumer, NULL);
    for (int i = 0; i < PRODUCERS + CONSUMERS; i++)
        pthread_join(t[i], NULL);
    return 0;
}
