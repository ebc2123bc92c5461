// 1,000 threads alive at once, each making 100 allocations and freeing them
// after a barrier; prints its resident set while all are alive. The figures
// of "Many threads" in BENCHMARKS.md: cc -O2 -pthread -o many_threads
// recorder/bench/many_threads.c, then record it and read `info` (events
// dropped) and the printed VmRSS.
#include <pthread.h>
#include <stdlib.h>
#include <stdio.h>
static pthread_barrier_t b;
void *run(void *a) { (void)a; void *p[100]; for (int i = 0; i < 100; i++) p[i] = malloc(32 + i); pthread_barrier_wait(&b); for (int i = 0; i < 100; i++) free(p[i]); return 0; }
int main() { enum { N = 1000 }; pthread_t t[N]; pthread_barrier_init(&b, 0, N + 1);
  for (int i = 0; i < N; i++) if (pthread_create(&t[i], 0, run, 0)) { printf("create failed at %d\n", i); return 1; }
  FILE *f = fopen("/proc/self/status", "r"); char l[256]; while (fgets(l, sizeof l, f)) if (l[0]=='V' && l[2]=='R') fputs(l, stdout); fclose(f);
  pthread_barrier_wait(&b); for (int i = 0; i < N; i++) pthread_join(t[i], 0); puts("ok"); return 0; }
