# Included by CMake right after llama.cpp's project() call (see llama-cpp.cmake): skip the
# "common" library, which only llama.cpp's own tools use.
set(LLAMA_BUILD_COMMON OFF)
