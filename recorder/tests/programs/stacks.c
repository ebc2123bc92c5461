/* Allocations from many stacks that share stack pointers: two recursions
 * with frames of the same size (the same sp at the same depth, other return
 * addresses), one function reached from several call sites, depths past the
 * depth cap, and stacks whose words change between calls at the same sp. */
#include <stdlib.h>
#include <string.h>

static void *keep[64];

__attribute__((noinline)) static void *leaf(size_t n) { return malloc(n); }

__attribute__((noinline)) static void rec_a(int depth, int i) {
    volatile char pad[32];
    pad[0] = (char)i;
    if (depth > 0) {
        rec_a(depth - 1, i);
        return;
    }
    free(keep[i % 64]);
    keep[i % 64] = leaf(16 + i % 7);
}

__attribute__((noinline)) static void rec_b(int depth, int i) {
    volatile char pad[32];
    pad[0] = (char)i;
    if (depth > 0) {
        rec_b(depth - 1, i);
        return;
    }
    free(keep[i % 64]);
    keep[i % 64] = leaf(24 + i % 5);
}

/* Mutual recursion: the same depth through different paths. */
__attribute__((noinline)) static void mix_b(int depth, int i, unsigned path);
__attribute__((noinline)) static void mix_a(int depth, int i, unsigned path) {
    volatile char pad[32];
    pad[0] = (char)depth;
    if (depth == 0) {
        keep[i % 64] = realloc(keep[i % 64], 8 + (i % 13) * 8);
        return;
    }
    if (path & 1) mix_b(depth - 1, i, path >> 1);
    else mix_a(depth - 1, i, path >> 1);
}
__attribute__((noinline)) static void mix_b(int depth, int i, unsigned path) {
    volatile char pad[32];
    pad[1] = (char)depth;
    if (depth == 0) {
        void *p = calloc(2, 8 + i % 3);
        free(p);
        return;
    }
    if (path & 1) mix_a(depth - 1, i, path >> 1);
    else mix_b(depth - 1, i, path >> 1);
}

int main(void) {
    for (int i = 0; i < 20000; i++) {
        int depth = (i * 7) % 90; /* up to past the cap of 64 frames */
        if (i % 2) rec_a(depth, i);
        else rec_b(depth, i);
        mix_a(i % 12, i, (unsigned)(i * 2654435761u) >> 20);
        if (i % 3 == 0) free(leaf(8)); /* a call site of its own */
        if (i % 5 == 0) {
            char *s = strdup("stack");
            free(s);
        }
    }
    for (int i = 0; i < 64; i++) free(keep[i]);
    return 0;
}
