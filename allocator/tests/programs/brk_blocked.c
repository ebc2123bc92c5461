/* The program break cannot grow: a page is mapped right above it before the
 * program allocates much. malloc must go on working (glibc falls back to mmap;
 * a drop-in malloc must too). Prints "ok <blocks> <checksum>" when every block
 * held its contents. */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#ifndef MAP_FIXED_NOREPLACE
#define MAP_FIXED_NOREPLACE 0x100000
#endif

enum { N = 200000 };
static unsigned char *blocks[N];

int main(void) {
    uintptr_t brk_now = (uintptr_t)sbrk(0);
    uintptr_t at = (brk_now + 4095) & ~(uintptr_t)4095;
    void *blocker = mmap((void *)at, 4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
    if (blocker != (void *)at) {
        printf("could not map the blocker\n");
        return 2;
    }
    if (sbrk(1 << 16) != (void *)-1) {
        printf("the break still grows\n");
        return 3;
    }
    unsigned long sum = 0;
    for (int i = 0; i < N; i++) {
        size_t size = 16 + (size_t)(i * 7919) % 700;
        blocks[i] = malloc(size);
        if (blocks[i] == NULL) {
            printf("malloc failed at block %d\n", i);
            return 1;
        }
        memset(blocks[i], i & 0xff, size);
    }
    for (int i = 0; i < N; i++) {
        size_t size = 16 + (size_t)(i * 7919) % 700;
        for (size_t j = 0; j < size; j++) {
            if (blocks[i][j] != (unsigned char)(i & 0xff)) {
                printf("block %d overwritten\n", i);
                return 4;
            }
        }
        sum += size;
        free(blocks[i]);
    }
    printf("ok %d %lu\n", N, sum);
    return 0;
}
