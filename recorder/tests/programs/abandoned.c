/* Execs itself once, after making a directory where the collector would
 * write the new image's trace: the collector cannot make that trace and
 * gives up the image's shared file. The new image then allocates far more
 * than its file's chunks hold, and must still run to its end. */
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc == 2) {
        char path[4096];
        snprintf(path, sizeof path, "%s/out.%d.1.atrace", argv[1], (int)getpid());
        if (mkdir(path, 0700) != 0) return 2;
        execl(argv[0], argv[0], argv[1], "again", (char *)0);
        return 3;
    }
    /* 56 bytes of records per pair: 5 M pairs are twice the 128 MiB of chunks. */
    for (long i = 0; i < 5000000; i++) free(malloc(16));
    puts("done");
    return 0;
}
