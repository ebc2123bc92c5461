/* Execs itself with "child": the new image allocates into its own trace. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "child") == 0) {
        free(malloc(7002));
        return 7;
    }
    void *volatile p = malloc(7001);
    (void)p;
    char *args[] = {argv[0], "child", NULL};
    execv("/proc/self/exe", args);
    return 1;
}
