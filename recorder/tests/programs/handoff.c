/* Blocks made by a thread while it is alone, handed to a thread that starts
 * meanwhile. 40 forked children each start a consumer thread that frees
 * what it finds in 64 slots, while their main thread keeps allocating
 * (9000+ bytes: past the thread caches, so freed blocks come back),
 * sometimes reallocating (9100+), and publishing blocks: the first of them
 * are written while the child has one thread (left untimed, dated by the
 * collector), the consumer's frees come after its registration. Each child
 * waits 0-5 ms first, to start at another point of the collector's round. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define CHILDREN 40
#define BLOCKS 5000
#define SLOTS 64

static _Atomic(void *) slots[SLOTS];
static atomic_int done;

static void *consumer(void *arg) {
    (void)arg;
    for (;;) {
        int fin = atomic_load(&done);
        for (int i = 0; i < SLOTS; i++) {
            void *p = atomic_exchange(&slots[i], NULL);
            free(p);
        }
        if (fin) return NULL;
    }
}

static void child(int k) {
    struct timespec ts = {0, (k % 41) * 125000L};
    nanosleep(&ts, NULL);
    pthread_t t;
    if (pthread_create(&t, NULL, consumer, NULL) != 0) exit(2);
    for (int i = 0; i < BLOCKS; i++) {
        void *p = malloc(9000 + i % 64);
        if (i % 3 == 0) p = realloc(p, 9100 + i % 64);
        free(atomic_exchange(&slots[i % SLOTS], p));
    }
    atomic_store(&done, 1);
    pthread_join(t, NULL);
}

int main(void) {
    for (int k = 0; k < CHILDREN; k++) {
        pid_t pid = fork();
        if (pid < 0) return 1;
        if (pid == 0) {
            child(k);
            exit(0);
        }
        int st;
        if (waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || WEXITSTATUS(st) != 0) return 1;
    }
    return 0;
}
