/* Leaks three 24-byte blocks from make_leak and frees one from churn.
 * Used by the analyzer's tests (symbolization, and recorded runs once the
 * recorder has a library API). Lines marked LEAK-LINE and FREE-LINE are
 * looked up by the tests. */
#include <stdlib.h>
#include <stdio.h>

void *keep[3];

__attribute__((noinline)) void make_leak(int i) {
    keep[i] = malloc(24); /* LEAK-LINE */
}

__attribute__((noinline)) void churn(void) {
    void *p = malloc(100);
    free(p); /* FREE-LINE */
}

int main(void) {
    for (int i = 0; i < 3; i++)
        make_leak(i);
    churn();
    keep[0] = keep[1] = keep[2] = NULL;
    return 0;
}
