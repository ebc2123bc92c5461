// Allocator stress modelled on the public mimalloc-bench workloads (our own code):
// larson, xmalloc, cache-scratch, realloc growth, large alignments, short-lived threads,
// fork while threads allocate. usage: bench_workloads MODE [scale [outfile]]; on success prints
// "ok MODE calls=N threads=T children=C" (N: malloc-family calls made, at least) and exits 0.
#define _GNU_SOURCE
#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static int scale = 1;
static atomic_long calls;  // malloc-family calls the program made (at least)
static atomic_long threads, children;  // threads and processes it started
#define FAIL(...) do { fprintf(stderr, __VA_ARGS__); fputc('\n', stderr); abort(); } while (0)

static uint64_t rnd(uint64_t *s) { *s ^= *s << 13; *s ^= *s >> 7; *s ^= *s << 17; return *s; }
static void fill(unsigned char *p, size_t n, unsigned tag) {
  if (n < 3) { p[0] = tag; return; }
  p[0] = tag; p[n - 1] = tag ^ 0x5a; p[n / 2] = tag + 1; }
static void check(unsigned char *p, size_t n, unsigned tag) {
  if (n < 3) { if (p[0] != (unsigned char)tag) FAIL("corrupt small block %p", (void *)p); return; }
  if (p[0] != (unsigned char)tag || p[n - 1] != (unsigned char)(tag ^ 0x5a) || p[n / 2] != (unsigned char)(tag + 1))
    FAIL("corrupt block %p size %zu tag %u", (void *)p, n, tag); }
static size_t rsize(uint64_t *s) {
  uint64_t r = rnd(s) % 1000;
  if (r < 700) return 1 + rnd(s) % 128;
  if (r < 950) return 1 + rnd(s) % 4096;
  if (r < 998) return 1 + rnd(s) % 262144;
  return 1 + rnd(s) % (4 << 20);
}

/* ---- larson: threads replace random slots; slot arrays rotate between threads ---- */
#define LSLOTS 1000
#define LTHREADS 4
struct slot { unsigned char *p; size_t n; unsigned tag; };
static struct slot *arrays[LTHREADS];
static pthread_barrier_t lbar;
static void *larson_thread(void *arg) {
  long id = (long)arg; uint64_t s = 0x9e3779b97f4a7c15ull * (id + 1);
  for (int round = 0; round < 20 * scale; round++) {
    struct slot *a = arrays[(id + round) % LTHREADS];  // blocks allocated by other threads
    for (int i = 0; i < 4000; i++) {
      struct slot *sl = &a[rnd(&s) % LSLOTS];
      if (sl->p) { check(sl->p, sl->n, sl->tag); free(sl->p); calls++; }
      sl->n = rsize(&s); sl->tag = rnd(&s) & 0xff;
      sl->p = malloc(sl->n); calls++;
      if (!sl->p) FAIL("malloc %zu failed", sl->n);
      fill(sl->p, sl->n, sl->tag);
    }
    pthread_barrier_wait(&lbar);
  }
  return 0;
}
static void larson(void) {
  pthread_t t[LTHREADS];
  pthread_barrier_init(&lbar, 0, LTHREADS);
  for (int i = 0; i < LTHREADS; i++) { arrays[i] = calloc(LSLOTS, sizeof(struct slot)); calls++; }
  for (long i = 0; i < LTHREADS; i++) { pthread_create(&t[i], 0, larson_thread, (void *)i); threads++; }
  for (int i = 0; i < LTHREADS; i++) pthread_join(t[i], 0);
  for (int i = 0; i < LTHREADS; i++) {
    for (int j = 0; j < LSLOTS; j++) if (arrays[i][j].p) { check(arrays[i][j].p, arrays[i][j].n, arrays[i][j].tag); free(arrays[i][j].p); calls++; }
    free(arrays[i]); calls++;
  }
}

/* ---- xmalloc: producers malloc, consumers free, through a locked queue ---- */
#define QCAP 4096
static void *q[QCAP]; static size_t qsz[QCAP]; static int qh, qt, qn, producers_left;
static pthread_mutex_t qm = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t qc = PTHREAD_COND_INITIALIZER;
static void *producer(void *arg) {
  uint64_t s = 12345 + (long)arg;
  for (int i = 0; i < 50000 * scale; i++) {
    size_t n = rsize(&s) % 2048 + 1; unsigned char *p = malloc(n); calls++;
    if (!p) FAIL("malloc"); fill(p, n, n & 0xff);
    pthread_mutex_lock(&qm);
    while (qn == QCAP) pthread_cond_wait(&qc, &qm);
    q[qt] = p; qsz[qt] = n; qt = (qt + 1) % QCAP; qn++;
    pthread_cond_broadcast(&qc); pthread_mutex_unlock(&qm);
  }
  pthread_mutex_lock(&qm); producers_left--; pthread_cond_broadcast(&qc); pthread_mutex_unlock(&qm);
  return 0;
}
static void *consumer(void *arg) {
  (void)arg;
  for (;;) {
    pthread_mutex_lock(&qm);
    while (qn == 0 && producers_left) pthread_cond_wait(&qc, &qm);
    if (qn == 0) { pthread_mutex_unlock(&qm); return 0; }
    void *p = q[qh]; size_t n = qsz[qh]; qh = (qh + 1) % QCAP; qn--;
    pthread_cond_broadcast(&qc); pthread_mutex_unlock(&qm);
    check(p, n, n & 0xff); free(p); calls++;
  }
}
static void xmalloc(void) {
  pthread_t t[6]; producers_left = 3;
  for (long i = 0; i < 3; i++) { pthread_create(&t[i], 0, producer, (void *)i); threads++; }
  for (long i = 3; i < 6; i++) { pthread_create(&t[i], 0, consumer, 0); threads++; }
  for (int i = 0; i < 6; i++) pthread_join(t[i], 0);
}

/* ---- cache-scratch: each thread frees an object made by main, then churns small ones ---- */
static void *scratch_thread(void *arg) {
  char *o = arg; free(o); calls++;
  for (int i = 0; i < 2000 * scale; i++) {
    char *p = malloc(8); calls++;
    for (int k = 0; k < 200; k++) { p[k & 7] = (char)k; __asm__ volatile("" ::: "memory"); }
    free(p); calls++;
  }
  return 0;
}
static void cache_scratch(void) {
  pthread_t t[4]; char *objs[4];
  for (int i = 0; i < 4; i++) { objs[i] = malloc(8); calls++; }
  for (int i = 0; i < 4; i++) { pthread_create(&t[i], 0, scratch_thread, objs[i]); threads++; }
  for (int i = 0; i < 4; i++) pthread_join(t[i], 0);
}

/* ---- realloc growth and shrink, several buffers interleaved ---- */
static void realloc_growth(void) {
  uint64_t s = 777; unsigned char *b[4] = {0}; size_t n[4] = {0};
  for (int i = 0; i < 2000 * scale; i++) {
    int k = rnd(&s) % 4;
    size_t m = (rnd(&s) % 8 == 0 && n[k] > 16) ? n[k] / 2 : n[k] + 1 + rnd(&s) % (n[k] / 4 + 64);
    if (m > (16u << 20)) m = 1 + rnd(&s) % 100;
    unsigned char *p = realloc(b[k], m); calls++;
    if (!p) FAIL("realloc %zu", m);
    size_t keep = n[k] < m ? n[k] : m;
    for (size_t j = 0; j < keep; j += 4093) if (p[j] != (unsigned char)(j * 7 + k)) FAIL("realloc lost data at %zu", j);
    if (keep && p[keep - 1] != (unsigned char)((keep - 1) * 7 + k)) FAIL("realloc lost tail");
    for (size_t j = keep; j < m; j++) p[j] = (unsigned char)(j * 7 + k);
    // re-establish pattern for positions we check (sampled + tail)
    b[k] = p; n[k] = m;
  }
  for (int k = 0; k < 4; k++) { free(b[k]); calls++; }
  void *z = realloc(0, 10); calls++; if (!z) FAIL("realloc(NULL)");
  z = realloc(z, 0); calls++;  // glibc frees and returns NULL
  if (z) { free(z); calls++; }
}

/* ---- aligned allocation with large alignments ---- */
static void aligned(void) {
  uint64_t s = 4242;
  for (int i = 0; i < 1000 * scale; i++) {
    size_t al = (size_t)1 << (rnd(&s) % 25);  // up to 16 MiB
    if (al < sizeof(void *)) al = sizeof(void *);
    size_t n = rnd(&s) % 3 == 0 ? al * (1 + rnd(&s) % 3) : 1 + rnd(&s) % 70000;
    void *p = 0; int how = rnd(&s) % 3;
    if (how == 0) { int e = posix_memalign(&p, al, n); calls++; if (e) FAIL("posix_memalign %zu %zu: %d", al, n, e); }
    else if (how == 1) { p = aligned_alloc(al, n); calls++; }
    else { p = memalign(al, n); calls++; }
    if (!p) FAIL("aligned alloc %zu %zu (how %d) returned NULL", al, n, how);
    if ((uintptr_t)p % al) FAIL("misaligned %p for %zu", p, al);
    if (malloc_usable_size(p) < n) FAIL("usable size %zu < %zu", malloc_usable_size(p), n);
    memset(p, 0xab, n);
    if (rnd(&s) % 4 == 0) { p = realloc(p, n * 2 + 1); calls++; if (!p) FAIL("realloc aligned"); if (((unsigned char *)p)[n - 1] != 0xab) FAIL("realloc of aligned lost data"); }
    free(p); calls++;
  }
  void *p = (void *)1;
  if (posix_memalign(&p, 24, 10) != EINVAL) FAIL("posix_memalign(24) should be EINVAL");
  if (p != (void *)1) FAIL("posix_memalign changed *memptr on error");
  calls++;
  p = valloc(100); calls++; if (!p || (uintptr_t)p % 4096) FAIL("valloc"); free(p); calls++;
  p = pvalloc(100); calls++; if (!p || (uintptr_t)p % 4096 || malloc_usable_size(p) < 4096) FAIL("pvalloc"); free(p); calls++;
  errno = 0; p = malloc(SIZE_MAX - 100); calls++; if (p || errno != ENOMEM) FAIL("huge malloc: %p errno %d", p, errno);
  errno = 0; p = calloc(SIZE_MAX / 2, 3); calls++; if (p || errno != ENOMEM) FAIL("overflowing calloc: %p errno %d", p, errno);
  errno = 0; p = malloc(10); calls++; void *r = realloc(p, SIZE_MAX - 100); calls++;
  if (r || errno != ENOMEM) FAIL("huge realloc: %p errno %d", r, errno);
  free(p); calls++;
  unsigned char *c = calloc(1000, 1000); calls++;
  for (int i = 0; i < 1000000; i++) if (c[i]) FAIL("calloc not zero at %d", i);
  free(c); calls++;
}

/* ---- many short-lived threads; some leave blocks for main to free ---- */
static void *short_thread(void *arg) {
  uint64_t s = (uintptr_t)arg * 31 + 1; void **keep = malloc(16 * sizeof(void *)); calls++;
  for (int i = 0; i < 16; i++) { keep[i] = malloc(rsize(&s) % 1024 + 1); calls++; }
  for (int i = 0; i < 8; i++) { free(keep[i]); calls++; keep[i] = 0; }
  return keep;  // main frees the rest after this thread has exited
}
static void many_threads(void) {
  for (int round = 0; round < 200 * scale; round++) {
    pthread_t t[8]; void *r[8];
    for (long i = 0; i < 8; i++) if (pthread_create(&t[i], 0, short_thread, (void *)(round * 8 + i))) FAIL("pthread_create"); else threads++;
    for (int i = 0; i < 8; i++) pthread_join(t[i], &r[i]);
    for (int i = 0; i < 8; i++) { void **k = r[i]; for (int j = 8; j < 16; j++) { free(k[j]); calls++; } free(k); calls++; }
  }
}

/* ---- fork while other threads allocate ---- */
static atomic_int stop;
static void *churn(void *arg) {
  uint64_t s = (uintptr_t)arg + 99; void *slots[64] = {0};
  while (!stop) {
    int k = rnd(&s) % 64;
    if (slots[k]) calls++;  // free(NULL) is no call to count
    free(slots[k]); slots[k] = malloc(rsize(&s) % 100000 + 1); calls++;
  }
  for (int k = 0; k < 64; k++) if (slots[k]) { free(slots[k]); calls++; }
  return 0;
}
static void *child_thread(void *arg) { (void)arg; for (int i = 0; i < 1000; i++) { void *volatile p = malloc(i * 8 + 1); free(p); } return 0; }
static void fork_mt(void) {
  pthread_t t[3];
  for (long i = 0; i < 3; i++) { pthread_create(&t[i], 0, churn, (void *)i); threads++; }
  for (int i = 0; i < 20 * scale; i++) {
    pid_t pid = fork();
    if (pid < 0) FAIL("fork");
    children++;
    if (pid == 0) {
      uint64_t s = i + 5; void *v[100];
      for (int j = 0; j < 100; j++) v[j] = malloc(rsize(&s));
      for (int j = 0; j < 100; j++) free(v[j]);
      pthread_t c; pthread_create(&c, 0, child_thread, 0); pthread_join(c, 0);
      _exit(7);
    }
    int st; if (waitpid(pid, &st, 0) != pid) FAIL("waitpid");
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 7) FAIL("child %d status %#x", i, st);
  }
  stop = 1;
  for (int i = 0; i < 3; i++) pthread_join(t[i], 0);
}

int main(int argc, char **argv) {
  if (argc < 2) { fprintf(stderr, "usage: stress MODE [scale]\n"); return 2; }
  if (argc > 2) scale = atoi(argv[2]);
  if (argc > 3 && !freopen(argv[3], "w", stdout)) return 2;  // the result line goes there
  const char *m = argv[1];
  if (!strcmp(m, "larson")) larson();
  else if (!strcmp(m, "xmalloc")) xmalloc();
  else if (!strcmp(m, "cache-scratch")) cache_scratch();
  else if (!strcmp(m, "realloc")) realloc_growth();
  else if (!strcmp(m, "aligned")) aligned();
  else if (!strcmp(m, "threads")) many_threads();
  else if (!strcmp(m, "fork")) fork_mt();
  else { fprintf(stderr, "unknown mode %s\n", m); return 2; }
  printf("ok %s calls=%ld threads=%ld children=%ld\n", m, (long)calls, (long)threads, (long)children);
  return 0;
}
