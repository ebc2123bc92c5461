/* The child's own allocations go to the child's trace. */
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>
int main(void) {
    void *volatile p = malloc(7001);
    pid_t pid = fork();
    if (pid == 0) {
        for (int i = 0; i < 3; i++) free(malloc(7002));
        _exit(0);
    }
    int st;
    waitpid(pid, &st, 0);
    free(p);
    return WEXITSTATUS(st);
}
