// The input of the benchmark's `gcc` workload: cc1plus compiling a small
// program that instantiates standard containers (deep, varied stacks in the
// compiler, a large text to unwind through).
#include <algorithm>
#include <cstdio>
#include <map>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

struct Node {
    std::string name;
    std::vector<std::unique_ptr<Node>> children;
};

static std::unique_ptr<Node> build(int depth, const std::string &prefix) {
    auto n = std::make_unique<Node>();
    n->name = prefix;
    if (depth > 0)
        for (int i = 0; i < 3; i++)
            n->children.push_back(build(depth - 1, prefix + "/" + std::to_string(i)));
    return n;
}

static size_t count(const Node &n) {
    size_t c = 1;
    for (const auto &ch : n.children)
        c += count(*ch);
    return c;
}

int main() {
    std::map<int, std::string> m;
    std::unordered_map<std::string, int> u;
    std::vector<std::string> v;
    for (int i = 0; i < 1000; i++) {
        v.push_back(std::to_string(i) + "xxxxxxxxxxxxxxxxxxxx");
        m[i] = v.back();
        u[v.back()] = i;
    }
    std::sort(v.begin(), v.end());
    auto root = build(6, "root");
    std::printf("%zu %zu %zu %zu\n", m.size(), u.size(), v.size(), count(*root));
    return 0;
}
