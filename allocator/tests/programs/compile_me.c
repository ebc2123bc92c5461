/* A C file for the gcc preload test: compiled to assembly with and without the
 * preloaded allocator; the assembly must be identical. */
#include <stdio.h>
#include <string.h>

struct node { struct node *next; int value; char name[24]; };

static int cmp(const void *a, const void *b) { return *(const int *)a - *(const int *)b; }

int sum_list(const struct node *n) {
    int s = 0;
    for (; n; n = n->next) s += n->value * (int)strlen(n->name);
    return s;
}

void sort_ints(int *v, size_t n) {
    extern void qsort(void *, size_t, size_t, int (*)(const void *, const void *));
    qsort(v, n, sizeof *v, cmp);
}

int main(void) {
    struct node c = {0, 3, "three"}, b = {&c, 2, "two"}, a = {&b, 1, "one"};
    int v[] = {5, 3, 9, 1};
    sort_ints(v, 4);
    printf("%d %d %d\n", sum_list(&a), v[0], v[3]);
    return 0;
}
