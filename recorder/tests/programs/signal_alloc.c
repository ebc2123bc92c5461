// A 20 kHz timer signal handler that mallocs and frees while the main loop
// does the same (the test `signal_alloc.rs`, and the README's figure of
// handler pairs recorded). Count the 4000-byte allocations in the trace
// against the runs written to argv[1]:
//   cc -O2 -o signal_alloc recorder/tests/programs/signal_alloc.c
//   alloctrace record -o s.atrace -- ./signal_alloc runs.txt
//   alloctrace dump s.atrace | grep -c size=4000; cat runs.txt
// malloc in a signal handler is undefined in glibc, but this one interrupts
// only tcache operations of the main loop (other sizes), which it does not
// touch. The recorder must add no other way to break: its own memory does
// not come from glibc's allocator (which the handler could re-enter).
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/time.h>
#include <time.h>

#define LOOPS 300000
static volatile long handled;

static void on_timer(int sig) {
    (void)sig;
    void *p = malloc(4000);
    free(p);
    handled++;
}

int main(int argc, char **argv) {
    // A hang ends with SIGTERM after a minute (exit 143), not as a stuck test.
    struct sigevent ev = {0};
    ev.sigev_notify = SIGEV_SIGNAL;
    ev.sigev_signo = SIGTERM;
    timer_t watchdog;
    struct itimerspec minute = {{0, 0}, {60, 0}};
    if (timer_create(CLOCK_MONOTONIC, &ev, &watchdog) || timer_settime(watchdog, 0, &minute, 0))
        return 4;
    // Real time at 20 kHz: thousands of runs, some inside the recorder's hook.
    struct sigaction sa = {0};
    sa.sa_handler = on_timer;
    sigaction(SIGALRM, &sa, 0);
    struct itimerval it = {{0, 50}, {0, 50}};
    setitimer(ITIMER_REAL, &it, 0);
    for (int i = 0; i < LOOPS; i++) {
        void *p = malloc(16 + i % 64);
        free(p);
    }
    struct itimerval off = {{0, 0}, {0, 0}};
    setitimer(ITIMER_REAL, &off, 0);
    FILE *f = fopen(argc > 1 ? argv[1] : "/dev/null", "w");
    if (!f)
        return 2;
    fprintf(f, "%ld\n", handled);
    return fclose(f) ? 3 : 0;
}
