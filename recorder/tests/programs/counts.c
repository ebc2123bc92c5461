/* Every C allocation function, with sizes 7000+ so the test can tell them
 * apart from libc's own allocations; two blocks leak at named functions. */
#define _GNU_SOURCE
#include <malloc.h>
#include <stdlib.h>

void *leaky_one(void) { return malloc(7100); }
void *leaky_two(void) { return calloc(1, 7200); }

int main(void) {
    void *m1 = malloc(7001), *m2 = malloc(7002), *m3 = malloc(7003);
    void *c1 = calloc(1, 7004), *c2 = calloc(7, 1001); /* 7007 */
    m1 = realloc(m1, 7010);
    m2 = realloc(m2, 7011);
    m3 = reallocarray(m3, 7, 1003); /* 7021 */
    void *pm = NULL;
    if (posix_memalign(&pm, 64, 7030)) return 1;
    void *aa = aligned_alloc(128, 7040 + 128 - 7040 % 128);
    void *ma = memalign(256, 7050);
    void *va = valloc(7060);
    void *pv = pvalloc(7070);
    free(m1); free(m2); free(m3); free(c1); free(c2);
    free(pm); free(aa); free(ma); free(va); free(pv);
    leaky_one();
    leaky_two();
    return 0;
}
