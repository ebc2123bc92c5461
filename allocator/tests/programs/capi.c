/* Exercises every exported entry point of liballoctrace_malloc.so from C, with
 * fill patterns, alignment and errno checks. Prints "ok <usable size of malloc(100)>"
 * so the test can tell which allocator served it (ours: 112, glibc: 104). */
#define _GNU_SOURCE
#include <errno.h>
#include <malloc.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CHECK(c)                                                     \
    do {                                                             \
        if (!(c)) {                                                  \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #c); \
            return 1;                                                \
        }                                                            \
    } while (0)

int main(void) {
    void *p = malloc(100);
    CHECK(p && ((uintptr_t)p % 16) == 0);
    size_t usable = malloc_usable_size(p);
    memset(p, 0x5a, usable);
    p = realloc(p, 5000);
    CHECK(p && ((unsigned char *)p)[99] == 0x5a);
    free(p);
    free(NULL);
    CHECK(malloc_usable_size(NULL) == 0);

    /* volatile: keep the compiler from folding the huge requests away. */
    volatile size_t huge = SIZE_MAX;
    errno = 0;
    CHECK(calloc(huge / 2 + 1, 2) == NULL && errno == ENOMEM);
    errno = 0;
    CHECK(malloc(huge) == NULL && errno == ENOMEM);
    errno = 0;
    CHECK(malloc(huge / 4) == NULL && errno == ENOMEM);
    errno = 0;
    CHECK(reallocarray(NULL, huge, 2) == NULL && errno == ENOMEM);
    unsigned char *z = calloc(1000, 3);
    for (int i = 0; i < 3000; i++) CHECK(z[i] == 0);
    z = reallocarray(z, 10, 1000);
    CHECK(z);
    free(z);

    for (size_t a = 1; a <= 65536; a <<= 1) {
        void *q = NULL;
        CHECK(posix_memalign(&q, a < sizeof(void *) ? sizeof(void *) : a, 33) == 0);
        CHECK(((uintptr_t)q % a) == 0);
        void *r = aligned_alloc(a, 3 * a);
        void *s = memalign(a, 1);
        CHECK(r && s && ((uintptr_t)r % a) == 0 && ((uintptr_t)s % a) == 0);
        memset(r, 1, 3 * a);
        free(q);
        free(r);
        free(s);
    }
    void *q = NULL;
    CHECK(posix_memalign(&q, 3, 8) == EINVAL);
    long page = sysconf(_SC_PAGESIZE);
    void *v = valloc(10), *pv = pvalloc(10);
    CHECK(v && pv && ((uintptr_t)v % page) == 0 && ((uintptr_t)pv % page) == 0);
    CHECK(malloc_usable_size(pv) >= (size_t)page);
    free(v);
    free(pv);

    void *big = malloc(10 << 20);
    memset(big, 7, 10 << 20);
    big = realloc(big, 40 << 20);
    CHECK(((unsigned char *)big)[(10 << 20) - 1] == 7);
    big = realloc(big, 1000);
    CHECK(((unsigned char *)big)[999] == 7);
    CHECK(realloc(big, 0) == NULL);

    printf("ok %zu\n", usable);
    return 0;
}
