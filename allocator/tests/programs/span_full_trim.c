/* Fills whole spans of the 16-byte class (4088 blocks each), then frees the blocks from
   the top down: when a span's blocks out fall to a quarter, its top trim walks a free
   list holding the span's last blocks (indexes 4032..4087). Its bitmap had 63 words,
   so this aborted (python3's test_tracemalloc did, in tracemalloc.clear_traces()). */
#include <stdio.h>
#include <stdlib.h>
#define N 40000
static void *volatile p[N];
int main(void) {
    for (int i = 0; i < N; i++) p[i] = malloc(16);
    for (int i = N - 1; i >= 0; i--) free(p[i]);
    puts("ok span_full_trim");
    return 0;
}
