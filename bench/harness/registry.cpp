// Storage for the scenario registry (see registry.hpp). The list lives in a function-local
// static so that registrations from any translation unit's static initialisers find it
// constructed, whatever the link order.
#include "registry.hpp"

#include <algorithm>
#include <stdexcept>
#include <string_view>

namespace courier_bench {

namespace {
std::vector<scenario>& storage() {
    static std::vector<scenario> all;
    return all;
}
}  // namespace

void add_scenario(scenario s) {
    auto& all = storage();
    // A duplicate name would make --scenario ambiguous and the JSON history confusing.
    for (const auto& existing : all)
        if (existing.name == s.name) throw std::logic_error("courier-bench: scenario registered twice: " + s.name);
    for (const auto& i : s.impls)
        if (std::find_if(std::begin(known_impls), std::end(known_impls),
                         [&](const char* k) { return i.name == k; }) == std::end(known_impls))
            throw std::logic_error("courier-bench: " + s.name + ": unknown impl name '" + i.name +
                                   "' (the names are fixed; see known_impls in bench/harness/registry.hpp)");
    auto at = std::lower_bound(all.begin(), all.end(), s.name,
                               [](const scenario& a, const std::string& n) { return a.name < n; });
    all.insert(at, std::move(s));
}

const std::vector<scenario>& scenarios() { return storage(); }

std::vector<std::string> skipped_peers() {
    std::vector<std::string> out;
#ifdef COURIER_BENCH_SKIPPED
    // "atomic_queue (libatomic-queue-dev);tbb (libtbb-dev)", set by bench/CMakeLists.txt.
    std::string_view rest = COURIER_BENCH_SKIPPED;
    while (!rest.empty()) {
        const auto cut = rest.find(';');
        if (cut != 0) out.emplace_back(rest.substr(0, cut));
        if (cut == std::string_view::npos) break;
        rest.remove_prefix(cut + 1);
    }
#endif
    return out;
}

}  // namespace courier_bench
