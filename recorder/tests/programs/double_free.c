/* glibc aborts on the second free; the trace must still hold both frees. */
#include <stdlib.h>
int main(void) {
    void *volatile p = malloc(7001);
    free(p);
    free(p);
    return 0;
}
