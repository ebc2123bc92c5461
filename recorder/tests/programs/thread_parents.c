/* Threads that return, call pthread_exit, or are cancelled, one created by
 * another thread; each allocates once. Exits 0 when every thread ended. */
#include <pthread.h>
#include <stdlib.h>
#include <unistd.h>

static void *returns(void *arg) {
    free(malloc(7101));
    return arg;
}

static void *exits(void *arg) {
    free(malloc(7102));
    pthread_exit(arg);
    return NULL;
}

static void *cancelled(void *arg) {
    free(malloc(7103));
    for (;;) pause(); /* a cancellation point */
    return arg;
}

static void *spawner(void *arg) {
    pthread_t t;
    free(malloc(7104));
    if (pthread_create(&t, NULL, returns, arg) != 0) return (void *)1;
    pthread_join(t, NULL);
    return NULL;
}

int main(void) {
    pthread_t a, b, c, d;
    void *r;
    if (pthread_create(&a, NULL, returns, (void *)5) || pthread_create(&b, NULL, exits, (void *)6) ||
        pthread_create(&c, NULL, cancelled, NULL) || pthread_create(&d, NULL, spawner, NULL))
        return 1;
    pthread_join(a, &r);
    if (r != (void *)5) return 2;
    pthread_join(b, &r);
    if (r != (void *)6) return 3;
    usleep(20000);
    pthread_cancel(c);
    pthread_join(c, &r);
    if (r != PTHREAD_CANCELED) return 4;
    pthread_join(d, &r);
    if (r != NULL) return 5;
    return 0;
}
