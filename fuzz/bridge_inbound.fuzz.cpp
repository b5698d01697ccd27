// libFuzzer harness: what a broker delivers to a bridge, through each adapter's own mapping
// (bridge/detail/wire_<adapter>.hpp: byte 0 of the input picks redis, nats, kafka, amqp or none)
// and then courier::bridge::detail::from_wire, and undecodable_record for what does not decode
// (the dead letter keeps the exact bytes as JSON). The properties checked are in fuzz_checks.hpp;
// scripts/fuzz runs this with ASan+UBSan. The inputs each branch ran are printed at exit.
#include "fuzz_checks.hpp"

#include <cstdio>
#include <cstdlib>

namespace {

std::size_t runs_per_branch[5] = {};

void print_runs() {
    std::fprintf(stderr, "courier fuzz: bridge_inbound inputs per branch: shared %zu, redis %zu, nats %zu, kafka %zu, amqp %zu\n",
                 runs_per_branch[0], runs_per_branch[1], runs_per_branch[2], runs_per_branch[3], runs_per_branch[4]);
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
    std::atexit(&print_runs);
    return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    ++runs_per_branch[size == 0 ? 0 : data[0] % 5];
    courier_fuzz::check_bridge_inbound(std::string_view(reinterpret_cast<const char*>(data), size));
    return 0;
}
