# Finds moodycamel::ConcurrentQueue and defines concurrentqueue::concurrentqueue.
# Accepts upstream's own CMake package first; otherwise looks for the headers the way
# Debian installs them (/usr/include/concurrentqueue/concurrentqueue.h, no CMake config).
include(FindPackageHandleStandardArgs)

find_package(concurrentqueue CONFIG QUIET NO_MODULE)
if(concurrentqueue_FOUND AND TARGET concurrentqueue::concurrentqueue)
    find_package_handle_standard_args(concurrentqueue CONFIG_MODE)
    return()
endif()

find_path(concurrentqueue_INCLUDE_DIR
    NAMES concurrentqueue/concurrentqueue.h concurrentqueue/moodycamel/concurrentqueue.h
    DOC "Directory that holds concurrentqueue/concurrentqueue.h")
find_package_handle_standard_args(concurrentqueue REQUIRED_VARS concurrentqueue_INCLUDE_DIR)

if(concurrentqueue_FOUND AND NOT TARGET concurrentqueue::concurrentqueue)
    add_library(concurrentqueue::concurrentqueue INTERFACE IMPORTED)
    set_target_properties(concurrentqueue::concurrentqueue PROPERTIES
        INTERFACE_INCLUDE_DIRECTORIES "${concurrentqueue_INCLUDE_DIR}")
endif()
mark_as_advanced(concurrentqueue_INCLUDE_DIR)
