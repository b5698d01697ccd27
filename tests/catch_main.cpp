// The one Catch2 main, compiled once and linked into every test executable.
#define CATCH_CONFIG_MAIN
#include <catch2/catch.hpp>

#if defined(COURIER_ASAN)
// UBSan's options travel with the program: CTest's ENVIRONMENT property (through
// catch_discover_tests) carries one variable, ASAN_OPTIONS (see tests/CMakeLists.txt).
extern "C" const char* __ubsan_default_options() { return "print_stacktrace=1:halt_on_error=1"; }
#endif
