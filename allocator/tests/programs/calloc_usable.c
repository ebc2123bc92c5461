// Edge semantics an LD_PRELOAD malloc must keep, with four threads: calloc of recycled
// dirty memory is zero, the whole malloc_usable_size is usable (its last byte too),
// huge alignments fail cleanly, malloc(0) gives distinct blocks. Prints "ok edge2".
#define _GNU_SOURCE
#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#define FAIL(...) do { fprintf(stderr, __VA_ARGS__); fputc('\n', stderr); abort(); } while (0)
static uint64_t rnd(uint64_t *s) { *s ^= *s << 13; *s ^= *s >> 7; *s ^= *s << 17; return *s; }
static size_t sz(uint64_t *s) {
  int r = rnd(s) % 100;
  if (r < 60) return rnd(s) % 512; if (r < 90) return rnd(s) % 40000; if (r < 99) return rnd(s) % 600000;
  return rnd(s) % (8 << 20); }
static void *calloc_dirty(void *arg) {
  uint64_t s = (uintptr_t)arg * 7919 + 3; void *slots[256] = {0}; size_t n[256] = {0};
  for (int i = 0; i < 3000; i++) {
    int k = rnd(&s) % 256;
    if (slots[k]) {  // whole usable size must still hold our fill
      unsigned char *p = slots[k]; size_t u = malloc_usable_size(p);
      if (u < n[k]) FAIL("usable %zu < %zu", u, n[k]);
      for (size_t j = 0; j < u; j += (u > 65536 ? 509 : 1)) if (p[j] != (unsigned char)k) FAIL("block %p (%zu/%zu) byte %zu clobbered", p, n[k], u, j);
      if (u && p[u - 1] != (unsigned char)k) FAIL("last usable byte clobbered");
      free(p); slots[k] = 0;
    }
    size_t m = sz(&s); unsigned char *p;
    if (rnd(&s) % 2) {
      size_t cnt = 1 + rnd(&s) % 8; m = m / cnt + 1;
      p = calloc(cnt, m); m *= cnt;
      if (!p) FAIL("calloc");
      for (size_t j = 0; j < m; j += (m > 65536 ? 257 : 1)) if (p[j]) FAIL("calloc(%zu) not zero at %zu", m, j);
      if (p[m - 1]) FAIL("calloc tail not zero");
    } else if (rnd(&s) % 4 == 0) {
      size_t al = (size_t)64 << (rnd(&s) % 12);
      if (posix_memalign((void **)&p, al, m)) FAIL("posix_memalign");
      if ((uintptr_t)p % al) FAIL("misaligned");
    } else {
      p = malloc(m); if (!p) FAIL("malloc");
    }
    memset(p, k, malloc_usable_size(p));
    slots[k] = p; n[k] = m;
  }
  for (int k = 0; k < 256; k++) free(slots[k]);
  return 0;
}
int main(void) {
  pthread_t t[3];
  for (long i = 0; i < 3; i++) pthread_create(&t[i], 0, calloc_dirty, (void *)i);
  calloc_dirty((void *)9);
  for (int i = 0; i < 3; i++) pthread_join(t[i], 0);
  void *a = malloc(0), *b = malloc(0);
  if (!a || !b || a == b) FAIL("malloc(0) %p %p", a, b);
  free(a); free(b); free(0);
  void *p = (void *)1; int e = posix_memalign(&p, (size_t)1 << 44, 10);
  if (e != ENOMEM && e != EINVAL) FAIL("posix_memalign 2^44: %d", e);
  errno = 0; p = aligned_alloc((size_t)1 << 62, 16); if (p) FAIL("aligned_alloc 2^62 gave %p", p);
  errno = 0; p = memalign((size_t)1 << 63, 16); if (p) FAIL("memalign 2^63 gave %p", p);
  p = reallocarray(0, SIZE_MAX / 4, 8); if (p || errno != ENOMEM) FAIL("reallocarray overflow");
  p = memalign(48, 100); if (!p || (uintptr_t)p % 64) FAIL("memalign(48) %p", p); free(p);
  puts("ok edge2");
  return 0;
}
