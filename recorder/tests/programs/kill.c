/* 2000 allocations, then SIGKILL (argv[1] == "kill") or _exit(5). */
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
int main(int argc, char **argv) {
    static void *volatile sink;
    for (int i = 0; i < 2000; i++) sink = malloc(7001);
    if (argc > 1 && strcmp(argv[1], "kill") == 0) kill(getpid(), SIGKILL);
    _exit(5);
}
