// Proves the event layer's hot paths do not allocate: name parsing, pattern matching, UUID
// generation and formatting, timestamp formatting. Replaces the global operator new of the
// event test executable with one that counts allocations made by the current thread.
// Sanitizer builds keep their own allocator (ASan reports a replaced operator new as an
// alloc-dealloc mismatch), so there the checks are skipped; the plain builds run them.
#include <courier/core/config.hpp>
#include <courier/core/uuid.hpp>
#include <courier/event/envelope_codec.hpp>
#include <courier/event/event_name.hpp>
#include <courier/event/topic_pattern.hpp>

#include <catch2/catch.hpp>

#include <cstdlib>
#include <new>
#include <string>

#if !defined(COURIER_ASAN) && !defined(COURIER_TSAN)
#define COURIER_TEST_COUNTS_ALLOCATIONS 1
namespace {
thread_local long allocations = 0;
}

// Not inlined: after inlining, g++ 12 takes the free() below for a mismatched deallocation of
// a pointer from operator new (-Wmismatched-new-delete), not seeing that new calls malloc.
COURIER_NOINLINE void* operator new(std::size_t size) {
    ++allocations;
    if (void* p = std::malloc(size == 0 ? 1 : size)) return p;
    throw std::bad_alloc();
}
COURIER_NOINLINE void* operator new[](std::size_t size) {
    ++allocations;
    if (void* p = std::malloc(size == 0 ? 1 : size)) return p;
    throw std::bad_alloc();
}
COURIER_NOINLINE void operator delete(void* p) noexcept { std::free(p); }
COURIER_NOINLINE void operator delete[](void* p) noexcept { std::free(p); }
COURIER_NOINLINE void operator delete(void* p, std::size_t) noexcept { std::free(p); }
COURIER_NOINLINE void operator delete[](void* p, std::size_t) noexcept { std::free(p); }

#endif

namespace {
// Allocations made by `fn` on this thread. The lambdas below collect their checks in a
// bool rather than asserting inside the window: Catch2 may allocate while recording.
template <class F>
long allocations_in(F&& fn) {
#if COURIER_TEST_COUNTS_ALLOCATIONS
    const long before = allocations;
    fn();
    return allocations - before;
#else
    fn();
    return 0;
#endif
}
}  // namespace

TEST_CASE("the counting allocator sees allocations", "[event][hot_paths]") {
#if COURIER_TEST_COUNTS_ALLOCATIONS
    // An explicit call: unlike a new-expression, the compiler may not elide it.
    CHECK(allocations_in([] { ::operator delete(::operator new(16)); }) == 1);
#else
    WARN("allocation counting is off under sanitizers");
#endif
}

TEST_CASE("parsing a valid event name does not allocate", "[event][hot_paths]") {
    const std::string text = "user.profile.updated.v12";
    bool ok = true;
    CHECK(allocations_in([&] {
              for (int i = 0; i < 1000; ++i) {
                  auto n = courier::event_name::parse(text);
                  ok = ok && n && n->version() == 12 && n->segment(1) == "profile";
              }
          }) == 0);
    CHECK(ok);
}

TEST_CASE("parsing and matching topic patterns does not allocate", "[event][hot_paths]") {
    const std::string pattern_text = "#.profile.#.v12";
    const std::string subject = "user.profile.settings.updated.v12";
    bool ok = true;
    CHECK(allocations_in([&] {
              auto p = courier::topic_pattern::parse(pattern_text);
              ok = ok && p;
              for (int i = 0; ok && i < 1000; ++i)
                  ok = p->matches(subject) && !p->matches("user.profile.updated.v1");
          }) == 0);
    CHECK(ok);
}

TEST_CASE("making and printing UUID v7 ids does not allocate after the first", "[event][hot_paths]") {
    (void)courier::make_uuid_v7();  // the thread_local generator is created (and seeded) once
    bool ok = true;
    CHECK(allocations_in([&] {
              char buf[courier::uuid::text_size];
              for (int i = 0; i < 1000; ++i) {
                  const auto id = courier::make_uuid_v7();
                  id.to_chars(buf);
                  ok = ok && buf[14] == '7';
              }
          }) == 0);
    CHECK(ok);
}

TEST_CASE("formatting a timestamp into a buffer does not allocate", "[event][hot_paths]") {
    char buf[courier::rfc3339_size];
    char* end = nullptr;
    CHECK(allocations_in([&] {
              end = courier::format_rfc3339_to(buf, courier::time_point(std::chrono::seconds(1'735'689'600)));
          }) == 0);
    CHECK(end == buf + courier::rfc3339_size);
    CHECK(std::string(buf, courier::rfc3339_size) == "2025-01-01T00:00:00.000000Z");
}
