/* Runs under threads: eight threads allocate blocks of every size up to 20 KiB
 * (most in the classes whose first blocks come from the shared chunk's runs) with
 * malloc, calloc, realloc, memalign, posix_memalign and aligned_alloc (alignments
 * 32 B to 64 KiB), fill every usable byte with a pattern, and free them on
 * their own thread or hand them to the next one. Meanwhile each thread keeps a
 * growing hoard, so the arena passes 8 MiB (where the chunk map leaves its static
 * prefix for a mapped table) while the others allocate and free. One thread forks
 * on the way; the child frees and allocates blocks of every run class. Checked:
 * results aligned, calloc zero, usable sizes at least the request, realloc keeps
 * the bytes, and no block's bytes change while it is live (two live blocks that
 * overlap would). Prints "ok"; exits 1 with a message on the first fault. */
#include <malloc.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define NT 8
#define SLOTS 512
#define BOX 4096

struct blk {
    unsigned char *p;
    size_t n; /* usable bytes filled */
    unsigned char v;
};

static struct {
    pthread_mutex_t m;
    struct blk b[BOX];
    int len;
} boxes[NT];

static int iters = 20000;
static atomic_int forked;

static void fail(const char *what, void *p, size_t n) {
    fprintf(stderr, "FAIL %s %p %zu\n", what, p, n);
    fflush(stderr);
    _exit(1);
}

static unsigned rnd(unsigned *s) {
    *s = *s * 1103515245u + 12345u;
    return *s >> 8;
}

static void fill(struct blk *b) {
    size_t u = malloc_usable_size(b->p);
    if (u < b->n) fail("usable size below the request", b->p, u);
    b->n = u;
    memset(b->p, b->v, u);
}

static void check(const struct blk *b) {
    for (size_t i = 0; i < b->n; i++)
        if (b->p[i] != b->v) fail("bytes changed while live", b->p, i);
}

static void drop(struct blk *b) {
    check(b);
    free(b->p);
    b->p = NULL;
}

static size_t pick_size(unsigned *s) {
    unsigned r = rnd(s) % 100;
    if (r < 70) return 1 + rnd(s) % 512;
    if (r < 95) return 1 + rnd(s) % 4096;
    return 1 + rnd(s) % 20000;
}

/* A new block of about `n` bytes by one of the entry points. */
static void make(struct blk *b, unsigned *s) {
    size_t n = pick_size(s);
    unsigned kind = rnd(s) % 8;
    size_t align = (size_t)32 << (rnd(s) % 12); /* 32 B .. 64 KiB */
    if (rnd(s) % 4) align = (size_t)32 << (rnd(s) % 7); /* mostly up to 2 KiB */
    void *p = NULL;
    switch (kind) {
    case 0:
    case 1:
    case 2:
        p = malloc(n);
        if ((uintptr_t)p % 16) fail("malloc misaligned", p, n);
        break;
    case 3: {
        size_t k = 1 + rnd(s) % 8;
        n = (n + k - 1) / k * k;
        p = calloc(n / k, k);
        if (!p) fail("calloc", p, n);
        for (size_t i = 0; i < n; i++)
            if (((unsigned char *)p)[i]) fail("calloc not zero", p, i);
        break;
    }
    case 4:
        p = memalign(align, n);
        if ((uintptr_t)p % align) fail("memalign misaligned", p, align);
        break;
    case 5:
        if (posix_memalign(&p, align, n)) fail("posix_memalign", p, n);
        if ((uintptr_t)p % align) fail("posix_memalign misaligned", p, align);
        break;
    case 6:
        n = (n + align - 1) / align * align;
        p = aligned_alloc(align, n);
        if ((uintptr_t)p % align) fail("aligned_alloc misaligned", p, align);
        break;
    default:
        /* realloc from one size to another, into or out of the runs' classes */
        p = malloc(1 + rnd(s) % 300);
        if (!p) fail("malloc", p, 0);
        memset(p, 0x5a, malloc_usable_size(p));
        {
            size_t had = malloc_usable_size(p);
            unsigned char *q = realloc(p, n);
            if (!q) fail("realloc", p, n);
            size_t keep = had < n ? had : n;
            for (size_t i = 0; i < keep; i++)
                if (q[i] != 0x5a) fail("realloc lost bytes", q, i);
            p = q;
        }
        break;
    }
    if (!p) fail("null", p, n);
    b->p = p;
    b->n = n;
    b->v = (unsigned char)(rnd(s) | 1);
    fill(b);
}

static void child(void) {
    /* Every run class, a few blocks each, through the inherited heap. */
    void *p[300];
    for (int round = 0; round < 3; round++) {
        for (int i = 0; i < 300; i++) {
            p[i] = malloc(1 + (i * 16) % 4096);
            if (!p[i]) _exit(2);
            memset(p[i], i, malloc_usable_size(p[i]));
        }
        for (int i = 0; i < 300; i++) free(p[i]);
    }
    _exit(0);
}

static void *worker(void *arg) {
    int id = (int)(intptr_t)arg;
    unsigned s = 12345u + 777u * (unsigned)id;
    struct blk slots[SLOTS];
    memset(slots, 0, sizeof slots);
    /* The hoard: about 2 MiB a thread by the end, grown all along. */
    size_t hoard_n = 0;
    struct blk *hoard = calloc(4096, sizeof *hoard);
    for (int it = 0; it < iters; it++) {
        struct blk *b = &slots[rnd(&s) % SLOTS];
        if (b->p) {
            if (rnd(&s) % 2) {
                drop(b);
            } else {
                check(b);
                int to = (id + 1) % NT;
                pthread_mutex_lock(&boxes[to].m);
                if (boxes[to].len < BOX) {
                    boxes[to].b[boxes[to].len++] = *b;
                    b->p = NULL;
                }
                pthread_mutex_unlock(&boxes[to].m);
                if (b->p) drop(b);
            }
        }
        make(b, &s);
        if (it % 8 == 0 && hoard_n < 4096 && (size_t)it * 4096 / iters >= hoard_n) {
            struct blk *h = &hoard[hoard_n++];
            h->p = malloc(64 + rnd(&s) % 1024);
            if (!h->p) fail("hoard", 0, 0);
            h->n = 1;
            h->v = (unsigned char)id;
            fill(h);
        }
        if (it % 64 == 0) {
            pthread_mutex_lock(&boxes[id].m);
            int n = boxes[id].len;
            struct blk got[BOX];
            memcpy(got, boxes[id].b, n * sizeof got[0]);
            boxes[id].len = 0;
            pthread_mutex_unlock(&boxes[id].m);
            for (int i = 0; i < n; i++) drop(&got[i]);
        }
        if (id == 0 && it == iters / 2) {
            pid_t pid = fork();
            if (pid == 0) child();
            int status = 0;
            waitpid(pid, &status, 0);
            if (WIFEXITED(status) && WEXITSTATUS(status) == 0) atomic_store(&forked, 1);
        }
    }
    for (int i = 0; i < SLOTS; i++)
        if (slots[i].p) drop(&slots[i]);
    for (size_t i = 0; i < hoard_n; i++) drop(&hoard[i]);
    free(hoard);
    return NULL;
}

int main(int argc, char **argv) {
    if (argc > 1) iters = atoi(argv[1]);
    for (int i = 0; i < NT; i++) pthread_mutex_init(&boxes[i].m, NULL);
    pthread_t t[NT];
    for (int i = 0; i < NT; i++) pthread_create(&t[i], NULL, worker, (void *)(intptr_t)i);
    for (int i = 0; i < NT; i++) pthread_join(t[i], NULL);
    for (int i = 0; i < NT; i++)
        for (int k = 0; k < boxes[i].len; k++) drop(&boxes[i].b[k]);
    if (!atomic_load(&forked)) fail("fork child", 0, 0);
    puts("ok");
    return 0;
}
