// The one place that includes moodycamel::ConcurrentQueue.
// Debian installs it as <concurrentqueue/concurrentqueue.h>, upstream's CMake install as
// <concurrentqueue/moodycamel/concurrentqueue.h> or a bare <concurrentqueue.h>.
#pragma once

#if __has_include(<concurrentqueue/concurrentqueue.h>)
#include <concurrentqueue/concurrentqueue.h>
#elif __has_include(<concurrentqueue/moodycamel/concurrentqueue.h>)
#include <concurrentqueue/moodycamel/concurrentqueue.h>
#elif __has_include(<concurrentqueue.h>)
#include <concurrentqueue.h>
#else
#error "courier needs moodycamel::ConcurrentQueue (Debian: apt-get install libconcurrentqueue-dev)"
#endif
