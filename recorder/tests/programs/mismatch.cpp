// new[] released by free, malloc released by delete.
#include <cstdlib>
int main() {
    int *a = new int[1750]; // 7000 bytes
    std::free(a);
    int *b = static_cast<int *>(std::malloc(7004));
    delete b;
    char *c = new char[7008];
    delete[] c;
    return 0;
}
