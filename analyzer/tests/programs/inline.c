/* An allocation inside an always-inline function, for the inlined-frames
 * test (compiled with -O1 -g -fno-optimize-sibling-calls). */
#include <stdlib.h>

void *keep;

static inline __attribute__((always_inline)) void *inner(size_t n) {
    return malloc(n); /* INLINE-LINE */
}

__attribute__((noinline)) void outer(void) {
    keep = inner(16); /* OUTER-LINE */
}

int main(void) {
    outer();
    return 0;
}
