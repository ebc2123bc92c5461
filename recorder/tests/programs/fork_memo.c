// Forks from a thread whose unwind memo is warm, then calls the same site
// again in the child; forks a child with backtraces off
// (ALLOCTRACE_MAX_DEPTH=0) and one with recording off (no ALLOCTRACE_DIR).
// Sizes tell the parts apart: 7002 the thread's site (2000 per call of
// `work`), 7003 the depth-0 child, 7004 the unrecorded child, 7005 the end.
#include <string.h>
/* Review probe: a thread warms the unwind memo at one call site, forks; the
   child calls the same site (same sp, same hook ip): its memo entries are the
   parent's (old stack ids), which must not hit. Then forks with recording
   disabled (ALLOCTRACE_DIR unset) and with no backtraces (depth 0). */
#include <pthread.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>
__attribute__((noinline)) void work(int n, size_t sz) {
    for (int i = 0; i < n; i++) { void *volatile p = malloc(sz); free(p); }
}
static void *thr(void *a) {
    (void)a;
    for (int round = 0; round < 2; round++) {
        work(2000, 7002);
        if (round == 0) {
            pid_t pid = fork();
            if (pid > 0) { int st; waitpid(pid, &st, 0); if (st) return (void *)1; }
        }
    }
    return 0;
}
int main(void) {
    pthread_t t;
    void *r;
    pthread_create(&t, 0, thr, 0);
    pthread_join(t, &r);
    if (getenv("ALLOCTRACE_DIR") == 0) _exit(0); /* a child: done */
    /* A child with no backtraces. */
    setenv("ALLOCTRACE_MAX_DEPTH", "0", 1);
    pid_t pid = fork();
    if (pid == 0) { work(2000, 7003); _exit(0); }
    int st; waitpid(pid, &st, 0);
    unsetenv("ALLOCTRACE_MAX_DEPTH");
    /* A child with recording disabled. */
    char *dir = strdup(getenv("ALLOCTRACE_DIR"));
    unsetenv("ALLOCTRACE_DIR");
    pid = fork();
    if (pid == 0) {
        work(2000, 7004);
        pthread_create(&t, 0, thr, 0); pthread_join(t, 0);
        _exit(0);
    }
    waitpid(pid, &st, 0);
    setenv("ALLOCTRACE_DIR", dir, 1);
    work(10, 7005);
    return r != 0;
}
