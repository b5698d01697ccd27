# Builds tests/consumer/project against courier, either from an install prefix
# (MODE=install: cmake --install into WORK_DIR/prefix, then find_package) or as a
# subdirectory (MODE=subdirectory), and runs the resulting program.
file(REMOVE_RECURSE ${WORK_DIR})
file(MAKE_DIRECTORY ${WORK_DIR})

function(run)
    execute_process(COMMAND ${ARGV} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
    if(NOT rc EQUAL 0)
        message(FATAL_ERROR "command failed (${rc}): ${ARGV}\n${out}\n${err}")
    endif()
endfunction()

if(MODE STREQUAL "install")
    run(${CMAKE_COMMAND} -S ${SOURCE_DIR} -B ${WORK_DIR}/courier-build -G ${GENERATOR}
        -DCMAKE_CXX_COMPILER=${CXX} -DCOURIER_BUILD_TESTS=OFF -DCOURIER_BUILD_EXAMPLES=OFF
        -DCOURIER_BUILD_BENCH=OFF -DCOURIER_INSTALL=ON -DCMAKE_INSTALL_PREFIX=${WORK_DIR}/prefix)
    run(${CMAKE_COMMAND} --install ${WORK_DIR}/courier-build)
    run(${CMAKE_COMMAND} -S ${SOURCE_DIR}/tests/consumer/project -B ${WORK_DIR}/consumer-build -G ${GENERATOR}
        -DCMAKE_CXX_COMPILER=${CXX} -DCMAKE_PREFIX_PATH=${WORK_DIR}/prefix -DCOURIER_CONSUMER_MODE=package)
else()
    run(${CMAKE_COMMAND} -S ${SOURCE_DIR}/tests/consumer/project -B ${WORK_DIR}/consumer-build -G ${GENERATOR}
        -DCMAKE_CXX_COMPILER=${CXX} -DCOURIER_CONSUMER_MODE=subdirectory -DCOURIER_SOURCE_DIR=${SOURCE_DIR})
endif()
run(${CMAKE_COMMAND} --build ${WORK_DIR}/consumer-build)
run(${WORK_DIR}/consumer-build/consumer)
