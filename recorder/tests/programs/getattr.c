/* Threads whose first act is pthread_getattr_np (the JVM's do): glibc
 * reallocates inside it while holding the thread's lock, so the hook's
 * unwinder must not ask it for the stack's bounds again. alarm() turns a
 * deadlock into a failure instead of a hung test. */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdlib.h>
#include <unistd.h>

static void *run(void *arg) {
    pthread_attr_t a;
    (void)arg;
    if (pthread_getattr_np(pthread_self(), &a) != 0) return (void *)1;
    pthread_attr_destroy(&a);
    for (int i = 0; i < 10; i++) free(malloc(3131));
    return NULL;
}

int main(void) {
    pthread_t t[4];
    alarm(20);
    for (int i = 0; i < 4; i++) pthread_create(&t[i], NULL, run, NULL);
    for (int i = 0; i < 4; i++) {
        void *r;
        pthread_join(t[i], &r);
        if (r) return 2;
    }
    return 0;
}
