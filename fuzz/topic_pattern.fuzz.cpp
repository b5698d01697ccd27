// libFuzzer harness: Run-time topic patterns (courier::topic_pattern::parse).
// The properties checked are in fuzz_checks.hpp; scripts/fuzz runs this with ASan+UBSan.
#include "fuzz_checks.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    courier_fuzz::check_topic_pattern(std::string_view(reinterpret_cast<const char*>(data), size));
    return 0;
}
