// One heap error per run, chosen by argv[1]; used by the analyzer's recorded
// tests. Lines marked with a comment tag are looked up by the tests. glibc
// aborts on most of these: the trace still has the events.
#include <cstdlib>
#include <cstring>

__attribute__((noinline)) void *alloc_block() {
    return malloc(32); /* ALLOC-LINE */
}
__attribute__((noinline)) void first_free(void *p) {
    free(p); /* FIRST-FREE-LINE */
}
__attribute__((noinline)) void second_free(void *p) {
    free(p); /* SECOND-FREE-LINE */
}
__attribute__((noinline)) int *new_array() {
    return new int[10]; /* NEW-ARRAY-LINE */
}
__attribute__((noinline)) void *grow(void *p) {
    return realloc(p, 64); /* REALLOC-LINE */
}

int main(int argc, char **argv) {
    const char *mode = argc > 1 ? argv[1] : "";
    if (!strcmp(mode, "double")) {
        void *p = alloc_block();
        first_free(p);
        second_free(p);
    } else if (!strcmp(mode, "invalid")) {
        volatile long on_stack[4] = {0, 0, 0, 0};
        second_free((void *)&on_stack[0]);
    } else if (!strcmp(mode, "interior")) {
        char *p = (char *)alloc_block();
        second_free(p + 8);
    } else if (!strcmp(mode, "mismatch")) {
        int *a = new_array();
        second_free(a);
    } else if (!strcmp(mode, "realloc")) {
        void *p = alloc_block();
        first_free(p);
        p = grow(p);
    }
    return 0;
}
