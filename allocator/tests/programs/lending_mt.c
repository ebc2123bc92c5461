/* Lending under threads: waves of short-lived threads take blocks of every run
 * class (1 to 3000 bytes) in a random order, so a class's first blocks are often
 * a larger class's free run blocks (trimmed from a thread's cache or flushed by a
 * thread that exited); half of each batch is freed by the next thread, some by
 * threads of the next wave, the rest at exit. Each block is grown to its usable
 * size with realloc, which must not move it, and filled with a pattern checked
 * before it is freed. Meanwhile thread 0 of each wave forks; the child, alarmed
 * after 20 s (a lock left held would hang it), takes and frees blocks of every
 * run class from the inherited heap. Prints "ok"; on stderr, "lent N": blocks
 * whose usable size exceeded the smallest seen for their request (borrowed
 * from a larger class). Exits 1 with a message on the first fault. */
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define NT 4
#define WAVES 6
#define ROUNDS 150
#define BATCH 16
#define MAXN 3000
#define BOX 8192

struct blk {
    unsigned char *p;
    size_t n;
    unsigned char v;
};

static struct {
    pthread_mutex_t m;
    struct blk b[BOX];
    int len;
} boxes[NT];

static atomic_size_t min_usable[MAXN + 1];
static atomic_long lent;
static int wave;

static void fail(const char *what, void *p, size_t n) {
    fprintf(stderr, "FAIL %s %p %zu\n", what, p, n);
    fflush(stderr);
    _exit(1);
}

static unsigned rnd(unsigned *s) {
    *s = *s * 1103515245u + 12345u;
    return *s >> 8;
}

static void check(const struct blk *b) {
    for (size_t i = 0; i < b->n; i++)
        if (b->p[i] != (unsigned char)(b->v ^ i)) fail("bytes changed while live", b->p, i);
}

static void drop(struct blk *b) {
    check(b);
    free(b->p);
    b->p = NULL;
}

static void make(struct blk *b, unsigned *s) {
    size_t n = 1 + rnd(s) % MAXN;
    unsigned char *p = malloc(n);
    if (!p || (uintptr_t)p % 16) fail("malloc", p, n);
    size_t u = malloc_usable_size(p);
    if (u < n) fail("usable size below the request", p, u);
    size_t m = atomic_load(&min_usable[n]);
    while ((m == 0 || u < m) && !atomic_compare_exchange_weak(&min_usable[n], &m, u)) {
    }
    if (m != 0 && u > m) atomic_fetch_add(&lent, 1);
    /* Grown to what it holds: in place. */
    uintptr_t was = (uintptr_t)p;
    unsigned char *q = realloc(p, u);
    if ((uintptr_t)q != was) fail("realloc to the usable size moved the block", q, u);
    if (malloc_usable_size(q) != u) fail("usable size changed", q, u);
    b->p = q;
    b->n = u;
    b->v = (unsigned char)rnd(s);
    for (size_t i = 0; i < u; i++) q[i] = (unsigned char)(b->v ^ i);
}

static void child(void) {
    alarm(20);
    void *p[200];
    for (int round = 0; round < 3; round++) {
        for (int i = 0; i < 200; i++) {
            size_t n = 1 + (size_t)(i * 15 + round) % MAXN;
            p[i] = malloc(n);
            if (!p[i]) _exit(2);
            memset(p[i], i, malloc_usable_size(p[i]));
            if (i % 3 == 0) {
                p[i] = realloc(p[i], n * 2);
                if (!p[i]) _exit(3);
            }
        }
        for (int i = 0; i < 200; i++) free(p[i]);
    }
    _exit(0);
}

static void give(int to, struct blk *b) {
    pthread_mutex_lock(&boxes[to].m);
    if (boxes[to].len < BOX) {
        boxes[to].b[boxes[to].len++] = *b;
        b->p = NULL;
    }
    pthread_mutex_unlock(&boxes[to].m);
    if (b->p) drop(b);
}

static void take(int id) {
    pthread_mutex_lock(&boxes[id].m);
    int n = boxes[id].len;
    /* Leave some for the next wave's thread of this index. */
    int keep = n / 4;
    for (int i = keep; i < n; i++) drop(&boxes[id].b[i]);
    boxes[id].len = keep;
    pthread_mutex_unlock(&boxes[id].m);
}

static void *worker(void *arg) {
    int id = (int)(intptr_t)arg;
    unsigned s = 4242u + 1000u * (unsigned)id + 77u * (unsigned)wave;
    struct blk mine[BATCH];
    for (int r = 0; r < ROUNDS; r++) {
        for (int i = 0; i < BATCH; i++) make(&mine[i], &s);
        for (int i = 0; i < BATCH; i++) {
            if (rnd(&s) % 2)
                give((id + 1) % NT, &mine[i]);
            else
                drop(&mine[i]);
        }
        take(id);
        if (id == 0 && r == ROUNDS / 2) {
            pid_t pid = fork();
            if (pid < 0) fail("fork", 0, 0);
            if (pid == 0) child();
            int status = 0;
            waitpid(pid, &status, 0);
            if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) fail("fork child", 0, status);
        }
    }
    return NULL;
}

int main(void) {
    for (int i = 0; i < NT; i++) pthread_mutex_init(&boxes[i].m, NULL);
    for (wave = 0; wave < WAVES; wave++) {
        pthread_t t[NT];
        for (int i = 0; i < NT; i++) pthread_create(&t[i], NULL, worker, (void *)(intptr_t)i);
        for (int i = 0; i < NT; i++) pthread_join(t[i], NULL);
    }
    for (int i = 0; i < NT; i++)
        for (int k = 0; k < boxes[i].len; k++) drop(&boxes[i].b[k]);
    fprintf(stderr, "lent %ld\n", atomic_load(&lent));
    puts("ok");
    return 0;
}
