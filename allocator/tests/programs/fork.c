/* Fork safety: two threads allocate and free continuously while the main thread
 * forks 40 times; every child frees the blocks the parent made before forking
 * (small ones: the first blocks of their classes, from the shared chunk's runs),
 * allocates, frees and exits. A lock inherited in the
 * locked state would hang the child (the test has a timeout). Prints "forked 40". */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static atomic_int stop;

static void *churn(void *arg) {
    unsigned seed = (unsigned)(size_t)arg;
    void *slots[256] = {0};
    while (!atomic_load(&stop)) {
        seed = seed * 1103515245u + 12345u;
        unsigned k = (seed >> 8) % 256;
        free(slots[k]);
        slots[k] = malloc(16 + (seed >> 16) % 70000);
        if (!slots[k]) abort();
    }
    for (int k = 0; k < 256; k++) free(slots[k]);
    return NULL;
}

int main(void) {
    char *pre[64];
    for (int k = 0; k < 64; k++) {
        pre[k] = malloc(1 + k * 61);
        memset(pre[k], k, 1 + k * 61);
    }
    pthread_t t[2];
    for (int i = 0; i < 2; i++) pthread_create(&t[i], NULL, churn, (void *)(size_t)(i + 1));
    int forked = 0;
    for (int i = 0; i < 40; i++) {
        pid_t pid = fork();
        if (pid == 0) {
            for (int k = 0; k < 64; k++) {
                if (pre[k][k * 61] != (char)k) _exit(3);
                free(pre[k]);
            }
            for (int j = 0; j < 2000; j++) {
                char *p = malloc(1 + j * 37 % 200000);
                if (!p) _exit(2);
                p[0] = 1;
                free(p);
            }
            _exit(0);
        }
        int status = 0;
        waitpid(pid, &status, 0);
        if (WIFEXITED(status) && WEXITSTATUS(status) == 0) forked++;
    }
    atomic_store(&stop, 1);
    for (int i = 0; i < 2; i++) pthread_join(t[i], NULL);
    for (int k = 0; k < 64; k++) free(pre[k]);
    printf("forked %d\n", forked);
    return 0;
}
