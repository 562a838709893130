# CMake initial cache for building llama-cpp-python (the embedded model's runtime) from source.
# The README's install commands pass it as CMAKE_ARGS="-C $PWD/install/llama-cpp.cmake".
#
# Why each setting (measured on a 2-core x86-64 VM; see the README's "Install" figures):
# - A portable AVX2 build instead of -march=native: on some virtual machines the native build
#   picks Intel AMX kernels that crash the process (segfault in ggml_backend_amx_mul_mat).
#   A native build without AMX measured no faster (~51 tokens/s both).
set(GGML_NATIVE OFF CACHE BOOL "")
set(GGML_AVX ON CACHE BOOL "")
set(GGML_AVX2 ON CACHE BOOL "")
set(GGML_FMA ON CACHE BOOL "")
set(GGML_F16C ON CACHE BOOL "")
# - Only what composite uses: libllama and the ggml CPU backend. The multimodal library (mtmd,
#   for llava-style image chat) and llama.cpp's "common" library (used by its command-line tools,
#   not by the Python package) were about two thirds of the compile time.
set(LLAVA_BUILD OFF CACHE BOOL "")
# llama-cpp-python forces LLAMA_BUILD_COMMON on in the cache; a normal variable set right after
# llama.cpp's own project() call shadows it there, so the library is neither built nor installed.
set(CMAKE_PROJECT_llama.cpp_INCLUDE "${CMAKE_CURRENT_LIST_DIR}/llama-cpp-no-common.cmake" CACHE FILEPATH "")
