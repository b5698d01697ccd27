// libFuzzer harness: what a broker delivers to a bridge (courier::bridge::detail::from_wire, and
// undecodable_record for what does not decode: the dead letter keeps the exact bytes as JSON).
// The properties checked are in fuzz_checks.hpp; scripts/fuzz runs this with ASan+UBSan.
#include "fuzz_checks.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    courier_fuzz::check_bridge_inbound(std::string_view(reinterpret_cast<const char*>(data), size));
    return 0;
}
